"""pytest-benchmark: place() by strategy next to cp/shutil/uv peers, remove(), probe, import.

    pytest bench/ --benchmark-only                  # everything (root for the XFS image)
    pytest bench/ --benchmark-only -k micro         # import/probe micro-benchmarks only
    LINKSTRATEGY_BENCH_SUBSET=1 pytest bench/ --benchmark-only   # small tree (sympy)

Each benchmark group puts linkstrategy next to its peers (``--benchmark-group-by
group``, the default), e.g. group ``local-hardlink`` has place(hardlink) and
``cp -al``.  The tree and destinations live on one XFS ``reflink=1`` loop image in
/dev/shm; the destination is removed, untimed, before each round.  No timed
assertions: compare the medians in the table pytest-benchmark prints.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROUNDS = 5


def rm_tree(path: Path) -> None:
    if path.exists() or path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _pedantic(benchmark: Any, fresh_dst: Callable[[], Path], fn: Callable[[Path], Any]) -> Any:
    def setup() -> tuple[tuple[Path], dict[str, Any]]:
        return (fresh_dst(),), {}

    return benchmark.pedantic(fn, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)


def _run(cmd: list[str], **kw: Any) -> None:
    subprocess.run(cmd, check=True, capture_output=True, **kw)


# -- place() and its peers, grouped by what they produce --------------------------------

PLACE_GROUPS = {
    "reflink": "local-reflink",
    "hardlink": "local-hardlink",
    "copy": "local-copy",
    "auto": "local-auto",
}


@pytest.mark.parametrize("strategy", ["reflink", "hardlink", "copy", "auto"])
def test_place(
    benchmark: Any,
    linkstrategy_api: Any,
    src_tree: Path,
    fresh_dst: Callable[[], Path],
    strategy: str,
) -> None:
    benchmark.group = PLACE_GROUPS[strategy]
    benchmark.name = f"place({strategy})"
    rep = _pedantic(
        benchmark, fresh_dst, lambda d: linkstrategy_api.place(src_tree, d, strategy=strategy)
    )
    by = getattr(rep, "by_strategy", None)
    if by is not None:
        benchmark.extra_info["by_strategy"] = {str(k): v for k, v in dict(by).items()}
        benchmark.extra_info["files"] = getattr(rep, "files", None)


PEERS = [
    ("local-hardlink", "cp -al", ["cp", "-al"]),
    ("local-reflink", "cp -r --reflink=always", ["cp", "-r", "--reflink=always"]),
    ("local-auto", "cp -r", ["cp", "-r"]),
    ("local-copy", "cp -r --reflink=never", ["cp", "-r", "--reflink=never"]),
]


@pytest.mark.parametrize(("group", "name", "cmd"), PEERS, ids=[p[1] for p in PEERS])
def test_cp(
    benchmark: Any,
    src_tree: Path,
    fresh_dst: Callable[[], Path],
    group: str,
    name: str,
    cmd: list[str],
) -> None:
    benchmark.group = group
    benchmark.name = name
    _pedantic(benchmark, fresh_dst, lambda d: _run([*cmd, str(src_tree), str(d)]))


def test_copytree(benchmark: Any, src_tree: Path, fresh_dst: Callable[[], Path]) -> None:
    benchmark.group = "local-copy"
    benchmark.name = "shutil.copytree"
    _pedantic(benchmark, fresh_dst, lambda d: shutil.copytree(src_tree, d))


UV_GROUPS = {"hardlink": "local-hardlink", "clone": "local-reflink", "copy": "local-copy"}


@pytest.fixture(scope="session")
def uv_env(xfs: Path, wheels_on_xfs: list[Path]) -> dict[str, str]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv not installed (pip install uv)")
    env = {**os.environ, "UV_CACHE_DIR": str(xfs / "uv-cache"), "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    warm = xfs / "uv-warm"
    _run([uv, "venv", "-q", "--python", sys.executable, str(warm)], env=env)
    _run(
        [
            uv,
            "pip",
            "install",
            "--offline",
            "--no-deps",
            "--python",
            str(warm / "bin/python"),
            *map(str, wheels_on_xfs),
        ],
        env=env,
    )
    rm_tree(warm)
    return env


@pytest.mark.parametrize("mode", ["hardlink", "clone", "copy"])
def test_uv(
    benchmark: Any,
    uv_env: dict[str, str],
    wheels_on_xfs: list[Path],
    fresh_dst: Callable[[], Path],
    mode: str,
) -> None:
    """uv pip install of the same wheels from a warm cache on the same XFS (a fresh venv)."""
    benchmark.group = UV_GROUPS[mode]
    benchmark.name = f"uv {mode}"
    uv = shutil.which("uv")
    assert uv is not None

    def setup() -> tuple[tuple[Path], dict[str, Any]]:
        d = fresh_dst()
        _run([uv, "venv", "-q", "--python", sys.executable, str(d)], env=uv_env)
        os.sync()
        return (d,), {}

    def install(d: Path) -> None:
        _run(
            [
                uv,
                "pip",
                "install",
                "--offline",
                "--no-deps",
                "--link-mode",
                mode,
                "--python",
                str(d / "bin/python"),
                *map(str, wheels_on_xfs),
            ],
            env=uv_env,
        )

    benchmark.pedantic(install, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)


# -- removal on the XFS image -------------------------------------------------------------


def _removal(
    benchmark: Any, src_tree: Path, fresh_dst: Callable[[], Path], fn: Callable[[Path], Any]
) -> None:
    def setup() -> tuple[tuple[Path], dict[str, Any]]:
        d = fresh_dst()
        _run(["cp", "-a", "--reflink=never", str(src_tree), str(d)])
        os.sync()
        return (d,), {}

    benchmark.pedantic(fn, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)


def test_remove(
    benchmark: Any, linkstrategy_api: Any, src_tree: Path, fresh_dst: Callable[[], Path]
) -> None:
    benchmark.group = "local-remove"
    benchmark.name = "remove()"
    _removal(benchmark, src_tree, fresh_dst, linkstrategy_api.remove)


def test_rm_rf(benchmark: Any, src_tree: Path, fresh_dst: Callable[[], Path]) -> None:
    benchmark.group = "local-remove"
    benchmark.name = "rm -rf"
    _removal(benchmark, src_tree, fresh_dst, lambda d: _run(["rm", "-rf", str(d)]))


def test_rmtree(benchmark: Any, src_tree: Path, fresh_dst: Callable[[], Path]) -> None:
    benchmark.group = "local-remove"
    benchmark.name = "shutil.rmtree"
    _removal(benchmark, src_tree, fresh_dst, shutil.rmtree)


# -- micro-benchmarks (no root needed) ------------------------------------------------------


@pytest.mark.parametrize("code", ["pass", "import linkstrategy"])
def test_micro_import(benchmark: Any, code: str) -> None:
    """Interpreter start with and without ``import linkstrategy`` (subtract the two)."""
    benchmark.group = "micro-import"
    benchmark.name = f"python -c {code!r}"
    if code != "pass":
        try:
            import linkstrategy  # noqa: F401
        except ImportError as e:
            pytest.skip(f"linkstrategy not importable: {e}")
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            check=True,
            capture_output=True,
            text=True,
        ).stderr
        benchmark.extra_info["importtime_us"] = _importtime(out, "linkstrategy")
    benchmark.pedantic(
        _run, args=([sys.executable, "-c", code],), rounds=20, iterations=1, warmup_rounds=2
    )


def _importtime(stderr: str, module: str) -> int | None:
    """Cumulative microseconds of ``module`` from ``python -X importtime`` output."""
    for line in stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    return None


@pytest.fixture
def probe_api() -> Any:
    try:
        import linkstrategy
        from linkstrategy import _probe
    except ImportError as e:
        pytest.skip(f"linkstrategy not importable: {e}")
    if not hasattr(linkstrategy, "probe") or not hasattr(_probe, "clear_cache"):
        pytest.skip("linkstrategy.probe / _probe.clear_cache do not exist yet")
    return linkstrategy, _probe


def test_micro_probe_warm(benchmark: Any, probe_api: Any, tmp_path: Path) -> None:
    """probe(path) with the live-test result already cached for this mount."""
    ls, _probe = probe_api
    benchmark.group = "micro-probe"
    benchmark.name = "probe() warm"
    ls.probe(tmp_path)
    benchmark(ls.probe, tmp_path)


def test_micro_probe_cold_nolive(benchmark: Any, probe_api: Any, tmp_path: Path) -> None:
    """probe(path, live=False) after clear_cache(): mount table read and classification."""
    ls, _probe = probe_api
    benchmark.group = "micro-probe"
    benchmark.name = "probe(live=False) cold"

    def setup() -> None:
        _probe.clear_cache()

    benchmark.pedantic(
        ls.probe, args=(tmp_path,), kwargs={"live": False}, setup=setup, rounds=200, iterations=1
    )
    _probe.clear_cache()


def test_micro_probe_cold_live(benchmark: Any, probe_api: Any, tmp_path: Path) -> None:
    """probe(path) after clear_cache(): includes the live reflink/hardlink/xattr test."""
    ls, _probe = probe_api
    benchmark.group = "micro-probe"
    benchmark.name = "probe() cold, live test"

    def setup() -> None:
        _probe.clear_cache()

    benchmark.pedantic(ls.probe, args=(tmp_path,), setup=setup, rounds=50, iterations=1)
    _probe.clear_cache()
