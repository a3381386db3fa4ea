"""An installer's use: many packages at once, per-file policy, an observer, file lists."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import linkstrategy
from linkstrategy import InvalidArgument, PlaceError, _owner, _place, _probe


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, place_loop: str) -> None:
    _probe.clear_cache()
    if place_loop == "python":
        monkeypatch.setenv("LINKSTRATEGY_NO_SPEEDUPS", "1")
    monkeypatch.delenv("LINKSTRATEGY_STRATEGY", raising=False)


def wheel(cache: Path, name: str, nfiles: int = 5) -> Path:
    """An unpacked wheel in the cache: a package and its dist-info."""
    root = cache / name
    (root / name / "sub").mkdir(parents=True)
    for i in range(nfiles):
        (root / name / f"m{i}.py").write_text(f"{name} {i}\n")
    (root / name / "sub" / "data.txt").write_text(name)
    (root / name / "link").symlink_to("m0.py")
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Name: {name}\n")
    (info / "RECORD").write_text("")
    return root


def contents(root: Path) -> dict[str, str]:
    out = {}
    for p in root.rglob("*"):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "->" + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = p.read_text()
    return out


def test_place_many_installs_every_package_into_one_site(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    names = [f"pkg{i}" for i in range(16)]
    roots = [wheel(cache, n) for n in names]
    site = tmp_path / "site"
    site.mkdir()
    reports = linkstrategy.place_many([(r, site) for r in roots])
    assert [r.src for r in reports] == [str(r) for r in roots]
    assert all(r.files == 8 and r.symlinks == 1 for r in reports)
    expected: dict[str, str] = {}
    for r in roots:
        expected.update(contents(r))
    assert contents(site) == expected


def test_place_many_one_failure_leaves_the_others_placed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    good = [wheel(cache, f"ok{i}") for i in range(3)]
    jobs = [
        (good[0], tmp_path / "s0"),
        (cache / "missing", tmp_path / "sx"),
        (good[1], tmp_path / "s1"),
    ]
    results = linkstrategy.place_many(jobs, check=False)
    assert isinstance(results[1], PlaceError) and results[1].errno == errno.ENOENT
    assert contents(tmp_path / "s0") == contents(good[0])
    assert contents(tmp_path / "s1") == contents(good[1])
    with pytest.raises(PlaceError):
        linkstrategy.place_many([(good[2], tmp_path / "s2"), (cache / "missing", tmp_path / "sy")])
    assert contents(tmp_path / "s2") == contents(good[2]), "the good job still completes"
    assert not (tmp_path / "sy").exists()


def test_threads_of_one_process_install_into_one_site(tmp_path: Path) -> None:
    """4 threads, 16 wheels, one place() each into one site-packages (issue: EEXIST on
    shared temporary names)."""
    cache = tmp_path / "cache"
    roots = [wheel(cache, f"w{i}") for i in range(16)]
    site = tmp_path / "site"
    site.mkdir()
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for r in roots[k::4]:
                linkstrategy.place(r, site)
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    expected: dict[str, str] = {}
    for r in roots:
        expected.update(contents(r))
    assert contents(site) == expected


@pytest.mark.parametrize(
    "copy", [["*.dist-info/RECORD"], lambda rel: rel.endswith("/RECORD")], ids=["glob", "callable"]
)
def test_copy_policy_never_hardlinks_those_files(tmp_path: Path, copy: object) -> None:
    """On a filesystem where the chain hardlinks, RECORD still gets an inode of its own."""
    root = wheel(tmp_path / "cache", "p")
    site = tmp_path / "site"
    for dst in (site, tmp_path / "fresh"):
        if dst == site:
            site.mkdir()  # merge into an existing directory, and a fresh one
        r = linkstrategy.place(root, dst, copy=copy)  # type: ignore[arg-type]
        if r.chain[0] != "hardlink":
            pytest.skip(f"no hardlink first on {tmp_path}: {r.chain}")
        rec = dst / "p-1.0.dist-info" / "RECORD"
        assert rec.stat().st_ino != (root / "p-1.0.dist-info" / "RECORD").stat().st_ino
        assert (dst / "p" / "m0.py").stat().st_ino == (root / "p" / "m0.py").stat().st_ino
        rec.write_text("rewritten by the installer")
        assert (root / "p-1.0.dist-info" / "RECORD").read_text() == ""


@pytest.mark.parametrize("chain", [("symlink", "copy"), ("symlink",), ("symlink", "hardlink")])
def test_copy_policy_never_symlinks_those_files(tmp_path: Path, chain: tuple[str, ...]) -> None:
    """With symlink in the chain, a copy= file still gets data of its own: a symlink into
    the cache would take the installer's rewrite of RECORD into the cache (as a
    hardlink would)."""
    root = wheel(tmp_path / "cache", "p")
    for dst in (tmp_path / "site", tmp_path / "fresh"):
        if dst.name == "site":
            dst.mkdir()
        linkstrategy.place(root, dst, strategy=chain, copy=["*.dist-info/RECORD"])  # type: ignore[arg-type]
        rec = dst / "p-1.0.dist-info" / "RECORD"
        assert not rec.is_symlink()
        assert rec.stat().st_ino != (root / "p-1.0.dist-info" / "RECORD").stat().st_ino
        assert (dst / "p" / "m0.py").is_symlink() == (chain[0] == "symlink")
        rec.write_text("rewritten by the installer")
        assert (root / "p-1.0.dist-info" / "RECORD").read_text() == ""


def test_observer_sees_every_entry_and_how(tmp_path: Path) -> None:
    root = wheel(tmp_path / "cache", "q")
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def observer(path: str, how: str) -> None:
        with lock:
            seen.append((path, how))

    r = linkstrategy.place(root, tmp_path / "site", observer=observer, copy=["*/RECORD"])
    first = r.chain[0]
    expected = {
        (str(p.relative_to(root)), "symlink" if p.is_symlink() else first)
        for p in root.rglob("*")
        if p.is_file() or p.is_symlink()
    }
    expected.discard(("q-1.0.dist-info/RECORD", first))
    record_how = "copy" if first == "hardlink" else first
    expected.add(("q-1.0.dist-info/RECORD", record_how))
    assert sorted(seen) == sorted(expected)


def test_file_list_is_resolved_by_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listed names are stat'ed by each directory's job (or found by the C walk of
    a new subtree, itself a job), not in the calling thread."""
    root = wheel(tmp_path / "cache", "r", nfiles=40)
    files = [str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()]
    where: list[str] = []
    real = _place._classify_listed

    def classify(run, sdir, rel, listing):  # type: ignore[no-untyped-def]
        if listing.listed:
            where.append(threading.current_thread().name)
        return real(run, sdir, rel, listing)

    monkeypatch.setattr(_place, "_classify_listed", classify)
    fast = _place._fast
    if fast is not None and hasattr(fast, "place_tree"):

        class Spy:
            def __getattr__(self, name: str) -> object:
                return getattr(fast, name)

            def place_tree(self, *args: object) -> object:
                where.append(threading.current_thread().name)
                return fast.place_tree(*args)

        monkeypatch.setattr(_place, "_fast", Spy())
    r = linkstrategy.place(root, tmp_path / "site", files=files)
    assert r.files + r.symlinks == len(files)
    assert where and threading.current_thread().name not in where


@pytest.mark.parametrize("entry", ["../escape", "/etc/passwd", "r/../../x", "", "."])
def test_file_list_entries_outside_the_source_are_refused(tmp_path: Path, entry: str) -> None:
    root = wheel(tmp_path / "cache", "s")
    with pytest.raises(InvalidArgument) as ei:
        linkstrategy.place(root, tmp_path / "site", files=["s/m0.py", entry])
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, OSError)
    assert ei.value.errno == errno.EINVAL
    assert not (tmp_path / "site").exists()
    assert os.listdir(tmp_path) == ["cache"]


def test_file_list_entry_that_is_a_directory_is_refused_and_rolled_back(tmp_path: Path) -> None:
    root = wheel(tmp_path / "cache", "t")
    with pytest.raises(InvalidArgument) as ei:
        linkstrategy.place(root, tmp_path / "site", files=["t/m0.py", "t/sub"])
    assert ei.value.errno == errno.EISDIR
    assert os.listdir(tmp_path) == ["cache"]


@pytest.mark.parametrize("strategy", ["copy", "reflink"])
def test_times_false_leaves_the_new_files_times_alone(xfs_reflink: Path, strategy: str) -> None:
    """times=False (cp without -p): no utimens request per file; the default keeps them."""
    src = wheel(xfs_reflink / "cache", "u")
    old = 1_500_000_000
    for p in src.rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.utime(p, (old, old))
    linkstrategy.place(src, xfs_reflink / "kept", strategy=strategy)
    linkstrategy.place(src, xfs_reflink / "fresh", strategy=strategy, times=False)
    for p in src.rglob("*.py"):
        rel = p.relative_to(src)
        assert (xfs_reflink / "kept" / rel).stat().st_mtime == old
        assert (xfs_reflink / "fresh" / rel).stat().st_mtime > old + 1e8


def test_a_process_never_judges_its_own_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """place_many() into one site-packages: each job's scan sees the others' hidden
    directories; they are this process's (alive by definition), so none is judged --
    judging every one from every job made a batch quadratic."""
    from linkstrategy import _removal

    cache = tmp_path / "cache"
    roots = [wheel(cache, f"j{i}", nfiles=1) for i in range(30)]
    site = tmp_path / "site"
    site.mkdir()
    judged: list[str] = []
    real = _removal.judge

    def judge(dir_fd: int, name: str, st: os.stat_result) -> str:
        judged.append(name)
        return real(dir_fd, name, st)

    monkeypatch.setattr(_removal, "judge", judge)
    # every job lists the site, as separate place() calls do (a batch lists it once)
    monkeypatch.setattr(_place, "_LOOK_UP_AT_MOST", -1)
    linkstrategy.place_many([(r, site) for r in roots])
    assert judged == []


PATTERNS = ["*.dist-info/RECORD", "a?c", "[!x]y*", "x/[ab]", "lit", "a*b", "c[d]", "[", "a[", "*"]
NAMES = ["numpy-1.dist-info/RECORD", "x.dist-info/RECORDX", "abc", "xyz", "zy/q", "a/c", "RECORD"]
NAMES += ["x/a", "x/[ab]", "lit", "alit", "ab", "acb", "cd", "c[d]", "[", "a[", "", "ab]c"]


@pytest.mark.parametrize("n", [1, 2])
def test_copy_patterns_match_as_fnmatchcase(n: int) -> None:
    """copy= patterns are one compiled regex behind a literal-tail test: the same answer
    as fnmatch.fnmatchcase for every pattern kind (wildcards, classes, a bare "[")."""
    import fnmatch
    import itertools

    for pats in itertools.combinations(PATTERNS, n):
        policy = _place._policy(list(pats))
        assert policy is not None
        for name in NAMES:
            assert policy(name) == any(fnmatch.fnmatchcase(name, p) for p in pats), (pats, name)


@pytest.mark.parametrize("network", [False, True])
def test_the_top_of_a_local_tree_is_done_in_the_calling_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, place_loop: str, network: bool
) -> None:
    """Into an existing directory (site-packages), the top directory's Python -- a few
    syscalls, then each new subdirectory a C walk -- runs in the calling thread when
    the C walk does the rest: on a worker it waited for the GIL while the caller read
    the next job, and the C walks waited for it.  On a network filesystem, and on the
    Python path, it stays a worker's job (round trips the next job need not wait for)."""
    root = wheel(tmp_path / "cache", "pkg", nfiles=3)
    site = tmp_path / "site"
    site.mkdir()
    if network:
        mp = linkstrategy.probe(tmp_path).mount.mount_point
        monkeypatch.setenv("LINKSTRATEGY_NETWORK_MOUNTS", mp)
        _probe.clear_cache()
    where: dict[str, bool] = {}
    real = _place._dir_job

    def dir_job(run, roots, rel, drel, *rest):  # type: ignore[no-untyped-def]
        where[rel] = threading.current_thread() is threading.main_thread()
        return real(run, roots, rel, drel, *rest)

    monkeypatch.setattr(_place, "_dir_job", dir_job)
    r = linkstrategy.place_many([(root, site)])[0]
    assert isinstance(r, linkstrategy.PlaceReport) and r.files == 6
    assert contents(site) == contents(root)
    here = place_loop == "c" and not network
    assert where[""] is here, where
    assert (r.workers > 2) is network


def test_a_top_directory_failing_in_the_calling_thread_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, place_loop: str
) -> None:
    """The top directory's job failing where it runs (here, or on a worker) fails its
    placement alone, and what it made is rolled back."""
    roots = [wheel(tmp_path / "cache", n) for n in ("a", "b", "c")]
    site = tmp_path / "site"
    site.mkdir()
    real = _place._make_hidden

    def make_hidden(run, ddir, drel, tmp, *mode):  # type: ignore[no-untyped-def]
        if run.src_root == str(roots[1]) and len(run.hidden_tops) == 1:
            raise OSError(errno.EIO, "injected", tmp)  # its second new directory
        return real(run, ddir, drel, tmp, *mode)

    monkeypatch.setattr(_place, "_make_hidden", make_hidden)
    results = linkstrategy.place_many([(r, site) for r in roots], check=False)
    assert isinstance(results[1], PlaceError) and results[1].errno == errno.EIO
    assert sorted(os.listdir(site)) == sorted(["a", "a-1.0.dist-info", "c", "c-1.0.dist-info"]), (
        "b rolled back, no temporary left"
    )


def test_place_many_starts_each_job_as_it_is_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs from a generator (an installer reading each RECORD in turn) start as they
    are drawn: the first is under way before the second is asked for."""
    roots = [wheel(tmp_path / "cache", n) for n in ("a", "b")]
    site = tmp_path / "site"
    site.mkdir()
    started: list[str] = []
    seen: list[list[str]] = []
    real = _place._Placement.start

    def start(self: _place._Placement) -> None:
        started.append(self.s)
        real(self)

    monkeypatch.setattr(_place._Placement, "start", start)

    def jobs():  # type: ignore[no-untyped-def]
        for r in roots:
            seen.append(list(started))
            yield (r, site, [str(p.relative_to(r)) for p in r.rglob("*") if not p.is_dir()])

    results = linkstrategy.place_many(jobs())
    assert [r.files + r.symlinks for r in results] == [9, 9]  # type: ignore[union-attr]
    assert seen == [[], [str(roots[0])]]
    assert contents(site) == {**contents(roots[0]), **contents(roots[1])}


def test_a_generator_of_jobs_that_raises_rolls_back_what_started(tmp_path: Path) -> None:
    """A generator raising after some jobs started (a RECORD it cannot read): the error
    goes up, and the started jobs are rolled back -- nothing half-placed stays."""
    roots = [wheel(tmp_path / "cache", n) for n in ("a", "b")]
    site = tmp_path / "site"
    site.mkdir()
    (site / "keep.txt").write_text("mine")

    def jobs():  # type: ignore[no-untyped-def]
        yield (roots[0], site)
        yield (roots[1], tmp_path / "new" / "site")
        raise ValueError("bad RECORD")

    with pytest.raises(ValueError, match="bad RECORD"):
        linkstrategy.place_many(jobs())
    assert os.listdir(site) == ["keep.txt"]
    assert not (tmp_path / "new" / "site").exists()
    assert os.listdir(tmp_path / "new") == []


def _count_plans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = _place.plan

    def counted(src, dst, **kw):  # type: ignore[no-untyped-def]
        calls.append(str(src))
        return real(src, dst, **kw)

    monkeypatch.setattr(_place, "plan", counted)
    return calls


def test_place_many_plans_once_per_mount_of_its_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache entries of one mount share one plan into one site-packages (a plan is
    a few hundred µs of a small package's 1 ms); with symlinks in the chain, whose
    relative targets depend on the paths, each source has its own."""
    calls = _count_plans(monkeypatch)
    roots = [wheel(tmp_path / "cache", n) for n in ("a", "b", "c")]
    site = tmp_path / "site"
    site.mkdir()
    rs = linkstrategy.place_many([(r, site) for r in roots])
    assert len(calls) == 1, calls
    assert len({r.chain for r in rs}) == 1  # type: ignore[union-attr]
    assert contents(site) == {k: v for r in roots for k, v in contents(r).items()}


def test_symlinks_in_the_chain_get_a_plan_per_source(
    tmpfs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Symlinks are relative when source and destination share an ancestor below the
    mount point, else absolute: two sources on one mount may differ, so each has its
    own plan."""
    import shutil
    import tempfile

    other = Path(tempfile.mkdtemp(dir=tmpfs_dir.parent))  # beside it, on the same mount
    try:
        calls = _count_plans(monkeypatch)
        near, far = wheel(tmpfs_dir / "cache", "a"), wheel(other / "cache", "b")
        links = tmpfs_dir / "links"
        links.mkdir()
        rs = linkstrategy.place_many([(near, links), (far, links)], strategy=("symlink",))
        assert len(calls) == 2, calls
        assert all(r.by_strategy.get("symlink") for r in rs)  # type: ignore[union-attr]
        assert os.readlink(links / "a" / "m0.py") == "../../cache/a/a/m0.py"
        assert os.readlink(links / "b" / "m0.py") == str(far / "b" / "m0.py")
    finally:
        shutil.rmtree(other)


def _other_cache_gets_its_own_plan(
    here: Path, there: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry in ``here`` (hardlinkable into ``site``) and one in ``there`` (not):
    two plans, and the second's chain has no hardlink to fall back from."""
    calls = _count_plans(monkeypatch)
    wheel(here, "a")
    wheel(there, "b")
    site.mkdir()
    rs = linkstrategy.place_many([(here / "a", site), (there / "b", site)])
    assert len(calls) == 2, calls
    assert "hardlink" in rs[0].chain and "hardlink" not in rs[1].chain  # type: ignore[union-attr]
    assert not rs[1].fallbacks  # type: ignore[union-attr]


def test_a_bind_mount_of_the_cache_gets_its_own_plan(
    xfs_bind: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One filesystem, two mounts: an entry reached through the bind mount cannot be
    hardlinked into a site on the other (EXDEV), so it must not share the plan of an
    entry that can."""
    orig, bound = xfs_bind
    _other_cache_gets_its_own_plan(orig / "cache", bound / "cache", orig / "site", monkeypatch)


def test_a_btrfs_subvolume_of_the_cache_gets_its_own_plan(
    btrfs_subvols: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One mount, two btrfs subvolumes (two st_dev): the entry in the other subvolume
    cannot be hardlinked into the site, so it gets a plan of its own."""
    a, b = btrfs_subvols
    _other_cache_gets_its_own_plan(a / "cache", b / "cache", a / "site", monkeypatch)


def test_place_many_reads_the_umask_it_runs_under(tmp_path: Path) -> None:
    """The umask is read once for a batch: under 077, copies and new directories still
    get the sources' modes (a run that took 022 for granted leaves them 0700)."""
    roots = [wheel(tmp_path / "cache", n) for n in ("a", "b")]
    for r in roots:
        for p in r.rglob("*"):
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
    site = tmp_path / "site"
    site.mkdir()
    old = os.umask(0o077)
    try:
        linkstrategy.place_many([(r, site) for r in roots], strategy="copy")
    finally:
        os.umask(old)
    for r in roots:
        for p in r.rglob("*"):
            if not p.is_symlink():
                got = (site / p.relative_to(r)).stat().st_mode & 0o777
                assert got == p.stat().st_mode & 0o777, p


def test_an_interrupt_in_a_top_directory_rolls_back_the_whole_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, place_loop: str
) -> None:
    """Ctrl-C while the calling thread makes a job's top directory: the interrupt goes
    up at once, and every job of the batch -- the ones already started too -- is
    rolled back; nothing new stays.  (Elsewhere the top directory is a worker's job,
    where no interrupt arrives: a signal goes to the main thread.)"""
    if place_loop != "c":
        pytest.skip("the top directory is done in the calling thread on the C walk's path only")
    roots = [wheel(tmp_path / "cache", n) for n in ("a", "b", "c")]
    site = tmp_path / "site"
    site.mkdir()
    (site / "keep.txt").write_text("mine")
    real = _place._make_hidden

    def make_hidden(run, ddir, drel, tmp, *mode):  # type: ignore[no-untyped-def]
        if run.src_root == str(roots[1]):
            raise KeyboardInterrupt
        return real(run, ddir, drel, tmp, *mode)

    monkeypatch.setattr(_place, "_make_hidden", make_hidden)
    with pytest.raises(KeyboardInterrupt):
        linkstrategy.place_many([(r, site) for r in roots])
    assert os.listdir(site) == ["keep.txt"]


@contextlib.contextmanager
def _fd_room(room: int) -> Iterator[None]:
    """RLIMIT_NOFILE lowered to leave about ``room`` fds free (as a small ``ulimit -n``
    leaves a library once its host has its own files open): the open ones plus
    ``room``, so a few more where some are open above that."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + room, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _temporaries(root: Path) -> list[str]:
    names = [*root.rglob(".lstmp-*"), *root.rglob(".linkstrategy-lock*")]
    return [str(p) for p in names]


def test_a_batch_of_many_packages_needs_few_fds(tmp_path: Path) -> None:
    """60 packages into one site-packages with 48 fds to spare: each job holds
    directory fds while under way, and each new package directory a lock -- a batch
    must not need more of them as it grows (it failed with EMFILE, leaving
    ``.lstmp-`` directories behind)."""
    roots = [wheel(tmp_path / "cache", f"p{i}", nfiles=1) for i in range(60)]
    site = tmp_path / "site"
    site.mkdir()
    before = len(os.listdir("/proc/self/fd"))
    with _fd_room(48):
        reports = linkstrategy.place_many([(r, site) for r in roots])
    assert len(reports) == 60
    expected: dict[str, str] = {}
    for r in roots:
        expected.update(contents(r))
    assert contents(site) == expected
    assert _temporaries(site) == []
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_tree_of_many_new_top_directories_needs_few_fds(tmp_path: Path) -> None:
    """place() of a tree with 300 top-level directories into an existing directory,
    48 fds to spare: one lock for all the hidden new directories, not one each."""
    src = tmp_path / "src"
    for i in range(300):
        (src / f"d{i}").mkdir(parents=True)
        (src / f"d{i}" / "m.py").write_text(str(i))
    site = tmp_path / "site"
    site.mkdir()
    before = len(os.listdir("/proc/self/fd"))
    with _fd_room(48):
        r = linkstrategy.place(src, site)
    assert r.files == 300
    assert contents(site) == contents(src)
    assert _temporaries(site) == []
    assert len(os.listdir("/proc/self/fd")) == before


def _many(tmp_path: Path, n: int) -> tuple[list[Path], Path]:
    """``n`` packages that each also add a file to the site's existing namespace
    directory ``ns`` (a file new in an existing directory: renamed into place on its
    own, not with a hidden directory)."""
    roots = []
    for i in range(n):
        r = wheel(tmp_path / "cache", f"p{i}", nfiles=1)
        (r / "ns").mkdir()
        (r / "ns" / f"p{i}.py").write_text(str(i))
        roots.append(r)
    site = tmp_path / "site"
    (site / "ns").mkdir(parents=True)
    return roots, site


def test_a_long_batch_ends_its_oldest_jobs_as_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More jobs than may be under way at once: by the time the last is drawn the first
    is placed whole, and the batch's fds stay bounded however many jobs it has."""
    monkeypatch.setattr(_place, "_jobs_under_way", lambda: 4)
    roots, site = _many(tmp_path, 24)
    base = len(os.listdir("/proc/self/fd"))
    seen: list[tuple[bool, int]] = []

    def jobs():  # type: ignore[no-untyped-def]
        for r in roots:
            seen.append(((site / "p0").is_dir(), len(os.listdir("/proc/self/fd")) - base))
            yield (r, site)

    linkstrategy.place_many(jobs())
    assert [s[0] for s in seen] == [False] * 4 + [True] * 20  # 4 under way, then p0 ended
    # 4 jobs' 3 fds each, one lock, the walks' directories (2 workers, 2 fds a level, a
    # few levels): far below the 24 jobs' 120 when every job stayed under way
    assert max(s[1] for s in seen) <= 40, seen
    assert sorted(os.listdir(site / "ns")) == sorted(f"p{i}.py" for i in range(24))


@pytest.mark.parametrize("when", ["drawing", "ending"])
def test_an_interrupt_leaves_the_ended_jobs_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Ctrl-C in a long batch: the jobs under way are rolled back, the ones that ended
    stay whole -- their files in existing directories too (an ended job was rolled back
    in part: its new directories kept, its files in ``ns/`` unlinked)."""
    monkeypatch.setattr(_place, "_jobs_under_way", lambda: 4)
    roots, site = _many(tmp_path, 8)
    real = _place._Placement.finish

    def finish(self: _place._Placement) -> object:
        if when == "ending" and self.s == str(roots[5]):
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(_place._Placement, "finish", finish)

    def jobs():  # type: ignore[no-untyped-def]
        for i, r in enumerate(roots):
            if when == "drawing" and i == 7:
                raise KeyboardInterrupt
            yield (r, site)

    with pytest.raises(KeyboardInterrupt):
        linkstrategy.place_many(jobs())
    ended = 4 if when == "drawing" else 5  # p0-p3 ended before p7 is drawn; p0-p4 before p5 ends
    for i in range(len(roots)):
        got = (site / f"p{i}").exists(), (site / "ns" / f"p{i}.py").exists()
        assert got == ((True, True) if i < ended else (False, False)), (i, got)
    assert _temporaries(site) == []


def test_a_batch_lists_a_big_site_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each package into a site-packages of thousands of entries listed all of it (about
    1 ms each); a batch lists it once (removing dead temporaries then), and each later
    package looks up its own few names there -- a directory an earlier package made
    is seen as there, and merged into."""
    site = tmp_path / "site"
    site.mkdir()
    for i in range(300):
        (site / f"other{i}").mkdir()
    dead = site / _owner.tmp_name(7).replace(_owner.owner(), "0" * 16)
    dead.mkdir()
    (dead / _owner.LOCK_NAME).write_text("")  # a killed run's: its lock is free
    roots = [wheel(tmp_path / "cache", f"p{i}", nfiles=1) for i in range(6)]
    for r in roots[3:]:  # a namespace package the first three make and the last three share
        (r / "ns").mkdir()
        (r / "ns" / f"{r.name}.py").write_text(r.name)
    for r in roots[:3]:
        (r / "ns").mkdir()
        (r / "ns" / f"{r.name}.py").write_text(r.name)
    listed: list[int] = []
    real = _place._scan_existing

    def scan(dfd: int) -> frozenset[str]:
        listed.append(os.fstat(dfd).st_ino)
        return real(dfd)

    monkeypatch.setattr(_place, "_scan_existing", scan)
    monkeypatch.setattr(_place, "_jobs_under_way", lambda: 4)  # p0 ends before p4 starts
    linkstrategy.place_many([(r, site) for r in roots])
    assert listed.count(site.stat().st_ino) == 1
    assert not dead.exists()
    assert sorted(os.listdir(site / "ns")) == sorted(f"p{i}.py" for i in range(6))
    expected = {k: v for r in roots for k, v in contents(r).items()}
    assert {k: v for k, v in contents(site).items() if not k.startswith("other")} == expected
