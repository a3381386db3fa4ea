"""The command line, in-process through main(argv) and once as a real process.

Every ``--json`` output is validated against the command's JSON Schema in
``schemas/``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.schema import validate

from linkstrategy import _cli, _probe
from linkstrategy._cli import Progress, main, quote

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


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, rc: int = 0) -> dict[str, Any]:
    assert main(list(argv)) == rc
    out = capsys.readouterr().out
    data = json.loads(out)  # exactly one JSON object, nothing else on stdout
    assert isinstance(data, dict)
    assert data["schema"] == 1 and data["ok"] is (rc == 0)
    validate(data)
    return data


def tree(root: Path, n: int = 3) -> Path:
    (root / "d").mkdir(parents=True)
    for i in range(n):
        (root / "d" / f"f{i}").write_text(f"file {i}\n")
    return root


# -- probe ---------------------------------------------------------------------------


def test_probe_json_has_the_stable_keys(
    xfs_reflink: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(capsys, "probe", "--json", str(xfs_reflink))
    assert data["plan"] is None
    (p,) = data["probes"]
    assert set(p) >= PROBE_KEYS
    assert (p["fstype"], p["reflink"], p["hardlink"], p["tested"]) == ("xfs", "yes", "yes", True)
    assert p["network"] is False


def test_probe_json_with_destination_includes_the_plan(
    ext4: Path, ext4_b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(capsys, "probe", "--json", str(ext4), str(ext4_b / "venv"))
    plan = data["plan"]
    assert {"src", "dst", "chain", "reasons", "advice", "requested", "strict"} <= set(plan)
    assert plan["chain"] == ["copy"]
    assert plan["advice"]


def test_probe_human_table(xfs_bind: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    orig, bound = xfs_bind
    assert main(["probe", str(orig), str(bound)]) == 0
    out = capsys.readouterr().out
    assert "reflink" in out and "hardlink" in out and "mount point" in out
    assert "chain: reflink -> copy" in out
    assert "advice:" in out


def test_probe_first_line_is_the_verdict(
    ext4: Path, ext4_b: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["probe", str(ext4), str(ext4_b / "venv")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("within ") and ": hardlink; from " in first
    assert first.endswith(": copy, because source and destination are different filesystems")


def test_probe_text_drops_what_the_live_test_settled(
    xfs_reflink: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["probe", str(xfs_reflink)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("(xfs): reflink")
    assert "links per file" not in out and "max links" not in out  # XFS's 2**31-1: no limit
    assert "reflink only if" not in out  # the clone test just said yes


def test_probe_explains_errno_names_in_words(
    xfs_noreflink: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["probe", str(xfs_noreflink)]) == 0
    out = capsys.readouterr().out
    assert "the filesystem does not support it" in out
    assert "EOPNOTSUPP" in out or "ENOTSUP" in out


def test_probe_with_saved_mount_table(capsys: pytest.CaptureFixture[str]) -> None:
    table = str(DATA / "nfs.txt")
    data = run_json(capsys, "probe", "--json", "--mount-table", table, "/mnt/nfs3/home/u")
    (p,) = data["probes"]
    assert (p["mount_point"], p["fstype"], p["kind"], p["network"]) == (
        "/mnt/nfs3",
        "nfs",
        "nfs",
        True,
    )
    assert p["tested"] is False
    data = run_json(capsys, "probe", "--json", "--mount-table", table, "/elsewhere", rc=1)
    assert data["error"]["kind"] == "error"


def test_probe_mount_table_efs_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "mounts"
    table.write_text("/dev/nvme0n1p1 / ext4 rw 0 0\n" + (DATA / "efs.txt").read_text())
    data = run_json(
        capsys, "probe", "--json", "--mount-table", str(table), "/tmp/cache", "/mnt/efs/.venv"
    )
    src, dst = data["probes"]
    assert (src["kind"], src["network"]) == ("ext4", False)
    assert (dst["kind"], dst["network"], dst["reflink"]) == ("efs", True, "no")
    assert data["plan"]["chain"] == ["copy"]


def test_probe_all_lists_every_mount_touching_no_filesystem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def untouchable(*a: object, **kw: object) -> None:
        raise AssertionError(f"touched a filesystem: {a}")

    real = _cli._probe_all

    def guarded(*args: Any) -> int:
        with monkeypatch.context() as m:
            for name in ("stat", "lstat", "statvfs", "scandir", "listdir", "mkdir", "open"):
                m.setattr(os, name, untouchable)
            m.setattr(os.path, "realpath", untouchable)
            m.setattr(_probe, "mount_id_of", untouchable)
            return real(*args)

    monkeypatch.setattr(_cli, "_probe_all", guarded)
    rc_json = main(["probe", "--all", "--json"])
    data = json.loads(capsys.readouterr().out)
    rc_text = main(["probe", "--all"])
    assert rc_json == 0 and rc_text == 0
    validate(data)
    mounts = {m["mount_point"]: m for m in data["mounts"]}
    assert mounts["/"]["kind"] and mounts["/"]["reflink"] in ("yes", "no", "maybe")
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "MOUNT",
        "POINT",
        "TYPE",
        "KIND",
        "NETWORK",
        "REFLINK",
        "HARDLINK",
    ]


def test_probe_all_from_a_saved_table(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "probe", "--all", "--json", "--mount-table", str(DATA / "efs.txt"))
    assert any(m["kind"] == "efs" and m["network"] for m in data["mounts"])


# -- errors, usage, JSON everywhere --------------------------------------------------


def test_errors_are_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--mount-table", str(tmp_path / "missing"), "/"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "missing") in err
    bad = tmp_path / "bad"
    bad.write_text("garbage\n")
    assert main(["probe", "--mount-table", str(bad), "/"]) == 1
    assert main(["place", str(tmp_path / "nope"), str(tmp_path / "dst")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(tmp_path / "nope") in err


def test_errors_with_json_are_one_object_with_an_errno_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_json(capsys, "place", "--json", str(tmp_path / "nope"), str(tmp_path / "d"), rc=1)
    assert data["command"] == "place"
    assert data["error"]["errno"] == "ENOENT"
    assert data["error"]["path"] == str(tmp_path / "nope")
    data = run_json(capsys, "probe", "--json", "--mount-table", str(tmp_path / "x"), "/", rc=1)
    assert data["error"]["errno"] == "ENOENT"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["probe"]) == 2
    assert main(["probe", "a", "b", "c"]) == 2
    assert main(["probe", "--all", "a"]) == 2
    assert main(["place", "--strategy", "symlnk", "a", "b"]) == 2
    assert main(["place", "--strategy", "copy,copy", "a", "b"]) == 2
    assert main(["place", "--workers", "0", "a", "b"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_usage_error_with_json_is_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "place", "--json", "--workers", "0", "a", "b", rc=2)
    assert data["command"] == "place" and data["error"]["kind"] == "usage"


def test_options_are_never_abbreviated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["place", "--str", "copy", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert main(["probe", "--js", str(tmp_path)]) == 2


def test_every_option_has_help() -> None:
    parser = _cli.build_parser()
    missing = []
    parsers = [parser, *_cli._SUBPARSERS.values()]
    for p in parsers:
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"{p.prog} {action.dest}")
    assert missing == []


def test_bad_strategy_variable_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LINKSTRATEGY_STRATEGY", "bogus")
    for argv in (["probe", str(tmp_path), str(tmp_path / "b")], ["place", "a", "b"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith("linkstrategy: error: LINKSTRATEGY_STRATEGY='bogus': ")
    data = run_json(capsys, "probe", "--json", str(tmp_path), rc=2)
    assert "LINKSTRATEGY_STRATEGY" in data["error"]["reason"]


def test_double_dash_operands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.chdir(tmp_path)
    assert main(["place", "--", "src", "--"]) == 1
    err = capsys.readouterr().err
    assert err == "linkstrategy: error: src -> --: cannot read source: No such file or directory\n"
    (tmp_path / "src").write_text("x")
    assert main(["place", "-q", "--", "src", "--"]) == 0
    assert (tmp_path / "--").read_text() == "x"


def test_control_characters_in_paths_stay_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = str(tmp_path / "a\nb")
    assert main(["place", src, str(tmp_path / "dst")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"$'{tmp_path}/a\\nb'" in err
    assert quote("plain name") == "plain name"
    assert quote("x\udcff\t") == "$'x\\xff\\t'"


def test_no_traceback_even_for_a_bug(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import linkstrategy._place as P

    def broken(*a: object, **kw: object) -> None:
        raise RuntimeError("oops")

    monkeypatch.setattr(P, "place", broken)
    assert main(["place", str(tmp_path), str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err == "linkstrategy: error: internal error: RuntimeError: oops\n"


def test_ctrl_c_exits_130(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import linkstrategy._place as P

    def interrupted(*a: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "place", interrupted)
    assert main(["place", str(tmp_path), str(tmp_path / "x")]) == 130
    assert capsys.readouterr().err == "linkstrategy: error: interrupted\n"
    data = run_json(capsys, "place", "--json", str(tmp_path), str(tmp_path / "x"), rc=130)
    assert data["error"]["kind"] == "interrupted"


def test_version_says_whether_the_c_loop_is_used(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--version"]) == 0
    assert "C loop: " in capsys.readouterr().out
    monkeypatch.setenv("LINKSTRATEGY_NO_SPEEDUPS", "1")
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert "C loop: not in use (LINKSTRATEGY_NO_SPEEDUPS is set)" in out


# -- place, replace ------------------------------------------------------------------


def test_place_json(ext4: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ext4 / "src" / "d").mkdir(parents=True)
    (ext4 / "src" / "d" / "f").write_text("x")
    data = run_json(capsys, "place", "--json", str(ext4 / "src"), str(ext4 / "dst"))
    assert data["dry_run"] is False
    assert data["by_strategy"] == {"reflink": 0, "hardlink": 1, "copy": 0, "symlink": 0}
    assert (ext4 / "dst" / "d" / "f").read_text() == "x"


def test_place_summary_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").write_text("x")
    assert main(["place", "--strategy", "copy", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("placed 1 file, 0 directories and 0 symlinks in ")
    assert ": 1 copied; 1 byte cloned or copied\n" in out
    assert main(["place", "-q", str(tmp_path / "a"), str(tmp_path / "c")]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["place", "-v", str(tmp_path / "a"), str(tmp_path / "e")]) == 0
    assert "chain: " in capsys.readouterr().out


def test_strategy_list_never_hardlinks(ext4: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree(ext4 / "src")
    argv = ["place", "--json", "--strategy", "reflink,copy", str(ext4 / "src"), str(ext4 / "dst")]
    data = run_json(capsys, *argv)
    assert data["chain"] == ["copy"]
    assert data["by_strategy"]["copy"] == 3 and data["by_strategy"]["hardlink"] == 0
    assert os.stat(ext4 / "dst" / "d" / "f0").st_nlink == 1


def test_preference_falls_back_with_one_warning_on_stderr(
    ext4: Path, ext4_b: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tree(ext4 / "src")
    monkeypatch.setenv("LINKSTRATEGY_STRATEGY", "hardlink")
    assert main(["place", str(ext4 / "src"), str(ext4_b / "dst")]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in out
    assert err.count("\n") == 1 and err.startswith("linkstrategy: warning: LINKSTRATEGY_STRATEGY=")
    assert "copying instead" in err
    assert (ext4_b / "dst" / "d" / "f0").read_text() == "file 0\n"
    data = run_json(capsys, "place", "--json", str(ext4 / "src"), str(ext4_b / "dst2"))
    assert len(data["warnings"]) == 1 and data["by_strategy"]["copy"] == 3


def test_one_warning_from_a_real_process(ext4: Path, ext4_b: Path) -> None:
    """Outside pytest's log capture: logging's last-resort handler must not print the
    warning a second time, bare."""
    tree(ext4 / "src")
    env = {**os.environ, "LINKSTRATEGY_STRATEGY": "hardlink"}
    r = subprocess.run(
        [sys.executable, "-m", "linkstrategy", "place", str(ext4 / "src"), str(ext4_b / "dst")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("linkstrategy: warning: ")
    assert r.stdout.startswith("placed 3 files, ")


def test_strict_makes_the_preference_an_error(
    ext4: Path, ext4_b: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tree(ext4 / "src")
    argv = ["place", "--strategy", "hardlink", str(ext4 / "src"), str(ext4_b / "dst")]
    assert main(argv) == 0  # --strategy alone is a preference, like the variable
    capsys.readouterr()
    data = run_json(
        capsys, "place", "--json", "--strict", *argv[1:3], argv[3], str(ext4_b / "x"), rc=1
    )
    assert data["error"]["errno"] == "EXDEV" and "different filesystems" in data["error"]["reason"]
    assert not (ext4_b / "x").exists()
    monkeypatch.setenv("LINKSTRATEGY_STRATEGY", "hardlink")
    assert main(["place", "--strict", str(ext4 / "src"), str(ext4_b / "y")]) == 1
    assert not (ext4_b / "y").exists()


def test_dry_run_plans_the_whole_tree_and_writes_nothing(
    ext4: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree(ext4 / "src", n=5)
    (ext4 / "src" / "d" / "big").write_bytes(b"x" * 5000)
    os.mkfifo(ext4 / "src" / "fifo")
    os.symlink("d/f0", ext4 / "src" / "link")
    argv = ["place", "--dry-run", str(ext4 / "src"), str(ext4 / "dst")]
    data = run_json(capsys, argv[0], "--json", *argv[1:])
    est = data["estimate"]
    assert (est["files"], est["dirs"], est["symlinks"]) == (6, 2, 1)
    assert est["by_strategy"]["hardlink"] == 6 and est["bytes_written"] == 0
    assert est["skipped"] == ["fifo"]
    assert data["plan"]["chain"] == ["hardlink", "copy"]
    data = run_json(capsys, argv[0], "--json", "--strategy", "copy", *argv[1:])
    assert data["estimate"]["bytes_written"] == 5000 + 5 * 7
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith("dry run, nothing placed: ")
        and "6 files, 2 directories and 1 symlink" in out
    )
    assert not (ext4 / "dst").exists()
    assert [n for n in os.listdir(ext4) if n.startswith(".")] == []
    os.symlink(ext4 / "src", ext4 / "via")  # a symlink as SRC is followed, as place() does
    data = run_json(capsys, "place", "--json", "--dry-run", str(ext4 / "via"), str(ext4 / "dst"))
    assert (data["estimate"]["files"], data["estimate"]["symlinks"]) == (6, 1)


def test_symlink_strategy_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", "/nonexistent-home")
    tree(tmp_path / "proj" / "cache")
    src, dst = tmp_path / "proj" / "cache", tmp_path / "proj" / "env"
    data = run_json(capsys, "place", "--json", "--strategy", "symlink", str(src), str(dst))
    assert data["by_strategy"]["symlink"] == 3 and data["chain"] == ["symlink", "copy"]
    link = dst / "d" / "f0"
    assert link.is_symlink() and os.readlink(link) == "../../cache/d/f0"  # close by: relative
    assert link.read_text() == "file 0\n"
    # The cache in the home directory, the destination elsewhere under it: absolute.
    monkeypatch.setenv("HOME", str(tmp_path / "proj"))
    data = run_json(
        capsys, "place", "--json", "--strategy", "symlink", str(src), str(tmp_path / "proj" / "e2")
    )
    assert os.readlink(tmp_path / "proj" / "e2" / "d" / "f0") == str(src / "d" / "f0")
    # auto never symlinks
    data = run_json(capsys, "place", "--json", str(src), str(tmp_path / "proj" / "e3"))
    assert data["by_strategy"]["symlink"] == 0 and "symlink" not in data["chain"]


def test_replace_with_relative_symlinks_points_from_the_final_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", "/nonexistent-home")
    tree(tmp_path / "p" / "src")
    (tmp_path / "p" / "dst").mkdir()
    argv = [
        "replace",
        "--strategy",
        "symlink",
        str(tmp_path / "p" / "src"),
        str(tmp_path / "p" / "dst"),
    ]
    assert main(argv) == 0
    link = tmp_path / "p" / "dst" / "d" / "f1"
    assert os.readlink(link) == "../../src/d/f1"  # not built for the staging directory's depth
    assert link.read_text() == "file 1\n"


def test_replace_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a").write_text("2")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a").write_text("1")
    (tmp_path / "site" / "old").write_text("1")
    data = run_json(capsys, "replace", "--json", str(tmp_path / "new"), str(tmp_path / "site"))
    assert data["command"] == "replace" and data["files"] == 1
    assert sorted(os.listdir(tmp_path / "site")) == ["a"]
    assert (tmp_path / "site" / "a").read_text() == "2"
    assert main(["replace", str(tmp_path / "missing"), str(tmp_path / "site")]) == 1
    assert (tmp_path / "site" / "a").read_text() == "2"


# -- progress ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_one_line_ended_once() -> None:
    clock, stream = FakeClock(), io.StringIO()
    bar = Progress(stream, clock=clock, width=100)
    # The walk and the placing overlap: done catches up with a total that still grows.
    for total in range(100, 2000, 100):
        clock.now += 0.2
        bar(total, total)
    assert "\n" not in stream.getvalue()
    assert "found so far" in stream.getvalue()  # a plain count while the total moves
    clock.now += 0.2
    bar(2000, 3000)  # the total stays put from now on
    clock.now += 0.4
    bar(2500, 3000)
    last = stream.getvalue().rsplit("\r", 1)[1]
    assert "2,500/3,000 files" in last and "files/s" in last and "ETA 0:0" in last
    assert "%" in last and "[" in last
    bar.finish()
    bar.finish()
    out = stream.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n")
    assert "in 0:04" in out.rsplit("\r", 1)[1]


def test_progress_quiet_for_short_runs() -> None:
    clock, stream = FakeClock(), io.StringIO()
    bar = Progress(stream, clock=clock)
    bar(10, 10)
    bar.finish()
    assert stream.getvalue() == ""


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_place_draws_progress_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tree(tmp_path / "src", n=40)
    err = FakeTTY()
    monkeypatch.setattr(sys, "stderr", err)
    fast = functools.partial(Progress, delay=0.0, interval=0.0, settle=0.0, width=80)
    monkeypatch.setattr(_cli, "Progress", fast)
    assert main(["place", str(tmp_path / "src"), str(tmp_path / "dst")]) == 0
    text = err.getvalue()
    assert text.count("\r") >= 2 and text.count("\n") == 1 and "40/40 files" in text
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: no progress
    assert main(["place", str(tmp_path / "src"), str(tmp_path / "dst2")]) == 0
    assert sys.stderr.getvalue() == ""


# -- as a process --------------------------------------------------------------------


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
    heavy = "('psutil', 'xattr', 'concurrent.futures', 'linkstrategy._plan', 'argparse')"
    code = f"import sys, linkstrategy; print(sorted(m for m in {heavy} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_public_names_for_what_the_docs_use() -> None:
    import linkstrategy

    table = linkstrategy.parse_mount_table("srv:/x /mnt/x nfs4 rw 0 0\n")
    assert linkstrategy.probe("/mnt/x/y", table=table).network
    linkstrategy.clear_cache()
    with pytest.raises(linkstrategy.MountTableError):
        linkstrategy.parse_mount_table("garbage\n")


def test_place_no_times_keeps_no_source_times(tmp_path: Path) -> None:
    """--no-times: clones and copies get their own times (cp without -p)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    os.utime(src / "f", (1_500_000_000, 1_500_000_000))
    for dst, extra in (("kept", []), ("fresh", ["--no-times"])):
        assert main(["place", "--strategy", "copy", *extra, str(src), str(tmp_path / dst)]) == 0
    assert (tmp_path / "kept" / "f").stat().st_mtime == 1_500_000_000
    assert (tmp_path / "fresh" / "f").stat().st_mtime > 1_600_000_000
