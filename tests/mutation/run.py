#!/usr/bin/env python3
"""Break each guard listed in tests/mutation/mutations.py and check that its tests notice.

    python tests/mutation/run.py [--only NAME ...] [--list] [--keep]

For each mutation: copy the repository (never the working tree) to a temporary
directory, replace the snippets, rebuild the C extension there when the mutation
is in C, and run the named tests there, with that copy's ``src`` first on the
path.  A failing run means the mutation was KILLED; a passing one that it
SURVIVED (a guard no test protects).  A snippet that is not found exactly once
is STALE.  Before the mutations, the same tests run on the unmutated copy and
must pass (else the results would mean nothing).

Prints one line per mutation and the kill rate; exits 1 if any mutation survived,
is stale, or could not be run.  As root, the real-filesystem tests run (and must,
``LINKSTRATEGY_REQUIRE_MOUNTS=1``); elsewhere they skip and the mutations only they
catch survive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))  # run as a script: the list next to it

from mutations import MUTATIONS, Mutation  # noqa: E402

TEST_TIMEOUT = 30  # seconds per test (a marker on the test may say more)
RUN_TIMEOUT = 900  # seconds per mutation, all its tests
_IGNORE = shutil.ignore_patterns(
    ".git", ".tox", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
    "*.egg-info", "build", "dist", ".benchmarks",
)  # fmt: skip


def _rmtree(path: Path) -> None:
    """rm -rf, which is not recursive in Python: a mutant may leave a tree thousands of
    levels deep (shutil.rmtree fails there with RecursionError)."""
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def log(msg: str) -> None:
    print(msg, flush=True)


def check_snippets(mut: Mutation, root: Path) -> str | None:
    """None if every snippet is found exactly once (after the edits before it)."""
    text = (root / mut.file).read_text()
    for i, (old, new) in enumerate(mut.edits):
        n = text.count(old)
        if n != 1:
            where = "not found" if n == 0 else f"found {n} times"
            return f"snippet {i + 1} {where} in {mut.file}: {old.splitlines()[0].strip()!r}"
        text = text.replace(old, new)
    return None


def apply(mut: Mutation, root: Path) -> None:
    path = root / mut.file
    text = path.read_text()
    for old, new in mut.edits:
        text = text.replace(old, new)
    path.write_text(text)


def build_ext(root: Path) -> subprocess.CompletedProcess[str]:
    """Compile src/linkstrategy/_speedups.c in place in ``root``."""
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--force"],
        cwd=root,
        capture_output=True,
        text=True,
    )


def env_for(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["LINKSTRATEGY_TEST_BACKSTOP"] = "10"  # tests/conftest.py: hangs SIGALRM cannot stop
    env["LINKSTRATEGY_REQUIRE_SPEEDUPS"] = "1"
    env.pop("LINKSTRATEGY_NO_SPEEDUPS", None)
    if os.geteuid() == 0:
        env["LINKSTRATEGY_REQUIRE_MOUNTS"] = "1"
    return env


def pytest(root: Path, tests: tuple[str, ...] | list[str], *extra: str) -> tuple[int, str, float]:
    # --basetemp inside the copy: never the shared /tmp/pytest-of-<user> (other runs'
    # leftovers there are cleaned by whoever starts next, and can break that start)
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
        "-o", f"timeout={TEST_TIMEOUT}", "-rfEs", f"--basetemp={root / '.pytest-tmp'}",
        *extra, *tests,
    ]  # fmt: skip
    t0 = time.monotonic()
    try:
        res = subprocess.run(
            cmd, cwd=root, env=env_for(root), capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return -1, out + f"\n(no result after {RUN_TIMEOUT} s)", time.monotonic() - t0
    finally:
        unmount_below(root)
    return res.returncode, res.stdout + res.stderr, time.monotonic() - t0


def unmount_below(root: Path) -> list[str]:
    """Lazily unmount whatever a killed or hard-exited test run left mounted in ``root``
    (a copy), deepest first, so that removing the copy never walks into a mount."""
    prefix = str(root) + os.sep
    left = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                mp = line.split()[4].encode().decode("unicode_escape")
                if mp.startswith(prefix):
                    left.append(mp)
    except OSError:
        return []
    for mp in sorted(left, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
    return left


def first_failure(out: str) -> str | None:
    """The first failed test (or the time-limit backstop's), None if no test failed."""
    for line in out.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.replace("Failed: Timeout", "TIMEOUT")[:160]
        if line.startswith("+++ Timeout: "):  # the backstop in tests/conftest.py
            return "TIMEOUT (backstop) " + line.split()[2]
    return None


def tail(out: str, n: int = 5) -> str:
    return " | ".join([ln for ln in out.strip().splitlines() if ln.strip()][-n:])[:600]


def make_template(base: Path) -> Path:
    """The repository as it is (uncommitted edits included), its C extension built."""
    tpl = base / "template"
    shutil.copytree(REPO, tpl, ignore=_IGNORE, symlinks=True)
    res = build_ext(tpl)
    if res.returncode != 0:
        raise SystemExit(f"building the C extension in the copy failed:\n{res.stderr}")
    return tpl


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="run only these mutations")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--keep", action="store_true", help="keep the copies (for debugging)")
    args = ap.parse_args(argv)

    muts = MUTATIONS
    names = [m.name for m in muts]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        log(f"duplicate mutation names: {sorted(dupes)}")
        return 1
    if args.only is not None:
        unknown = set(args.only) - set(names)
        if unknown:
            log(f"unknown mutations: {sorted(unknown)}")
            return 1
        muts = [m for m in muts if m.name in args.only]
    if args.list:
        for mut in muts:
            log(f"{mut.name:50} {mut.file}  ({len(mut.tests)} tests) {mut.why}")
        return 0
    if os.geteuid() != 0:
        log("not root: the real-filesystem tests skip, mutations only they catch will survive")

    base = Path(tempfile.mkdtemp(prefix="linkstrategy-mutation-"))
    results: dict[str, list[str]] = {"KILLED": [], "SURVIVED": [], "STALE": [], "ERROR": []}
    try:
        tpl = make_template(base)
        stale = {m.name: why for m in muts if (why := check_snippets(m, tpl)) is not None}
        all_tests = sorted({t for m in muts if m.name not in stale for t in m.tests})
        log(f"baseline: {len(all_tests)} test nodes, unmutated copy in {tpl}")
        rc, out, took = pytest(tpl, all_tests)
        last = out.strip().splitlines()[-1] if out.strip() else ""
        if rc != 0:
            log(out)
            log(f"baseline failed (exit {rc}): the unmutated code must pass its tests first")
            return 1
        log(f"baseline passed in {took:.0f} s: {last}")
        _rmtree(tpl / ".pytest-tmp")  # not into every copy
        skipped = [ln for ln in out.splitlines() if ln.startswith("SKIPPED")]
        for ln in skipped:
            log(f"  {ln}")

        for i, mut in enumerate(muts, 1):
            head = f"[{i:2}/{len(muts)}] {mut.name:50}"
            if mut.name in stale:
                results["STALE"].append(mut.name)
                log(f"{head} STALE     {stale[mut.name]}")
                continue
            work = base / f"m{i:02d}"
            shutil.copytree(tpl, work, symlinks=True)
            apply(mut, work)
            if mut.file.endswith(".c"):
                res = build_ext(work)
                if res.returncode != 0:
                    results["ERROR"].append(mut.name)
                    log(f"{head} ERROR     the mutant does not compile: {res.stderr[-300:]}")
                    continue
            rc, out, took = pytest(work, list(mut.tests), "-x")
            failed = first_failure(out)
            if rc == -1:
                results["KILLED"].append(mut.name)
                log(f"{head} KILLED    {took:5.1f} s  by a hang past {RUN_TIMEOUT} s")
            elif rc == 1 and failed is not None:
                results["KILLED"].append(mut.name)
                log(f"{head} KILLED    {took:5.1f} s  by {failed}")
            elif rc == 0:
                results["SURVIVED"].append(mut.name)
                log(f"{head} SURVIVED  {took:5.1f} s  ({', '.join(mut.tests)})")
            else:
                results["ERROR"].append(mut.name)
                log(f"{head} ERROR     pytest exit {rc}, no test failed: {tail(out)}")
            if not args.keep:
                _rmtree(work)
    finally:
        unmount_below(base)
        if not args.keep:
            _rmtree(base)
        else:
            log(f"copies kept in {base}")

    killed, survived = len(results["KILLED"]), len(results["SURVIVED"])
    tried = killed + survived
    rate = 100.0 * killed / tried if tried else 0.0
    log("")
    log(
        f"killed {killed}, survived {survived}, stale {len(results['STALE'])}, "
        f"errors {len(results['ERROR'])}: kill rate {rate:.1f}% ({killed}/{tried})"
    )
    for kind in ("SURVIVED", "STALE", "ERROR"):
        if results[kind]:
            log(f"{kind.lower()}: {', '.join(results[kind])}")
    return 0 if tried and not (survived or results["STALE"] or results["ERROR"]) else 1


if __name__ == "__main__":
    sys.exit(main())
