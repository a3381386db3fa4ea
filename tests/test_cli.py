"""The command line, in-process through main(argv) and once as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from linkstrategy import _probe
from linkstrategy._cli import main

DATA = Path(__file__).parent / "data" / "mounttables"
PROBE_KEYS = {
    "path",
    "mount_point",
    "fstype",
    "source",
    "kind",
    "network",
    "reflink",
    "hardlink",
    "xattr",
    "tested",
}


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    _probe.clear_cache()
    monkeypatch.delenv("LINKSTRATEGY_STRATEGY", raising=False)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    data = json.loads(out)  # exactly one JSON object, nothing else on stdout
    assert isinstance(data, dict)
    return data


def test_probe_json_has_the_stable_keys(
    xfs_reflink: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(capsys, "probe", "--json", str(xfs_reflink))
    assert data["plan"] is None
    (p,) = data["probes"]  # type: ignore[misc]
    assert set(p) >= PROBE_KEYS
    assert (p["fstype"], p["reflink"], p["hardlink"], p["tested"]) == ("xfs", "yes", "yes", True)
    assert p["network"] is False


def test_probe_json_with_destination_includes_the_plan(
    ext4: Path, ext4_b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(capsys, "probe", "--json", str(ext4), str(ext4_b / "venv"))
    plan = data["plan"]
    assert isinstance(plan, dict)
    assert {"src", "dst", "chain", "reasons", "advice"} <= set(plan)
    assert plan["chain"] == ["copy"]
    assert plan["advice"]


def test_probe_human_table(xfs_bind: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    orig, bound = xfs_bind
    assert main(["probe", str(orig), str(bound)]) == 0
    out = capsys.readouterr().out
    assert "reflink" in out and "hardlink" in out and "mount point" in out
    assert "chain: reflink -> copy" in out
    assert "advice:" in out


def test_probe_with_saved_mount_table(capsys: pytest.CaptureFixture[str]) -> None:
    table = str(DATA / "nfs.txt")
    data = run_json(capsys, "probe", "--json", "--mount-table", table, "/mnt/nfs3/home/u")
    (p,) = data["probes"]  # type: ignore[misc]
    assert (p["mount_point"], p["fstype"], p["kind"], p["network"]) == (
        "/mnt/nfs3",
        "nfs",
        "nfs",
        True,
    )
    assert p["tested"] is False
    assert main(["probe", "--mount-table", table, "/elsewhere"]) == 1  # not in that table


def test_probe_mount_table_efs_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "mounts"
    table.write_text("/dev/nvme0n1p1 / ext4 rw 0 0\n" + (DATA / "efs.txt").read_text())
    data = run_json(
        capsys, "probe", "--json", "--mount-table", str(table), "/tmp/cache", "/mnt/efs/.venv"
    )
    src, dst = data["probes"]  # type: ignore[misc]
    assert (src["kind"], src["network"]) == ("ext4", False)
    assert (dst["kind"], dst["network"], dst["reflink"]) == ("efs", True, "no")
    assert data["plan"]["chain"] == ["copy"]  # type: ignore[index]


def test_errors_are_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--mount-table", str(tmp_path / "missing"), "/"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "missing") in err
    bad = tmp_path / "bad"
    bad.write_text("1 2 3:4 / /x rw - ext4\n")  # mountinfo, missing source... and more
    bad.write_text("garbage\n")
    assert main(["probe", "--mount-table", str(bad), "/"]) == 1
    assert main(["place", str(tmp_path / "nope"), str(tmp_path / "dst")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(tmp_path / "nope") in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["probe"]) == 2
    assert main(["probe", "a", "b", "c"]) == 2
    assert main(["place", "--strategy", "symlink", "a", "b"]) == 2
    assert main(["place", "--workers", "0", "a", "b"]) == 2


def test_place_json(ext4: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ext4 / "src" / "d").mkdir(parents=True)
    (ext4 / "src" / "d" / "f").write_text("x")
    data = run_json(capsys, "place", "--json", str(ext4 / "src"), str(ext4 / "dst"))
    assert {
        "files",
        "dirs",
        "symlinks",
        "bytes",
        "by_strategy",
        "fallbacks",
        "skipped",
        "seconds",
    } <= set(data)
    assert data["by_strategy"] == {"reflink": 0, "hardlink": 1, "copy": 0}
    assert (ext4 / "dst" / "d" / "f").read_text() == "x"


def test_python_dash_m_runs_as_a_process(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "linkstrategy", "probe", "--json", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["probes"][0]["path"] == str(tmp_path)


def test_import_is_cheap() -> None:
    heavy = "('psutil', 'xattr', 'concurrent.futures')"
    code = f"import sys, linkstrategy; print(sorted(m for m in {heavy} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
