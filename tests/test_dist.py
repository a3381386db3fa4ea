"""Distribution: what a user installs is what the tests test.

* The xattr functions place() uses are chosen once (``_sys``): the os module's on
  Linux, the ``xattr`` package's where the os module has none (macOS), else ENOTSUP.
  The macOS path runs here on Linux by hiding ``os.listxattr`` & co.
* The version has one home (``__version__``), read by setuptools without importing.
* The sdist is a complete tree whose tests pass when it is unpacked and installed into
  a fresh virtualenv; the wheel is one ``cp310-abi3-manylinux`` wheel whose C extension
  loads in a fresh virtualenv of every CPython >= 3.10 on the machine.

The build tests (marker ``dist``) take about a minute: ``-m "not dist"`` leaves them out.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import linkstrategy
from linkstrategy import _probe, _sys

ROOT = Path(__file__).resolve().parent.parent
_LINUX = sys.platform.startswith("linux")
_OS_XATTR = ("listxattr", "getxattr", "setxattr")


# -- xattrs: os module, the xattr package, or none ---------------------------------------


@pytest.fixture
def os_without_xattrs() -> Iterator[pytest.MonkeyPatch]:
    """The os module as on macOS: no listxattr/getxattr/setxattr.  The implementation is
    chosen again after they are back."""
    mp = pytest.MonkeyPatch()
    try:
        for name in _OS_XATTR:
            mp.delattr(os, name, raising=False)
        _probe.clear_cache()  # probe()'s live xattr test runs again, this way
        yield mp
    finally:
        mp.undo()
        _sys.select_xattr_impl()
        _probe.clear_cache()


def _user_xattrs_here(path: Path) -> bool:
    probe = path / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.linkstrategy", b"1")
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    finally:
        probe.unlink()
    return True


@pytest.fixture
def tree_with_xattr(tmp_path: Path) -> tuple[Path, Path]:
    if not _LINUX:
        pytest.skip("sets the source's xattr with os.setxattr (Linux)")
    if not _user_xattrs_here(tmp_path):
        pytest.skip(f"the filesystem of {tmp_path} has no user xattrs")
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_bytes(b"x = 1\n")
    (src / "pkg" / "plain.py").write_bytes(b"y = 2\n")
    os.setxattr(src / "pkg" / "mod.py", "user.origin", b"cache")
    return src, tmp_path / "dst"


def test_linux_uses_the_os_module_and_never_imports_the_xattr_package() -> None:
    if not _LINUX:
        pytest.skip("Linux only")
    assert _sys.select_xattr_impl() == "os"
    code = "import sys, linkstrategy._place; print('xattr' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_without_os_xattrs_place_uses_the_xattr_package(
    tree_with_xattr: tuple[Path, Path], os_without_xattrs: pytest.MonkeyPatch, place_loop: str
) -> None:
    src, dst = tree_with_xattr
    assert not hasattr(os, "listxattr")
    assert _sys.select_xattr_impl() == "xattr"
    assert linkstrategy.probe(src).xattr == "yes"
    report = linkstrategy.place(src, dst, strategy="copy")
    assert report.by_strategy["copy"] == 2
    assert not report.warnings
    os_without_xattrs.undo()  # read the result with the real os functions
    assert os.getxattr(dst / "pkg" / "mod.py", "user.origin") == b"cache"
    assert os.listxattr(dst / "pkg" / "plain.py") == []
    assert (dst / "pkg" / "mod.py").read_bytes() == b"x = 1\n"


def test_without_either_xattrs_are_not_supported_and_place_still_works(
    tree_with_xattr: tuple[Path, Path], os_without_xattrs: pytest.MonkeyPatch, place_loop: str
) -> None:
    src, dst = tree_with_xattr
    os_without_xattrs.setitem(sys.modules, "xattr", None)  # import xattr -> ImportError
    assert _sys.select_xattr_impl() == "none"
    with pytest.raises(OSError) as e:
        _sys.list_xattrs(0)
    assert e.value.errno == errno.ENOTSUP
    p = linkstrategy.probe(src)
    assert (p.xattr, p.errors.get("xattr")) == ("no", "ENOTSUP")
    report = linkstrategy.place(src, dst, strategy="copy", workers=1)
    assert report.by_strategy["copy"] == 2
    os_without_xattrs.undo()
    assert (dst / "pkg" / "mod.py").read_bytes() == b"x = 1\n"
    assert os.listxattr(dst / "pkg" / "mod.py") == []


# -- metadata --------------------------------------------------------------------------


def test_version_has_one_home_read_without_importing(tmp_path: Path) -> None:
    """pyproject.toml takes the version from ``__version__`` (no second copy), and
    setuptools reads it from the file: an __init__ that cannot be imported still works."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert not re.search(r"^version\s*=", pyproject.split("[tool.")[0], re.M)
    pkg = tmp_path / "src" / "linkstrategy"
    pkg.mkdir(parents=True)
    init = (ROOT / "src" / "linkstrategy" / "__init__.py").read_text()
    (pkg / "__init__.py").write_text(init + "\nraise ImportError('imported at build time')\n")
    # a fresh process: in this one linkstrategy is imported, and setuptools would use it
    code = (
        "from setuptools.config.expand import read_attr\n"
        "print(read_attr('linkstrategy.__version__', {'': 'src'}, '.'))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr[-3000:]
    version = r.stdout.strip()
    assert version == linkstrategy.__version__


# -- the sdist and the wheel as built for publishing -------------------------------------


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``tools/build-wheel.sh``: the sdist and the repaired wheel built from it."""
    if not _LINUX:
        pytest.skip("the wheel build (C extension, auditwheel) is Linux-only")
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        ["bash", str(ROOT / "tools" / "build-wheel.sh"), str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert r.returncode == 0, r.stderr
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list(out.iterdir())
    return sdists[0], wheels[0]


def _tracked(*dirs: str) -> set[str]:
    """Files under ``dirs`` in git (the source of truth for what the sdist must carry);
    outside a git checkout, the files on disk minus caches."""
    r = subprocess.run(
        ["git", "ls-files", "-z", "--", *dirs], cwd=ROOT, capture_output=True, check=False
    )
    if r.returncode == 0 and r.stdout:
        return {p for p in r.stdout.decode().split("\0") if p and (ROOT / p).exists()}
    files = set()
    for d in dirs:
        for p in (ROOT / d).rglob("*"):
            rel = p.relative_to(ROOT).as_posix()
            if p.is_file() and not re.search(r"__pycache__|/\.cache/|/\.build/|\.pyc$", rel):
                files.add(rel)
    return files


# Run from the unpacked sdist, this file would build the sdist again, and so on.
_NOT_THIS = ["--ignore=tests/test_dist.py"]


def _fresh_venv(where: Path, python: str = sys.executable) -> Path:
    subprocess.run([python, "-m", "venv", "--without-pip", str(where)], check=True)
    return where / "bin" / "python"


def _pip_install(venv_python: Path, *args: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv_python), "install", "-q", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.dist
def test_sdist_carries_the_whole_tree_and_license(built: tuple[Path, Path]) -> None:
    sdist, _ = built
    with tarfile.open(sdist) as tar:
        top = sdist.name.removesuffix(".tar.gz")
        names = {n.removeprefix(top + "/") for n in tar.getnames()}
        pkg_info = tar.extractfile(f"{top}/PKG-INFO").read().decode()  # type: ignore[union-attr]
    expected = _tracked("tests", "docs", "bench", "tools", "src", "examples", "schemas")
    expected |= {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "setup.py", "tox.ini"}
    assert sorted(expected - names) == []
    for name in ("tests/conftest.py", "tests/latencyfs.c", "tests/run.sh", "LICENSE"):
        assert name in names
    assert any(n.startswith("tests/data/") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith((".so", ".pyc"))]
    assert f"Version: {linkstrategy.__version__}\n" in pkg_info
    assert "License-Expression: MIT\n" in pkg_info
    assert "License-File: LICENSE\n" in pkg_info
    assert 'Requires-Dist: psutil>=5.9; sys_platform != "linux"\n' in pkg_info
    assert 'Requires-Dist: xattr>=0.10; sys_platform == "darwin"\n' in pkg_info
    for minor in range(10, 15):
        assert f"Classifier: Programming Language :: Python :: 3.{minor}\n" in pkg_info


@pytest.mark.dist
def test_unpacked_sdist_installs_and_its_tests_pass(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """What "the sdist's tests pass" means: unpack it, install it (built from the
    sdist, not editable) into a fresh virtualenv, run the non-root tests from there."""
    sdist, _ = built
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    tree = tmp_path / sdist.name.removesuffix(".tar.gz")
    py = _fresh_venv(tmp_path / "venv")
    _pip_install(py, f"{sdist}[test]")
    where = subprocess.run(
        [str(py), "-c", "import linkstrategy; print(linkstrategy.__file__)"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), where
    args = ["-q", "-m", "not root and not network", "-p", "no:cacheprovider", *_NOT_THIS]
    args.append(f"--basetemp={tmp_path / 'pytest'}")  # its own, apart from this run's
    r = subprocess.run(
        [str(py), "-m", "pytest", *args],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    passed = re.search(r"(\d+) passed", r.stdout)
    assert passed and int(passed.group(1)) >= 150, r.stdout[-2000:]


def _interpreters() -> dict[str, str]:
    """This Python and one of each other CPython >= 3.10 on the machine (pyenv's too),
    by version."""
    found = {f"{sys.version_info[0]}.{sys.version_info[1]}": sys.executable}
    candidates = [p for m in range(10, 20) if (p := shutil.which(f"python3.{m}"))]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
    code = "import sys; print('%d.%d' % sys.version_info[:2], sys.version_info >= (3, 10))"
    for c in candidates:
        r = subprocess.run([c, "-c", code], capture_output=True, text=True, check=False)
        if r.returncode == 0 and r.stdout.split()[1:] == ["True"]:
            found.setdefault(r.stdout.split()[0], c)
    return found


@pytest.mark.dist
def test_one_abi3_manylinux_wheel_loads_its_extension_on_every_python(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    _, wheel = built
    python_tag, abi_tag, platforms = wheel.name.removesuffix(".whl").split("-")[2:]
    assert (python_tag, abi_tag) == ("cp310", "abi3"), wheel.name
    assert all(re.fullmatch(r"manylinux_\d+_\d+_\w+", p) for p in platforms.split(".")), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "linkstrategy/_speedups.abi3.so" in names, names
    assert not [n for n in names if n.endswith(".c")]
    assert any(n.endswith("licenses/LICENSE") for n in names)
    pythons = _interpreters()
    check = (
        "import sys, linkstrategy._speedups as m; from linkstrategy import _cloop\n"
        "assert _cloop.load_speedups() is m, 'place() would not use linkstrategy._speedups'\n"
        "print(sys.version_info[:2], m.__file__)\n"
    )
    for version, python in sorted(pythons.items()):
        venv = tmp_path / f"venv{version}"
        py = _fresh_venv(venv, python)
        # --no-index: on Linux linkstrategy needs nothing else
        _pip_install(py, "--no-index", str(wheel))
        r = subprocess.run(
            [str(py), "-c", check],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "LINKSTRATEGY_NO_SPEEDUPS": ""},
        )
        assert r.returncode == 0, f"{python}: {r.stderr}"
        assert f"{venv}/lib/" in r.stdout and "_speedups.abi3.so" in r.stdout, r.stdout
