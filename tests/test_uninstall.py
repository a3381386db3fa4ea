"""remove(files=..., root=...): an uninstall from a RECORD, and check=True."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import linkstrategy
from linkstrategy import InvalidArgument, RemoveError


def venv(tmp_path: Path) -> tuple[Path, list[str]]:
    """A site-packages with package a (its namespace dir shared with b), a script in
    bin/ and a dist-info; returns site and a's RECORD paths."""
    site = tmp_path / "lib" / "site-packages"
    files = {
        "google/a/__init__.py": "a",
        "google/a/sub/mod.py": "a",
        "a-1.0.dist-info/METADATA": "a",
        "a-1.0.dist-info/RECORD": "a",
        "google/b/__init__.py": "b",
        "b-1.0.dist-info/RECORD": "b",
    }
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "a-tool").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "b-tool").write_text("#!/bin/sh\n")
    (site / "google" / "a" / "link").symlink_to("__init__.py")
    record = [
        "google/a/__init__.py",
        "google/a/sub/mod.py",
        "google/a/link",
        "./google/a/__init__.py",  # sloppy duplicate
        "a-1.0.dist-info/METADATA",
        "a-1.0.dist-info/RECORD",
        "../../bin/a-tool",
    ]
    return site, record


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_uninstall_by_record(tmp_path: Path) -> None:
    site, record = venv(tmp_path)
    r = linkstrategy.remove(files=record, root=site, last=["a-1.0.dist-info"], check=True)
    assert r.ok
    assert tree(tmp_path) == {
        "lib", "lib/site-packages", "lib/site-packages/google", "lib/site-packages/google/b",
        "lib/site-packages/google/b/__init__.py", "lib/site-packages/b-1.0.dist-info",
        "lib/site-packages/b-1.0.dist-info/RECORD", "bin", "bin/b-tool",
    }  # fmt: skip


def test_metadata_stays_when_a_listed_file_cannot_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure in the files keeps the dist-info (it still describes what is left);
    check=True raises it."""
    site, record = venv(tmp_path)
    real = os.unlink

    def unlink(path: str, *, dir_fd: int | None = None) -> None:
        if path == "mod.py":
            raise OSError(errno.EIO, "injected")
        real(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    r = linkstrategy.remove(files=record, root=site, last=["a-1.0.dist-info"])
    assert not r.ok and (site / "a-1.0.dist-info" / "RECORD").exists()
    with pytest.raises(RemoveError) as ei:
        linkstrategy.remove(files=record, root=site, last=["a-1.0.dist-info"], check=True)
    assert ei.value.errno == errno.EIO and "mod.py" in str(ei.value)
    assert (site / "a-1.0.dist-info" / "RECORD").exists()


@pytest.mark.parametrize("entry", ["google/../../x", "/etc/passwd", "", "a/../b"])
def test_entries_that_leave_the_record_shape_are_refused(tmp_path: Path, entry: str) -> None:
    site, record = venv(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(InvalidArgument):
        linkstrategy.remove(files=[*record, entry], root=site)
    assert tree(tmp_path) == before


def test_a_directory_in_the_list_is_refused_before_anything_goes(tmp_path: Path) -> None:
    site, record = venv(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(InvalidArgument) as ei:
        linkstrategy.remove(files=[*record, "google"], root=site)
    assert ei.value.errno == errno.EISDIR
    assert tree(tmp_path) == before


def test_a_symlinked_directory_in_an_entry_is_not_followed(tmp_path: Path) -> None:
    """google/a swapped for a symlink to elsewhere: refused (ELOOP) before anything is
    removed; the names there stay."""
    site, record = venv(tmp_path)
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    (other / "__init__.py").write_text("keep")
    (other / "sub" / "mod.py").write_text("keep")
    import shutil

    shutil.rmtree(site / "google" / "a")
    (site / "google" / "a").symlink_to(other)
    before = tree(tmp_path)
    with pytest.raises(RemoveError) as ei:  # refused before anything is touched
        linkstrategy.remove(files=record, root=site, last=["a-1.0.dist-info"])
    assert ei.value.errno == errno.ELOOP
    assert tree(tmp_path) == before
    assert (other / "__init__.py").read_text() == "keep"
    assert (other / "sub" / "mod.py").read_text() == "keep"


def test_files_needs_root_and_no_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        linkstrategy.remove(files=["x"])
    with pytest.raises(InvalidArgument):
        linkstrategy.remove(tmp_path / "x", files=["x"], root=tmp_path)
    with pytest.raises(InvalidArgument):
        linkstrategy.remove(tmp_path / "x", root=tmp_path)
