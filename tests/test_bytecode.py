"""A module replaced by place() or replace() never runs the old version's bytecode.

The interpreter trusts ``__pycache__/<stem>.<tag>.pyc`` while the source's mtime and size
match what it recorded.  A new version of a file with the same size and mtime -- a
cache unpacked within one second of the last, reproducible builds' fixed timestamps,
kept by ``times=True`` or shared by a hardlink -- ran the old code.  What replaces a
``*.py`` file now removes its bytecode (and only its: other modules' stays).  Real
interpreters import here, writing bytecode (:mod:`support.pyimport`).  The same for an
uninstall is in test_uninstall.py, for upgrade() in test_upgrade.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from support.pyimport import run_importing, same_size_and_mtime

import linkstrategy

TAG = sys.implementation.cache_tag
V1, V2 = 'VERSION = "1.0"\n', 'VERSION = "2.0"\n'
IMPORTS = "import pkg.sub.mod as m, pkg.other, top; print(m.VERSION, top.VERSION)"


def _installed(tmp_path: Path) -> tuple[Path, Path]:
    """``(site, new)``: 1.0 of ``pkg/sub/mod.py`` and ``top.py`` installed and imported
    (plain and -O), next to a module that does not change; 2.0 of both beside."""
    site, new = tmp_path / "site", tmp_path / "new"
    for rel in ("pkg/sub/mod.py", "top.py"):
        same_size_and_mtime(site / rel, new / rel, V1, V2)
    for d in (site, new):
        for rel in ("pkg/__init__.py", "pkg/sub/__init__.py", "pkg/other.py"):
            (d / rel).write_text("")
            os.utime(d / rel, (0, 0))
    assert run_importing(site, IMPORTS) == "1.0 1.0"
    run_importing(site, IMPORTS, "-O")
    assert (site / "pkg" / "sub" / "__pycache__" / f"mod.{TAG}.opt-1.pyc").exists()
    return site, new


@pytest.mark.parametrize("strategy", ["hardlink", "copy"])
def test_a_tree_placed_over_an_imported_one_runs_the_new_code(
    tmp_path: Path, strategy: str
) -> None:
    site, new = _installed(tmp_path)
    linkstrategy.place(new, site, strategy=strategy)  # type: ignore[arg-type]
    assert run_importing(site, IMPORTS) == "2.0 2.0"
    # the unchanged modules were replaced too (place replaces same-named files), and
    # the bytecode that stays is what was never replaced: none here but the new
    left = sorted(p.name for p in site.rglob("*.pyc"))
    assert f"mod.{TAG}.opt-1.pyc" not in left  # -O's of the old version: gone


def test_a_file_placed_over_an_imported_module_runs_the_new_code(tmp_path: Path) -> None:
    site, new = _installed(tmp_path)
    (site / "__pycache__" / f"keep.{TAG}.pyc").write_bytes(b"another module's")
    linkstrategy.place(new / "top.py", site / "top.py")
    assert run_importing(site, "import top; print(top.VERSION)") == "2.0"
    assert (site / "__pycache__" / f"keep.{TAG}.pyc").read_bytes() == b"another module's"


def test_replace_of_a_module_runs_the_new_code(tmp_path: Path) -> None:
    site, new = _installed(tmp_path)
    linkstrategy.replace(new / "top.py", site / "top.py")
    assert run_importing(site, "import top; print(top.VERSION)") == "2.0"


@pytest.mark.parametrize("how", ["place tree", "place file", "replace", "upgrade"])
def test_a_symlinked_pycache_is_not_followed(tmp_path: Path, how: str) -> None:
    """Bytecode is removed only in a ``__pycache__`` that is a directory of its own: one
    that is a symlink (in a package directory, or beside a top-level module) is left,
    and so is what it points to."""
    site, new = tmp_path / "site", tmp_path / "new"
    same_size_and_mtime(site / "pkg" / "m.py", new / "pkg" / "m.py", V1, V2)
    same_size_and_mtime(site / "top.py", new / "top.py", V1, V2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for stem in ("m", "top"):
        (elsewhere / f"{stem}.{TAG}.pyc").write_bytes(b"not the package's")
    (site / "pkg" / "__pycache__").symlink_to(elsewhere)
    (site / "__pycache__").symlink_to(elsewhere)
    if how == "place tree":
        linkstrategy.place(new, site)
    elif how == "place file":
        linkstrategy.place(new / "top.py", site / "top.py")
    elif how == "replace":
        linkstrategy.replace(new / "top.py", site / "top.py")
    else:
        linkstrategy.upgrade(site, {"top.py": new / "top.py"})
    assert (site / "top.py").read_text() == V2
    for stem in ("m", "top"):
        assert (elsewhere / f"{stem}.{TAG}.pyc").read_bytes() == b"not the package's"
