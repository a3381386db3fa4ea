"""examples/wheel_installer.py on real wheels from PyPI: install, import, run, pip check,
uninstall, reinstall from the cache, upgrade older releases.  Needs PyPI; in CI (``CI``
set) a failed download fails the test instead of skipping it.  The upgrade's cases
(a namespace directory shared with another project, scripts renamed) on wheels made
here."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "wheel_installer.py"
# small pure-Python wheels (one with a console script) and one with compiled code
WHEELS = ["six", "idna", "pyflakes", "markupsafe"]


def download(d: Path, *specs: str) -> list[Path]:
    """Wheels of ``specs`` from PyPI into ``d``; skips (fails in CI) when PyPI is out of reach."""
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-d", str(d), *specs],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if r.returncode != 0:
        msg = f"cannot download wheels from PyPI: {r.stderr.strip()[-500:]}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return sorted(d.glob("*.whl"))


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return download(tmp_path_factory.mktemp("wheels"), *WHEELS)


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


# -- upgrade -------------------------------------------------------------------------------


def make_wheel(
    d: Path, name: str, version: str, files: dict[str, str], scripts: dict[str, str] | None = None
) -> Path:
    """A pure-Python wheel of ``files`` (``{path: text}``; ``<name>-<v>.data/...`` paths
    included) with console ``scripts`` (``{name: "module:func"}``)."""
    import zipfile

    info = f"{name}-{version}.dist-info"
    meta = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in scripts.items())
        meta[f"{info}/entry_points.txt"] = f"[console_scripts]\n{lines}"
    every = {**files, **meta}
    record = "".join(f"{n},,\n" for n in [*every, f"{info}/RECORD"])
    wheel = d / f"{name}-{version}-py3-none-any.whl"
    d.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as z:
        for n, text in {**every, f"{info}/RECORD": record}.items():
            z.writestr(n, text)
    return wheel


def distributions(py: Path) -> list[str]:
    """``name version`` of every distribution the venv's interpreter finds (what ``pip
    check`` reads; the tests run without pip where the suite runs from the sdist)."""
    code = (
        "import importlib.metadata as m; "
        "print(sorted(f\"{d.metadata['Name']} {d.version}\" for d in m.distributions()))"
    )
    return list(ast.literal_eval(run(py, "-c", code).stdout))


ACME_1 = {
    "acme/__init__.py": 'VERSION = "1.0"\ndef main():\n    print("acme", VERSION)\n',
    "acme/old_only.py": "",
    "acme.libs/lib.txt": "1",
    "gone.py": "",
    "ns/acme_part/__init__.py": 'PART = "1.0"\n',
    # listed bytecode, as in a RECORD pip wrote: site-packages' own __pycache__ is shared
    f"__pycache__/gone.{sys.implementation.cache_tag}.pyc": "",
}
ACME_2 = {
    "acme/__init__.py": 'VERSION = "2.0"\ndef main():\n    print("acme", VERSION)\n',
    "acme/new.py": "",
    "new_top/__init__.py": "",
    "ns/acme_part/__init__.py": 'PART = "2.0"\n',
    "acme-2.0.data/scripts/helper": "#!/bin/sh\necho helper\n",
}
OTHER = {"ns/other_part/__init__.py": 'PART = "other"\n', "other.py": ""}


def acme_1_installed(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``(venv, cache, wheel of acme 2.0)``: a venv with acme 1.0 and other 1.0 installed
    by the example (acme's ``ns/acme_part`` beside other's ``ns/other_part``)."""
    wheels = tmp_path / "wheels"
    w1 = make_wheel(wheels / "1", "acme", "1.0", ACME_1, {"tool": "acme:main"})
    w2 = make_wheel(wheels / "2", "acme", "2.0", ACME_2, {"tool2": "acme:main"})
    wo = make_wheel(wheels / "o", "other", "1.0", OTHER)
    venv, cache = tmp_path / "venv", tmp_path / "cache"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    run(sys.executable, EXAMPLE, "install", venv, wo, w1, "--cache", cache)
    return venv, cache, w2


def assert_acme_2(site: Path, py: Path) -> None:
    """One dist-info each, and acme 2.0's code imported beside other's namespace part."""
    assert sorted(p.name for p in site.glob("*.dist-info")) == [
        "acme-2.0.dist-info", "other-1.0.dist-info"
    ]  # fmt: skip
    got = run(py, "-c", "import acme, ns.acme_part as a, ns.other_part as o; "
              "print(acme.VERSION, a.PART, o.PART)").stdout  # fmt: skip
    assert got == "2.0 2.0 other\n"


def test_installing_a_new_version_upgrades_as_one_transaction(tmp_path: Path) -> None:
    """A wheel of a project already installed is an upgrade: its entries swapped by
    linkstrategy.upgrade() -- code the new version lacks removed, the dist-info renamed
    (one dist-info at any time), a namespace directory another project shares updated
    file by file and never swapped as a whole, old console scripts removed.  It was a
    merge: the old version's files stayed, beside a second dist-info."""
    venv, cache, w2 = acme_1_installed(tmp_path)
    py = venv / "bin" / "python"
    run(py, "-c", "import acme, gone, ns.acme_part, ns.other_part, other")  # bytecode written
    assert run(venv / "bin" / "tool").stdout == "acme 1.0\n"
    site = next((venv / "lib").glob("python*/site-packages"))
    cached = digest(cache)

    out = run(sys.executable, EXAMPLE, "install", venv, w2, "--cache", cache).stdout
    assert "upgraded acme-1.0.dist-info to acme-2.0.dist-info" in out
    assert_acme_2(site, py)
    for gone in ("acme/old_only.py", "acme.libs", "gone.py", "acme-1.0.dist-info"):
        assert not (site / gone).exists(), gone
    assert not list(site.glob("__pycache__/gone.*"))  # a removed module's bytecode
    assert list(site.glob("__pycache__/other.*.pyc"))  # another project's: never swapped out
    assert (site / "new_top" / "__init__.py").exists() and (site / "other.py").exists()
    assert not (venv / "bin" / "tool").exists()
    assert run(venv / "bin" / "tool2").stdout == "acme 2.0\n"
    assert run(venv / "bin" / "helper").stdout == "helper\n"
    record = (site / "acme-2.0.dist-info" / "RECORD").read_text()
    assert "../../../bin/tool2" in record and "INSTALLER" in record
    # nothing written through a link into the cache: the entries there before, and the
    # new one's RECORD (rewritten in site-packages) as the wheel has it
    after = digest(cache)
    assert {k: after[k] for k in cached} == cached
    import zipfile

    with zipfile.ZipFile(w2) as z:
        wheel_record = z.read("acme-2.0.dist-info/RECORD")
    assert after[f"{w2.name}/acme-2.0.dist-info/RECORD"] == wheel_record
    assert f"{w2.name}/acme-2.0.dist-info/INSTALLER" not in after
    assert distributions(py) == ["acme 2.0", "other 1.0"]

    run(sys.executable, EXAMPLE, "uninstall", venv, "acme")
    assert not [p for p in site.rglob("*") if "acme" in p.name or "new_top" in p.name]
    assert (site / "ns" / "other_part" / "__init__.py").exists()
    run(py, "-c", "import ns.other_part, other")


@pytest.mark.network
def test_upgrading_real_wheels(tmp_path: Path, wheels: list[Path]) -> None:
    """Older releases from PyPI installed and imported, then the current ones over them:
    one dist-info each, the new versions imported, pip check clean."""
    old = download(tmp_path / "old", "six==1.16.0", "idna==3.6")
    venv, cache = tmp_path / "venv", tmp_path / "cache"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    run(sys.executable, EXAMPLE, "install", venv, *old, "--cache", cache)
    assert run(py, "-c", "import six, idna; print(six.__version__)").stdout == "1.16.0\n"
    new = [w for w in wheels if w.name.startswith(("six-", "idna-"))]
    run(sys.executable, EXAMPLE, "install", venv, *new, "--cache", cache)
    site = next((venv / "lib").glob("python*/site-packages"))
    infos = sorted(p.name.split("-")[0] for p in site.glob("*.dist-info"))
    assert infos == ["idna", "six"]
    versions = run(py, "-c", "import six, idna; print(six.__version__, idna.__version__)").stdout
    assert (
        versions.split() == [w.name.split("-")[1] for w in sorted(new, key=lambda w: w.name)][::-1]
    )
    run(sys.executable, "-m", "pip", "--python", py, "check")


_KILLED_AT = """
import os, runpy, sys
import linkstrategy._txn as T
step = sys.argv.pop(1)
T.step_hook = lambda name: os.kill(os.getpid(), 9) if name == step else None
sys.argv[0] = sys.argv[1]
del sys.argv[1]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


_STEPS = [
    "upgrade-placed:acme",
    "upgrade-swapping",
    "upgrade-swapped:acme",
    "upgrade-swapped:acme-2.0.dist-info",
    "upgrade-swapped:gone.py",
    "upgrade-swapped:tool2",
    "upgrade-swapped:tool",
    "upgrade-committing",
]


def killed_upgrade(tmp_path: Path, step: str) -> tuple[Path, Path, Path, Path]:
    """``(venv, site, cache, wheel of acme 2.0)`` after the example was killed -9 at
    ``step`` of its upgrade of acme 1.0 to 2.0."""
    venv, cache, w2 = acme_1_installed(tmp_path)
    args = [sys.executable, "-c", _KILLED_AT, step, EXAMPLE, "install", venv, w2, "--cache", cache]
    killed = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    return venv, next((venv / "lib").glob("python*/site-packages")), cache, w2


@pytest.mark.parametrize("step", _STEPS)
def test_an_upgrade_killed_at_any_step_is_finished_by_the_next_install(
    tmp_path: Path, step: str
) -> None:
    """kill -9 of the example while it upgrades, at each step of the transaction, then
    the same install again: it completes (the interrupted transaction is settled
    first, forward or back as a whole, then the upgrade runs on what is there).  It
    failed where the kill left the code swapped and the old dist-info in place: the
    upgrade it planned named a dist-info the recovery had just renamed."""
    venv, site, cache, w2 = killed_upgrade(tmp_path, step)
    py = venv / "bin" / "python"
    run(sys.executable, EXAMPLE, "install", venv, w2, "--cache", cache)
    assert_acme_2(site, py)
    assert not (site / "gone.py").exists() and not (site / "acme" / "old_only.py").exists()
    assert not [n for n in os.listdir(site) if n.startswith(".")]  # no journal left
    assert distributions(py) == ["acme 2.0", "other 1.0"]
    scripts = {n for n in os.listdir(venv / "bin") if n.startswith(("tool", "helper"))}
    assert scripts == {"tool2", "helper"}


@pytest.mark.parametrize("step", _STEPS)
def test_a_killed_upgrade_settles_its_scripts_with_its_dist_info(tmp_path: Path, step: str) -> None:
    """After the kill, the settling alone (gc of site-packages) leaves the scripts in
    bin/ belonging to the dist-info there: the new ones with acme 2.0, the old with 1.0
    (they were a second step outside the transaction: new code beside old scripts)."""
    venv, site, _cache, _w2 = killed_upgrade(tmp_path, step)
    import linkstrategy

    linkstrategy.gc(site)
    scripts = {n for n in os.listdir(venv / "bin") if n.startswith(("tool", "helper"))}
    if (site / "acme-2.0.dist-info").exists():
        assert scripts == {"tool2", "helper"}, step
    else:
        assert (site / "acme-1.0.dist-info").exists() and scripts == {"tool"}, step
