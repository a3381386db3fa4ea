"""``linkstrategy remove`` and ``linkstrategy gc``: output, JSON and exit codes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import mountutil
from support.schema import validate
from support.trash import make_trash

import linkstrategy._remove as R
from linkstrategy._cli import main as run
from linkstrategy._trash import TRASH_NAME

REPORT_KEYS = {"removed", "retries", "deferred", "errors", "mounts_skipped", "foreign", "seconds"}
KEYS = {"schema", "command", "ok", *REPORT_KEYS}


def tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("f")
    (root / "g").write_text("g")
    return root


def busy_rmdir(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = R.os.rmdir

    def fake(n: Any, *a: Any, **kw: Any) -> None:
        if os.fspath(n) == name:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), n)
        real(n, *a, **kw)

    monkeypatch.setattr(R.os, "rmdir", fake)


def test_remove_prints_a_summary_and_exits_0(tmp_path: Path, capsys: Any) -> None:
    root = tree(tmp_path / "t")
    assert run(["remove", str(root), str(tmp_path / "missing")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("removed 5 entries in ") and err == ""
    assert not root.exists()


def test_remove_json_is_one_object_with_the_keys(tmp_path: Path, capsys: Any) -> None:
    root = tree(tmp_path / "t")
    assert run(["remove", "--json", "--budget", "1", str(root)]) == 0
    out, _ = capsys.readouterr()
    data = json.loads(out)
    validate(data)
    assert set(data) == KEYS and data["ok"] is True
    assert data["removed"] == 5 and data["deferred"] == [] and data["errors"] == []


def test_refusal_is_one_line_exit_1(capsys: Any) -> None:
    assert run(["remove", "/"]) == 1
    out, err = capsys.readouterr()
    assert err == "linkstrategy: error: /: refusing to remove the root directory\n"
    assert out == "" and "Traceback" not in err


def test_refusal_with_json_still_prints_one_object(capsys: Any) -> None:
    assert run(["remove", "--json", "/"]) == 1
    out, err = capsys.readouterr()
    data = json.loads(out)
    validate(data)
    assert (data["ok"], data["error"]["path"]) == (False, "/") and err.count("\n") == 1


@pytest.mark.python_walk
def test_real_error_names_path_and_reason(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "t")
    real = R.os.unlink

    def fake(n: Any, *a: Any, **kw: Any) -> None:
        if os.fspath(n) == "g":
            raise OSError(errno.EIO, os.strerror(errno.EIO), n)
        real(n, *a, **kw)

    monkeypatch.setattr(R.os, "unlink", fake)
    assert run(["remove", str(root)]) == 1
    _out, err = capsys.readouterr()
    assert err == f"linkstrategy: error: {root / 'g'}: cannot unlink: Input/output error (EIO)\n"
    root = tree(tmp_path / "t2")
    assert run(["remove", "--json", str(root)]) == 1
    data = json.loads(capsys.readouterr()[0])
    validate(data)
    assert data["ok"] is False
    assert data["errors"][0]["errno"] == "EIO"  # a name, as everywhere in the JSON


@pytest.mark.python_walk
def test_deferred_entry_is_shown_not_an_error(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "t")
    busy_rmdir(monkeypatch, "b")
    assert run(["remove", "--budget", "0.05", str(root)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and f"deferred: {root} -> {tmp_path / TRASH_NAME}/" in out
    assert not root.exists()
    root = tree(tmp_path / "t")
    assert run(["remove", "--json", "--budget", "0", str(root)]) == 0
    data = json.loads(capsys.readouterr()[0])
    (d,) = data["deferred"]
    assert d["path"] == str(root) and d["trash"].startswith(str(tmp_path / TRASH_NAME))
    assert "budget" in d["reason"]
    monkeypatch.undo()
    assert run(["gc", "--json", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr()[0])
    assert data["removed"] >= 6 and data["errors"] == []
    assert not (tmp_path / TRASH_NAME).exists()


def test_gc_reports_what_it_left_alone_and_walks_only_when_recursive(
    tmp_path: Path, capsys: Any
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "1000-1-abc-x").write_text("not trash")
    os.symlink(target, tmp_path / TRASH_NAME)  # a symlink where a trash should be
    (tmp_path / "a" / "b").mkdir(parents=True)
    deep = make_trash(tmp_path / "a" / "b") / "1000-1-abcdef-y"
    deep.mkdir()
    assert run(["gc", "--json", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    validate(data)
    assert data["foreign"] == [
        f"{tmp_path / TRASH_NAME}: named like a trash directory but not a directory"
    ]
    assert err == f"linkstrategy: left alone: {data['foreign'][0]}\n"
    assert (target / "1000-1-abc-x").exists() and deep.exists()
    assert run(["gc", "--recursive", str(tmp_path)]) == 0
    assert not deep.parent.exists() and (target / "1000-1-abc-x").exists()


def test_last_option_orders_the_metadata(tmp_path: Path, capsys: Any) -> None:
    info = tmp_path / "p-1.dist-info"
    info.mkdir()
    for n in ("RECORD", "METADATA", "WHEEL"):
        (info / n).write_text(n)
    assert run(["remove", "--last", "METADATA", "--last", "RECORD", str(info)]) == 0
    assert not info.exists()
    assert run(["remove", "--last", "../x", str(tmp_path)]) == 2
    assert "must be a relative path" in capsys.readouterr()[1]


@pytest.mark.root
def test_mount_inside_tree_exits_1_and_says_so(tmp_path: Path, capsys: Any) -> None:
    reason = mountutil.mount_skip_reason("tmpfs")
    if reason:
        pytest.skip(reason)
    root = tree(tmp_path / "t")
    with mountutil.tmpfs_mount(root / "a", size="1m", name="m") as mp:
        assert run(["remove", "--budget", "0.1", str(root)]) == 1
        _out, err = capsys.readouterr()
        assert (
            err == f"linkstrategy: error: {mp}: mount point (or btrfs subvolume) inside "
            "the tree: left alone\n"
        )


@pytest.mark.parametrize(
    "argv",
    [
        ["remove"],
        ["remove", "--budget", "soon", "x"],
        ["remove", "--budget", "-1", "x"],
        ["gc"],
        ["gc", "a", "b"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: Any) -> None:
    assert run(argv) == 2
    assert "usage:" in capsys.readouterr()[1]


def test_installed_command_exit_codes(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    cmd = [sys.executable, "-m", "linkstrategy"]
    ok = subprocess.run([*cmd, "remove", "--json", str(root)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert set(json.loads(ok.stdout)) == KEYS
    bad = subprocess.run([*cmd, "remove", "/"], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("linkstrategy: error: /: ")
    assert "Traceback" not in bad.stderr
    gc = subprocess.run([*cmd, "gc", str(tmp_path)], capture_output=True, text=True)
    assert gc.returncode == 0 and gc.stdout.startswith("collected 0 entries")
