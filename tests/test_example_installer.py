"""examples/wheel_installer.py on real wheels from PyPI: install, import, run, pip check,
uninstall, reinstall from the cache.  Needs PyPI; in CI (``CI`` set) a failed download
fails the test instead of skipping it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "wheel_installer.py"
# small pure-Python wheels (one with a console script) and one with compiled code
WHEELS = ["six", "idna", "pyflakes", "markupsafe"]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("wheels")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-d", str(d), *WHEELS],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if r.returncode != 0:
        msg = f"cannot download wheels from PyPI: {r.stderr.strip()[-500:]}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return sorted(d.glob("*.whl"))


def digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a command; the venv's interpreter (and pip looking at it) without PYTHONPATH, so
    it sees only what was installed into it (the example itself may need PYTHONPATH to
    find linkstrategy, as in the unprivileged run of tests/run.sh).  Bytecode is written,
    as for a user (the test runners set PYTHONDONTWRITEBYTECODE): an uninstall must take
    the ``__pycache__`` its imports wrote."""
    env = dict(os.environ)
    if str(args[1] if len(args) > 1 else "") != str(EXAMPLE):
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
    return r


@pytest.mark.network
def test_install_import_check_uninstall(tmp_path: Path, wheels: list[Path]) -> None:
    venv, cache = tmp_path / "venv", tmp_path / "cache"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    run(sys.executable, EXAMPLE, "install", venv, *wheels, "--cache", cache)
    cached = digest(cache)
    out = run(py, "-c", "import six, idna, markupsafe, pyflakes, markupsafe._speedups as s;"
              "print(markupsafe.escape('<x>'), s.__file__)").stdout  # fmt: skip
    assert "&lt;x&gt;" in out and "site-packages" in out
    run(venv / "bin" / "pyflakes", EXAMPLE)  # the console script works
    run(sys.executable, "-m", "pip", "--python", py, "check")
    site = next((venv / "lib").glob("python*/site-packages"))
    # cache and venv share a filesystem here: files are hardlinks into the cache,
    # and nothing the installer wrote went through one into the cache
    entry = next(cache.glob("six-*"))
    assert (site / "six.py").stat().st_ino == (entry / "six.py").stat().st_ino
    assert digest(cache) == cached
    assert "INSTALLER" in (next(site.glob("six-*.dist-info")) / "RECORD").read_text()

    run(sys.executable, EXAMPLE, "uninstall", venv, "six")
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([py, "-c", "import six"], capture_output=True, env=clean)
    assert r.returncode != 0
    assert not list(site.glob("six*")) and not list(site.glob("__pycache__/six.*.pyc"))
    run(py, "-c", "import idna, markupsafe, pyflakes")
    run(sys.executable, "-m", "pip", "--python", py, "check")
    # a console script: RECORD lists it as ../../../bin/pyflakes, inside the venv
    assert list(site.glob("pyflakes/__pycache__/*.pyc"))  # the imports above wrote them
    run(sys.executable, EXAMPLE, "uninstall", venv, "pyflakes")
    assert not (venv / "bin" / "pyflakes").exists() and not list(site.glob("pyflakes*"))
    assert (venv / "bin" / "python").exists()

    run(sys.executable, EXAMPLE, "install", venv, *wheels, "--cache", cache)  # from the cache
    run(py, "-c", "import six")
    assert digest(cache) == cached
    listed = run(sys.executable, "-m", "pip", "--python", py, "list", "--format=freeze").stdout
    assert {line.split("==")[0].lower() for line in listed.split()} == set(WHEELS)


def test_an_installer_file_the_wheel_ships_is_not_written_through_the_cache(tmp_path: Path) -> None:
    """A wheel that ships INSTALLER: the example rewrites it, and the cache's stays as it
    was (it was hardlinked from the cache and written in place)."""
    import zipfile

    wheel = tmp_path / "wheels" / "shipsinstaller-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    info = "shipsinstaller-1.0.dist-info"
    files = {
        "shipsinstaller/__init__.py": "X = 1\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: shipsinstaller\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/INSTALLER": "the wheel's own\n",
    }
    record = "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as z:
        for n, text in {**files, f"{info}/RECORD": record}.items():
            z.writestr(n, text)
    venv, cache = tmp_path / "venv", tmp_path / "cache"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    run(sys.executable, EXAMPLE, "install", venv, wheel, "--cache", cache)
    cached = digest(cache)
    entry = next(cache.glob("shipsinstaller-*"))
    assert (entry / info / "INSTALLER").read_text() == "the wheel's own\n"
    site = next((venv / "lib").glob("python*/site-packages"))
    assert (site / info / "INSTALLER").read_text() == "linkstrategy-example\n"
    assert (site / "shipsinstaller" / "__init__.py").stat().st_ino == (
        entry / "shipsinstaller" / "__init__.py"
    ).stat().st_ino  # the rest hardlinked: cache and venv share a filesystem here
    run(sys.executable, EXAMPLE, "install", venv, wheel, "--cache", cache)  # again, from the cache
    assert digest(cache) == cached
