# ruff: noqa: E501  (the snippets are copies of code lines, indentation included)
"""The guards of linkstrategy, each broken on purpose, and the tests that must notice.

Each :class:`Mutation` names a file, one or more exact snippets of its current
code with their replacements, and the tests (pytest node IDs) that must fail
when the snippets are replaced.  ``tests/mutation/run.py`` applies each to a
temporary copy of the repository and runs those tests there.

A snippet that is no longer found (or found more than once) makes the mutation
STALE, which fails the run: after a refactor, update the snippet to the new code
of the same guard -- do not drop the mutation.
"""

from __future__ import annotations

from dataclasses import dataclass

P = "tests/test_place.py"
R = "tests/test_remove.py"
T = "tests/test_txn.py"
S = "tests/test_speedups.py"
GP = "tests/test_guarantees_place.py"
GR = "tests/test_guarantees_remove.py"
GT = "tests/test_guarantees_txn.py"
RS = "tests/test_remove_safety.py"
GS = "tests/test_guarantees_speedups.py"

_PLACE = "src/linkstrategy/_place.py"
_REMOVE = "src/linkstrategy/_remove.py"
_TXN = "src/linkstrategy/_txn.py"
_TRASH = "src/linkstrategy/_trash.py"
_C = "src/linkstrategy/_speedups.c"
_SYS_LINUX = "src/linkstrategy/_sys/_linux.py"
_SYS_COMMON = "src/linkstrategy/_sys/_common.py"
_SYS_DARWIN = "src/linkstrategy/_sys/_darwin.py"
_CLOOP = "src/linkstrategy/_cloop.py"
SY = "tests/test_sys.py"
_ERRORS = "src/linkstrategy/_errors.py"
_CHAIN = "src/linkstrategy/_chain.py"
_PLAN = "src/linkstrategy/_plan.py"
CH = "tests/test_chain.py"
_OWNER = "src/linkstrategy/_owner.py"
_TREE = "src/linkstrategy/_tree.py"
_REMOVAL = "src/linkstrategy/_removal.py"
_GC = "src/linkstrategy/_gc.py"
_POOL = "src/linkstrategy/_pool.py"
UN = "tests/test_uninstall.py"
PS = "tests/test_place_safety.py"
B = "tests/test_batch.py"
TO = "tests/test_tree_owner.py"
U = "tests/test_upgrade.py"
_UPG = "src/linkstrategy/_upgrade.py"
TW = "tests/test_tree_walk.py"
RW = "tests/test_remove_walk.py"
FL = "tests/test_filelist.py"
SH = "tests/test_tree_share.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    edits: tuple[tuple[str, str], ...]  # (exact snippet, replacement), applied in order
    tests: tuple[str, ...]
    why: str = ""


def m(name: str, file: str, old: str, new: str, tests: tuple[str, ...], why: str = "") -> Mutation:
    return Mutation(name, file, ((old, new),), tests, why)


MUTATIONS: list[Mutation] = [
    # -- place(): the C tree walk ---------------------------------------------------------
    m(
        "tree-walk-private-hardlinked",
        _C,
        "            if (place_one(private_ ? w->pstrategy : w->strategy, sfd, nd->dfd, name, w->umask_,",
        "            if (place_one(w->strategy, sfd, nd->dfd, name, w->umask_,",
        (
            f"{TW}::test_the_files_copy_names_are_placed_by_their_own_strategy",
            f"{TW}::test_file_lists_same_tree_and_report_as_the_other_paths",
        ),
        "RECORD hardlinked into the cache: the installer's rewrite of it corrupts the cache",
    ),
    m(
        "tree-share-pool-never-hungry",
        _POOL,
        "            if self.on_hungry is not None:\n                self.on_hungry(hungry)",
        "            if self.on_hungry is not None:\n                self.on_hungry(False)",
        (f"{SH}::test_a_big_package_is_shared_with_an_idle_worker",),
        "one big package keeps one thread busy while the other waits",
    ),
    m(
        "tree-share-hungry-while-every-slot-is-busy",
        _POOL,
        "        hungry = not self.jobs and self.slots < self.workers",
        "        hungry = not self.jobs",
        ("tests/test_pool.py::test_the_hungry_flag_follows_idle_slots",),
        "walks share work nobody can take: a Python job per share for nothing",
    ),
    m(
        "tree-share-listed-checked-per-part",
        _PLACE,
        "        if last and walk.entries < _expected(run, rel, span, walk.rest):",
        "        if entries < _expected(run, rel, span, rest):",
        (f"{SH}::test_shared_walks_with_a_file_list",),
        "a walk in parts sees fewer listed entries in each part: a false 'the source changed'",
    ),
    m(
        "tree-share-untaken-capsule-leaks",
        _C,
        "    if (g->b != NULL) /* never taken: its job was skipped (the run failed) */\n        board_release(g->b);",
        "    if (0)\n        board_release(g->b);",
        (f"{SH}::test_give_raising_stops_the_walk_with_its_error",),
        "a board whose job is skipped is never freed (with its directories, when a walk failed)",
    ),
    m(
        "tree-share-last-holder-keeps-the-fds",
        _C,
        "    ds_close(nd->sd);\n    close(nd->dfd);\n    pthread_mutex_destroy(&nd->mu);",
        "    pthread_mutex_destroy(&nd->mu);",
        (f"{SH}::test_a_big_package_is_shared_with_an_idle_worker",),
        "every shared directory keeps two fds open: a big install runs out of them",
    ),
    m(
        "tree-share-taken-twice",
        _C,
        "        if (gift->b == NULL) {",
        "        if (0) {",
        (f"{SH}::test_a_share_never_taken_loses_nothing_and_closes_its_fds",),
        "a frame taken twice: its directory released twice",
    ),
    m(
        "tree-board-no-directory-bound",
        _C,
        "    int full = b->open >= b->max_depth;",
        "    int full = 0;",
        (f"{SH}::test_walks_on_one_board_keep_within_its_directory_bound",),
        "walks far apart on one board hold a directory open per level each: EMFILE under a low limit",
    ),
    m(
        "tree-board-never-joins-a-reading-directory",
        _C,
        "        if (waited && b->reading != NULL) {",
        "        if (0) {",
        (f"{SH}::test_a_big_flat_directory_is_read_in_turns",),
        "a big flat directory keeps one thread busy while the other waits",
    ),
    m(
        "tree-board-gives-only-with-subdirectories-waiting",
        _C,
        "            (__atomic_load_n(&b->n, __ATOMIC_RELAXED) > 0 || w->entries - w->kept >= GIVE_AFTER) &&",
        "            __atomic_load_n(&b->n, __ATOMIC_RELAXED) > 0 &&",
        (f"{SH}::test_a_big_flat_directory_is_read_in_turns",),
        "a tree that is one big flat directory is placed by one thread",
    ),
    m(
        "tree-board-joins-only-when-idle",
        _C,
        "        if (board != NULL && w.hungry != NULL && strategy != HARDLINK)",
        "        if (0)",
        (
            f"{SH}::test_a_free_thread_joins_a_walk_before_it_starts_another_package",
            f"{SH}::test_a_hardlink_walk_gives_only_to_an_idle_thread",
        ),
        "a batch of clones: each thread works a package of its own, in another XFS group",
    ),
    m(
        "tree-board-hardlinks-join-first",
        _C,
        "        if (board != NULL && w.hungry != NULL && strategy != HARDLINK)",
        "        if (board != NULL && w.hungry != NULL)",
        (f"{SH}::test_a_hardlink_walk_gives_only_to_an_idle_thread",),
        "a batch of hardlinks pays a Python job per package for nothing (20 % slower measured)",
    ),
    m(
        "tree-board-reads-after-give-raised",
        _C,
        "            if (path != NULL && w->pyerr[0] == NULL)",
        "            if (path != NULL)",
        (f"{SH}::test_a_copy_walk_gives_its_board_as_it_starts",),
        "a walk whose give() raised (the run is failing) places its whole first directory",
    ),
    m(
        "pool-first-job-queued-last",
        _POOL,
        "            if first and not self.lifo:",
        "            if False:",
        ("tests/test_pool.py::test_a_job_submitted_first_is_taken_before_the_queued_ones",),
        "a walk's board given away waits behind every queued package",
    ),
    m(
        "batch-plan-shared-across-subvolumes",
        _PLACE,
        '    return (f"mount {sx.mnt_id} dev {sx.dev}", parent)',
        '    return (f"mount {sx.mnt_id}", parent)',
        ("tests/test_batch.py::test_a_btrfs_subvolume_of_the_cache_gets_its_own_plan",),
        "an entry in another btrfs subvolume is planned as hardlinkable (each file then EXDEV)",
    ),
    m(
        "batch-plan-shared-across-mounts",
        _PLACE,
        '    return (f"mount {sx.mnt_id} dev {sx.dev}", parent)',
        '    return (f"dev {sx.dev}", parent)',
        ("tests/test_batch.py::test_a_bind_mount_of_the_cache_gets_its_own_plan",),
        "an entry through a bind mount is planned as hardlinkable (each file then EXDEV)",
    ),
    m(
        "batch-plan-shared-with-symlinks",
        _PLACE,
        '            if shared_key is not None and "symlink" not in p.chain:',
        "            if shared_key is not None:",
        ("tests/test_batch.py::test_symlinks_in_the_chain_get_a_plan_per_source",),
        "a source far from the destination gets another's relative symlinks",
    ),
    m(
        "batch-plan-per-source",
        _PLACE,
        "        shared_key = None if plans is None else _shared_plan_key(src_dir, parent)",
        "        shared_key = None",
        ("tests/test_batch.py::test_place_many_plans_once_per_mount_of_its_sources",),
        "a plan per package (a few hundred µs each) in a batch from one cache",
    ),
    m(
        "batch-umask-taken-for-granted",
        _PLACE,
        "        _current_umask(),",
        "        0o022,",
        ("tests/test_batch.py::test_place_many_reads_the_umask_it_runs_under",),
        "under umask 077 a batch's new directories and copies stay 0700/0600",
    ),
    m(
        "batch-interrupt-leaves-started-jobs",
        _PLACE,
        "    except BaseException:\n        for job in under_way.values():\n            job.abandon()\n        raise",
        "    except BaseException:\n        raise",
        ("tests/test_batch.py::test_an_interrupt_in_a_top_directory_rolls_back_the_whole_batch",),
        "Ctrl-C mid-batch leaves the started packages' hidden directories and lock files behind",
    ),
    m(
        "batch-every-job-under-way",
        _PLACE,
        "    most = _jobs_under_way()",
        "    most = 1 << 30",
        (
            f"{B}::test_a_batch_of_many_packages_needs_few_fds",
            f"{B}::test_a_long_batch_ends_its_oldest_jobs_as_it_goes",
        ),
        "every job of a long batch holds its fds until the end: EMFILE under ulimit -n 1024, .lstmp- left",
    ),
    Mutation(
        "batch-ending-job-forgotten-on-interrupt",
        _PLACE,
        (
            (
                "        job = under_way[i]\n        try:",
                "        job = under_way.pop(i)\n        try:",
            ),
            ("        del under_way[i]\n        job.close()", "        job.close()"),
        ),
        (f"{B}::test_an_interrupt_leaves_the_ended_jobs_whole",),
        "Ctrl-C as a job ends: it is neither ended nor rolled back (its files in existing directories stay)",
    ),
    m(
        "holds-a-lock-fd-per-directory",
        _OWNER,
        "            fd = self._shared.get(dev)\n",
        "            fd = None\n",
        (
            f"{B}::test_a_tree_of_many_new_top_directories_needs_few_fds",
            f"{TO}::test_directories_sharing_one_lock_live_and_die_with_it",
        ),
        "a lock fd per hidden directory: EMFILE for a tree of 1,200 new top-level directories",
    ),
    m(
        "holds-closes-a-lock-still-held",
        _OWNER,
        "            if self._names[fd] > 0:\n                return",
        "            if self._names[fd] > 1:\n                return",
        (f"{TO}::test_holds_gives_back_each_name_and_closes_with_the_last",),
        "the shared lock let go while other hidden directories still count on it: judged dead, reaped",
    ),
    m(
        "holds-retries-a-link-that-cannot-work",
        _OWNER,
        "                    if e.errno != errno.EMLINK:\n                        self._unlinkable.add(dev)",
        "                    pass",
        (f"{TO}::test_holds_makes_a_new_lock_file_where_a_link_fails",),
        "on a filesystem without hard links, a failed link (a round trip) before every lock file",
    ),
    m(
        "batch-top-directory-on-a-worker",
        _PLACE,
        "                    here=run.whole_trees,",
        "                    here=False,",
        ("tests/test_batch.py::test_the_top_of_a_local_tree_is_done_in_the_calling_thread",),
        "a package's top directory waits for the GIL on a worker while the caller reads on",
    ),
    m(
        "pool-interrupt-swallowed-in-the-caller",
        _POOL,
        "            if reraise and not isinstance(e, Exception):",
        "            if False:",
        (
            "tests/test_pool.py::test_a_job_called_here_is_one_of_the_groups",
            "tests/test_batch.py::test_an_interrupt_in_a_top_directory_rolls_back_the_whole_batch",
        ),
        "Ctrl-C in a top directory done here is kept until the batch waits, after more jobs start",
    ),
    m(
        "batch-jobs-drawn-all-first",
        _PLACE,
        "        for j in jobs:",
        "        for j in list(jobs):",
        ("tests/test_batch.py::test_place_many_starts_each_job_as_it_is_drawn",),
        "a generator's jobs wait until the last RECORD is read",
    ),
    m(
        "tree-walk-read-only-dir-mode-lost",
        _C,
        "    if ((mode & 0700) != 0700 && recs_add(&w->recs, REC_MODE, rel, len, (long long)mode, 0) != 0)",
        "    if (0)",
        (f"{TW}::test_hands_back_exactly_what_is_not_plain",),
        "a 0555 directory the walk made keeps its owner-writable mode",
    ),
    m(
        "tree-walk-report-tail-not-into-the-prefix",
        _C,
        "            return 1; /* the tail reaches back into the prefix */",
        "            return 0;",
        (f"{TW}::test_the_placed_report_by_tails_is_what_the_policy_could_want",),
        "RECORD of pkg.dist-info walked on its own never re-placed as a copy: a hardlink into the cache",
    ),
    m(
        "tree-walk-report-every-file",
        _C,
        "    if (t->count < 0)\n        return 1;",
        "    if (1)\n        return 1;",
        (f"{TW}::test_the_placed_report_by_tails_is_what_the_policy_could_want",),
        "every placed path reported again (the cost this saves)",
    ),
    m(
        "tree-walk-drops-what-it-cannot-place",
        _C,
        "        } else {\n            w->entries++;\n            r = recs_add(&w->recs, REC_REST, path, len, 0, 0);\n        }",
        "        } else {\n            w->entries++;\n        }",
        (f"{TW}::test_same_tree_and_report_as_the_other_paths",),
        "symlinks and special files below a new directory silently missing",
    ),
    m(
        "tree-walk-follows-a-swapped-symlink",
        _C,
        "    int csfd = openat(psfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);",
        "    int csfd = openat(psfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);",
        (f"{TW}::test_a_directory_swapped_for_a_symlink_is_not_followed",),
        "a source directory swapped for a symlink after the listing would be walked through",
    ),
    m(
        "tree-walk-deep-holds-many-fds",
        _PLACE,
        "_TREE_DEPTH = 16",
        "_TREE_DEPTH = 64",
        (f"{TW}::test_deep_trees_hold_few_fds",),
        "a walk holds two fds per level it descends: 64 levels would not fit ulimit -n",
    ),
    m(
        "tree-walk-on-a-network-mount",
        _PLACE,
        "            and not run.plan.network\n",
        "",
        (f"{TW}::test_only_where_nothing_needs_python_per_file",),
        "a network filesystem wants many directories in flight, not one walk per subtree",
    ),
    m(
        "tree-walk-with-callbacks",
        _PLACE,
        "            and run.observer is None\n",
        "",
        (f"{TW}::test_only_where_nothing_needs_python_per_file",),
        "an observer must see every file",
    ),
    m(
        "place-bytes-of-replaced-links-counted",
        _PLACE,
        "            tally.bytes -= _keep_link(run, rel, ddir, names[idx], (dev, ino))",
        "            _keep_link(run, rel, ddir, names[idx], (dev, ino))",
        (f"{TW}::test_same_tree_and_report_as_the_other_paths",),
        "bytes must count what the tree holds, as on the Python path",
    ),
    m(
        "tree-walk-places-unlisted-files",
        _C,
        "            if (type != DT_DIR && k < 0) {\n                path[nd->len] = '\\0';\n                continue;\n            }",
        "",
        (f"{TW}::test_file_lists_same_tree_and_report_as_the_other_paths",),
        "place(files=...) must place the listed files and nothing else",
    ),
    m(
        "tree-walk-hardlinks-copy-policy-files",
        _C,
        "                hand_back = w->flags[k] != 'p' || type == DT_DIR;",
        "                hand_back = type == DT_DIR;",
        (f"{TW}::test_file_lists_same_tree_and_report_as_the_other_paths",),
        "a file copy= names (RECORD) would be a hardlink into the cache",
    ),
    m(
        "tree-walk-missing-listed-file-unnoticed",
        _PLACE,
        "        if last and walk.entries < _expected(run, rel, span, walk.rest):",
        "        if False:",
        (f"{TW}::test_file_list_errors_as_on_the_other_paths",),
        "a listed file that is not there must fail the call",
    ),
    m(
        "tree-walk-listed-directory-placed",
        _PLACE,
        "                        if run.listed is not None and _is_listed(run, path):",
        "                        if False:",
        (f"{TW}::test_file_list_errors_as_on_the_other_paths",),
        "a listed entry that is a directory is refused, as on the per-directory path",
    ),
    m(
        "place-hidden-dir-left-when-its-lock-fails",
        _PLACE,
        "        if ident is not None:\n            with contextlib.suppress(OSError):\n                rmtree_at(pfd, tmp, expect=ident)\n        raise",
        "        raise",
        (f"{PS}::test_a_hidden_directory_whose_lock_cannot_be_made_goes_again",),
        "a .lstmp- directory left in the destination after ENOSPC",
    ),
    # -- remove() and an interrupted upgrade() of the same directory -------------------------
    m(
        "remove-before-settling-an-upgrade",
        _REMOVE,
        "    _settle_upgrades(run, run.opened, strict=strict)",
        "    pass",
        (
            f"{U}::test_kill_9_at_every_step_then_recovery",
            f"{U}::test_removing_paths_with_last_after_a_kill_past_building_asks_again",
        ),
        "a later gc() rolls the journal forward and brings the removed package back",
    ),
    m(
        "uninstall-before-settling-an-upgrade",
        _REMOVE,
        "        _settle_upgrade_of_root(rfd, root_real, tops)",
        "        pass",
        (f"{U}::test_uninstall_by_record_after_a_kill_past_building_recovers_then_asks_again",),
    ),
    m(
        "uninstall-by-a-stale-record",
        _UPG,
        '    if strict and phase != "building":',
        "    if False:",
        (f"{U}::test_uninstall_by_record_after_a_kill_past_building_recovers_then_asks_again",),
        "a RECORD read before the upgrade describes the old version: half a package stays",
    ),
    m(
        "remove-absent-entry-not-settled",
        _REMOVE,
        "        if not r.done or r.st is None:  # absent now: a recovery may bring it back",
        "        if not r.done:  # absent now: a recovery may bring it back",
        (f"{U}::test_kill_9_at_every_step_then_recovery",),
        "killed between moving the old tree out and the new one in: the name is absent",
    ),
    m(
        "remove-waits-for-unrelated-upgrades",
        _UPG,
        "    if pending is None or not names & pending[1]:",
        "    if pending is None:",
        (f"{U}::test_remove_waits_for_no_running_upgrade_of_other_entries",),
    ),
    m(
        "tree-walk-copy-policy-ignored",
        _PLACE,
        "    if policy_after:\n        _redo_private(run, roots, rel, drel, placed, strategy, tally)",
        "",
        (f"{TW}::test_copy_policy_without_a_file_list",),
        "RECORD would stay a hardlink into the cache: the installer's rewrite would change the cache",
    ),
    m(
        "copy-policy-prefilter-on-the-relative-path",
        _PLACE,
        '    return os.fsencode(rel + "/" if rel else ""), tuple(map(os.fsencode, tails))',
        '    return b"", tuple(map(os.fsencode, tails))',
        (f"{TW}::test_copy_policy_without_a_file_list",),
        "the literal-tail test must see the whole path, as the policy does",
    ),
    m(
        "copy-policy-file-list-prefilter-on-the-relative-path",
        _C,
        '        if (keep != NULL && ends_in_tail(&t, "", 0, s, (size_t)n)) { /* the whole path */',
        '        if (keep != NULL && ends_in_tail(&t, "", 0, s + strip, (size_t)(n - strip))) {',
        (
            f"{TW}::test_file_lists_same_tree_and_report_as_the_other_paths",
            f"{FL}::test_file_blob_same_as_asking_the_policy_about_every_path",
        ),
        "RECORD listed below its dist-info would be hardlinked",
    ),
    m(
        "copy-policy-file-list-asked-with-the-relative-path",
        _C,
        "            PyObject *path = PyUnicode_DecodeFSDefaultAndSize(s, n);",
        "            PyObject *path = PyUnicode_DecodeFSDefaultAndSize(s + strip, n - strip);",
        (
            f"{FL}::test_file_blob_asks_the_policy_with_the_whole_path",
            f"{FL}::test_file_blob_same_as_asking_the_policy_about_every_path",
        ),
        "copy= patterns are matched against the path from the source root",
    ),
    m(
        "file-list-dotdot-accepted-in-c",
        _C,
        "        if (k == 2 && s[i] == '.' && s[i + 1] == '.') {",
        "        if (0) {",
        (
            f"{FL}::test_file_list_same_paths_and_errors_as_python",
            f"{FL}::test_file_list_same_as_python_on_random_lists",
            f"{B}::test_file_list_entries_outside_the_source_are_refused",
        ),
        "a RECORD entry with a .. component would be resolved by the kernel, outside the cache",
    ),
    m(
        "file-list-absolute-accepted-in-c",
        _C,
        "    if (n == 0 || s[0] == '/' || memchr(s, '\\0', (size_t)n) != NULL) {",
        "    if (n == 0 || memchr(s, '\\0', (size_t)n) != NULL) {",
        (
            f"{FL}::test_file_list_same_paths_and_errors_as_python",
            f"{B}::test_file_list_entries_outside_the_source_are_refused",
        ),
    ),
    m(
        "file-list-doubled-slash-not-cleaned-in-c",
        _C,
        "        if (*p == '.' || *p == '/')",
        "        if (*p == '.')",
        (
            f"{FL}::test_file_list_same_paths_and_errors_as_python",
            f"{FL}::test_file_list_same_as_python_on_random_lists",
        ),
        "a//b would be looked up as listed under that name, never found by the walk",
    ),
    m(
        "file-list-duplicates-kept-in-c",
        _C,
        "        if (prev != NULL && PyBytes_Size(prev) == PyBytes_Size(it) &&",
        "        if (0 && prev != NULL && PyBytes_Size(prev) == PyBytes_Size(it) &&",
        (
            f"{FL}::test_file_list_same_paths_and_errors_as_python",
            f"{FL}::test_file_list_same_as_python_on_random_lists",
        ),
        "place_tree refuses a list that is not sorted and unique",
    ),
    m(
        "file-list-dot-component-not-cleaned-in-c",
        _C,
        "        if (*p == '.' || *p == '/')",
        "        if (*p == '/')",
        (
            f"{FL}::test_file_list_same_paths_and_errors_as_python",
            f"{FL}::test_file_list_same_as_python_on_random_lists",
        ),
        "a/./b would be looked up as listed under that name, never found by the walk",
    ),
    m(
        "file-list-not-sorted-in-c",
        _C,
        "    if (PyList_Sort(all) != 0)",
        "    if (0)",
        (
            f"{FL}::test_file_list_same_paths_and_errors_as_python",
            f"{FL}::test_file_list_same_as_python_on_random_lists",
        ),
        "place_tree refuses a list that is not sorted and unique",
    ),
    m(
        "file-list-sloppy-entries-left-to-python",
        _C,
        "        if (!plain_path(s, len)) {\n            int bad = 0;",
        "        if (!plain_path(s, len)) {\n            Py_DECREF(enc);\n            Py_DECREF(str);\n            Py_INCREF(Py_None);\n            result = Py_None;\n            goto done;\n        }\n        {\n            int bad = 0;",
        (
            f"{FL}::test_file_list_does_the_common_case_itself",
            f"{FL}::test_file_list_same_paths_and_errors_as_python",
        ),
        "a sloppy RECORD (./a, a//b) would take the Python path per entry again",
    ),
    m(
        "file-list-refused-entry-ignored",
        _PLACE,
        "    if isinstance(got, str):  # the first refused entry\n        raise _bad_entry(got, src)",
        "    if isinstance(got, str):  # the first refused entry\n        return []",
        (f"{FL}::test_a_refused_entry_is_named_by_place",),
    ),
    m(
        "listed-tree-subdirectory-not-skipped",
        _PLACE,
        '                i = bisect.bisect_left(listed, p[:end] + b"0", i + 1, hi)  # "0" follows "/"',
        '                i = bisect.bisect_left(listed, p[:end] + b"/", i + 1, hi)  # "0" follows "/"',
        (f"{FL}::test_listed_tree_lists_as_the_per_directory_listings",),
        "a subdirectory listed once per file below it: made and walked again",
    ),
    # -- place(): symlinks ----------------------------------------------------------------
    m(
        "place-middle-component-followed",
        _SYS_LINUX,
        "flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS",
        "flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0, 0",
        (f"{GP}::test_symlink_swapped_for_a_middle_component_never_leads_outside",),
        "openat2 without RESOLVE_*: symlinks in middle components are followed",
    ),
    m(
        "place-middle-component-followed-without-openat2",
        _SYS_COMMON,
        "fl = (flags if last else os.O_RDONLY | os.O_DIRECTORY) | os.O_NOFOLLOW | os.O_CLOEXEC",
        "fl = (flags if last else os.O_RDONLY | os.O_DIRECTORY) | (os.O_NOFOLLOW if last else 0) | os.O_CLOEXEC",
        (f"{GP}::test_symlink_swapped_for_a_middle_component_never_leads_outside",),
        "the per-component path (no openat2) follows symlinks in middle components",
    ),
    m(
        "place-last-component-followed",
        _SYS_LINUX,
        "flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS",
        "flags | os.O_CLOEXEC, 0, 0",
        (f"{P}::test_swapped_in_symlink_never_leads_outside",),
    ),
    m(
        "place-python-source-followed",
        _PLACE,
        "_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC",
        "_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC",
        (f"{GP}::test_source_file_swapped_for_a_symlink_is_never_followed",),
    ),
    m(
        "c-source-followed",
        _C,
        "sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);",
        "sfd = openat(sdir, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC);",
        (
            f"{GS}::test_copy_never_opens_a_source_symlink",
            f"{GP}::test_source_file_swapped_for_a_symlink_is_never_followed",
        ),
    ),
    m(
        "c-fifo-opened-blocking",
        _C,
        "sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);",
        "sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);",
        (f"{S}::test_a_fifo_swapped_in_is_never_opened_for_reading",),
        "hangs in open(): a named timeout failure",
    ),
    m(
        "place-symlink-to-dir-walked",
        _PLACE,
        "            if e.is_dir(follow_symlinks=False):\n                out.subdirs.append(e.name)",
        "            if e.is_dir():\n                out.subdirs.append(e.name)",
        (f"{GP}::test_symlink_to_a_directory_stays_a_symlink",),
    ),
    m(
        "place-special-files-opened",
        _PLACE,
        "            elif e.is_file(follow_symlinks=False):\n                out.files.append(e.name)",
        "            elif not e.is_symlink():\n                out.files.append(e.name)",
        (f"{P}::test_special_files_are_skipped_never_opened",),
    ),
    m(
        "place-dst-inside-src-allowed",
        _PLACE,
        "if stat.S_ISDIR(src_st.st_mode) and src_ident in _ancestry(pfd):",
        "if False:",
        (
            f"{P}::test_dst_inside_src_and_src_equal_dst_are_refused",
            f"{PS}::test_destination_inside_a_bind_mount_of_the_source_is_refused",
        ),
    ),
    # -- place(): atomicity and rollback ------------------------------------------------
    m(
        "place-merge-new-name-written-in-place",
        _PLACE,
        "tmp = dname if direct else run.tmpname()",
        "tmp = dname if direct or not exists else run.tmpname()",
        (f"{GP}::test_merge_copy_never_shows_a_partial_file_under_its_final_name",),
    ),
    Mutation(
        "place-merge-overwrites-in-place",
        _PLACE,
        (
            (
                "_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC",
                "_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC",
            ),
            ("tmp = dname if direct else run.tmpname()", "tmp = dname"),
        ),
        (
            f"{GP}::test_failed_copy_over_an_existing_file_leaves_the_old_one_intact",
            f"{GP}::test_merge_copy_never_shows_a_partial_file_under_its_final_name",
        ),
    ),
    m(
        "place-fresh-tree-built-under-final-name",
        _PLACE,
        "            self.hidden_root = run.tmpname()",
        "            self.hidden_root = base",
        (f"{P}::test_fresh_destination_appears_complete_or_not_at_all",),
    ),
    m(
        "place-rollback-misses-top-level-of-empty-dir",
        _PLACE,
        "if old is not None and name not in old:",
        "if old and name not in old:",
        (f"{GP}::test_rollback_removes_files_created_at_the_top_of_an_existing_dir",),
    ),
    m(
        "place-rollback-keeps-created-files",
        _PLACE,
        "    for rel_dir, name, ident in run.created_files:",
        "    for rel_dir, name, ident in []:",
        (
            f"{GP}::test_rollback_removes_files_created_at_the_top_of_an_existing_dir",
            f"{P}::test_enospc_merging_into_existing_dir_keeps_what_was_there",
        ),
    ),
    m(
        "place-rollback-keeps-new-dirs-in-existing-tree",
        _PLACE,
        "    for rel, parent_drel, tmp, _name, ident in run.hidden_tops:",
        "    for rel, parent_drel, tmp, _name, ident in []:",
        (
            f"{P}::test_enospc_merging_into_existing_dir_keeps_what_was_there",
            f"{P}::test_swapped_in_symlink_never_leads_outside",
        ),
    ),
    m(
        "place-rollback-keeps-fresh-tree",
        _PLACE,
        "                rmtree_at(self.pfd, self.hidden_root, expect=self.hidden_ident)",
        "                pass",
        (
            f"{P}::test_enospc_is_a_clear_error_and_leaves_nothing",
            f"{GP}::test_emfile_stops_the_run_instead_of_falling_back",
        ),
    ),
    m(
        "place-read-only-dir-modes-not-restored",
        _PLACE,
        "            if mode & 0o700 != 0o700:",
        "            if False:",
        (f"{GP}::test_read_only_source_directories_keep_their_modes",),
    ),
    # -- place(): temporaries of others ---------------------------------------------------
    m(
        "place-foreign-temporaries-always-stale",
        _REMOVAL,
        "            verdict = judge(dir_fd, n, st)",
        "            verdict = 'dead'",
        (f"{GP}::test_fresh_temporaries_of_other_writers_survive",),
    ),
    m(
        "owner-lockless-age-ignored",
        _OWNER,
        '    return "dead" if _old(lst, GRACE_NO_LOCK) and _old(st, GRACE_NO_LOCK) else "live"',
        '    return "dead"',
        (
            f"{TO}::test_hold_leaves_its_lock_file_where_there_are_no_locks[no-getlk]",
            f"{TO}::test_hold_leaves_its_lock_file_where_there_are_no_locks[getlk-says-free]",
        ),
    ),
    m(
        "owner-held-lock-ignored",
        _OWNER,
        '    if locked:\n        return "live"\n    if locked is False:',
        '    if False:\n        return "live"\n    if locked is not None:',
        (
            f"{GP}::test_fresh_temporaries_of_other_writers_survive",
            f"{TO}::test_liveness_is_the_lock_not_the_pid",
        ),
    ),
    m(
        "owner-released-lock-taken-for-dead",
        _OWNER,
        "        if locked is False and os.fstat(lfd).st_nlink == 0:",
        "        if False:",
        (f"{TO}::test_a_maker_releasing_its_lock_while_judged_is_not_dead",),
        "a judge between a maker's release() and its rename empties the finished directory",
    ),
    m(
        "owner-other-users-temporaries-judged",
        _OWNER,
        '    if not may_act(st):\n        return "foreign"',
        '    if False:\n        return "foreign"',
        (f"{TO}::test_another_users_temporary_is_foreign",),
    ),
    m(
        "owner-same-id-after-fork",
        _OWNER,
        "    os.register_at_fork(after_in_child=_redraw)",
        "    pass",
        (f"{TO}::test_forked_child_gets_a_new_owner",),
    ),
    m(
        "place-one-temporary-sequence-per-run",
        _PLACE,
        "        return tmp_name(next(_seq))",
        "        return tmp_name(1)",
        (f"{PS}::test_threads_placing_files_into_one_directory",),
    ),
    m(
        "place-rollback-by-name",
        _PLACE,
        "            if (st.st_dev, st.st_ino) == ident:\n                os.unlink(name, dir_fd=dfd)",
        "            if True:\n                os.unlink(name, dir_fd=dfd)",
        (f"{PS}::test_rollback_keeps_a_file_someone_else_placed_meanwhile",),
    ),
    m(
        "place-dotdot-normalised-lexically",
        _PLACE,
        '    stripped = dst.rstrip("/")',
        "    stripped = os.path.abspath(dst)",
        (f"{PS}::test_dotdot_after_a_symlink_lands_where_the_kernel_says",),
    ),
    m(
        "place-dot-and-dotdot-accepted",
        _PLACE,
        '    if base in ("", ".", ".."):',
        '    if base in ("",):',
        (f"{PS}::test_dot_dotdot_empty_and_root_are_refused",),
    ),
    m(
        "place-setuid-kept-for-another-owner",
        _PLACE,
        "                if dst.st_uid != st.st_uid:",
        "                if False:",
        (f"{PS}::test_root_copying_a_users_setuid_file_clears_setuid",),
    ),
    m(
        "place-hard-links-in-tree-copied-apart",
        _PLACE,
        "    key = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None",
        "    key = None",
        (f"{PS}::test_hard_links_inside_the_tree_stay_links",),
    ),
    m(
        "place-private-files-hardlinked",
        _PLACE,
        "        if run.private is not None:  # never hardlinked",
        "        if False:  # never hardlinked",
        (f"{B}::test_copy_policy_never_hardlinks_those_files",),
    ),
    m(
        "place-file-list-dotdot-accepted",
        _PLACE,
        '        if not parts or ".." in parts or entry.startswith("/")',
        '        if not parts or entry.startswith("/")',
        (f"{B}::test_file_list_entries_outside_the_source_are_refused",),
    ),
    m(
        "tree-unbounded-fds",
        _TREE,
        "                if opened > max_fds:",
        "                if False:",
        (f"{TO}::test_deep_tree_under_a_small_fd_limit",),
    ),
    m(
        "tree-enters-other-mounts",
        _TREE,
        "        if _other_mount(st, root):\n            fr.blocked = True",
        "        if False:\n            fr.blocked = True",
        (f"{TO}::test_a_mount_inside_is_never_entered",),
    ),
    m(
        "tree-expect-ignored",
        _REMOVAL,
        "    if expect is not None and _ident(st) != expect:",
        "    if False:",
        (f"{TO}::test_expect_protects_a_replaced_entry",),
    ),
    m(
        "place-stale-temporaries-kept",
        _PLACE,
        "    if any(n.startswith(TMP_PREFIX) for n in names):",
        "    if False:",
        (
            f"{GP}::test_temporary_of_a_dead_process_of_this_host_is_removed",
            f"{P}::test_kill_9_mid_run_then_place_again",
        ),
    ),
    # -- place(): errno decisions ----------------------------------------------------------
    m(
        "errors-exdev-not-a-link-capability",
        _ERRORS,
        "        errno.EXDEV,  # different mounts (even of one filesystem), btrfs subvolumes\n",
        "",
        (f"{GP}::test_exdev_from_link_for_one_file_falls_back",),
    ),
    m(
        "errors-emfile-falls-back-per-file",
        _ERRORS,
        "        errno.EMLINK,  # too many links",
        "        errno.EMFILE,\n        errno.EMLINK,  # too many links",
        (f"{GP}::test_emfile_stops_the_run_instead_of_falling_back",),
    ),
    m(
        "errors-emfile-retried-as-transient",
        _ERRORS,
        "        errno.EINTR,  # interrupted by a signal",
        "        errno.EINTR,  # interrupted by a signal\n        errno.EMFILE,",
        (f"{GP}::test_emfile_stops_the_run_instead_of_falling_back",),
    ),
    m(
        "place-transient-retries-unbounded",
        _CHAIN,
        "            if tries < TRANSIENT_TRIES:",
        "            if True:",
        (
            f"{GP}::test_transient_errors_are_retried_a_bounded_number_of_times",
            f"{CH}::test_transient_errors_are_retried_a_bounded_number_of_times",
        ),
        "loops for ever: a named timeout failure",
    ),
    # -- place(): the strategy chain of a run (_chain.Chain) ------------------------------
    m(
        "chain-pair-error-not-downgraded",
        _CHAIN,
        "            if not per_file:\n                self.downgrade(strategy, err, path)",
        "            if False:\n                self.downgrade(strategy, err, path)",
        (
            f"{CH}::test_pair_error_drops_the_strategy_for_the_run",
            f"{P}::test_clone_capability_error_downgrades_the_pair_and_warns_once",
        ),
    ),
    m(
        "chain-last-strategy-dropped",
        _CHAIN,
        "if strategy in self.strategies and len(self.strategies) > 1:",
        "if strategy in self.strategies:",
        (f"{CH}::test_downgrade_never_removes_the_last_strategy",),
    ),
    m(
        "chain-per-file-error-downgrades",
        _CHAIN,
        '            per_file = action == "next_for_file"',
        "            per_file = False",
        (
            f"{CH}::test_per_file_errors_do_not_downgrade",
            f"{P}::test_emlink_at_ext4_limit_copies_that_file_only",
        ),
    ),
    m(
        "chain-real-error-falls-back",
        _CHAIN,
        '        if action != "fail" and nxt is not None:',
        "        if nxt is not None:",
        (
            f"{CH}::test_real_errors_stop_the_run_even_with_a_strategy_left",
            f"{GP}::test_emfile_stops_the_run_instead_of_falling_back",
        ),
    ),
    m(
        "chain-strict-ignored",
        _CHAIN,
        '        if action == "next_for_pair" and self.strict:',
        "        if False:",
        (f"{CH}::test_strict_makes_a_pair_error_at_the_chains_end_fatal",),
    ),
    m(
        "chain-any-error-unavailable-when-strict",
        _CHAIN,
        '        if action == "next_for_pair" and self.strict:',
        "        if self.strict:",
        (f"{CH}::test_strict_makes_a_pair_error_at_the_chains_end_fatal",),
    ),
    m(
        "chain-warns-every-time-in-the-report",
        _CHAIN,
        "            if (strategy, err.errno) in self._warned:\n                return",
        "            if False:\n                return",
        (
            f"{CH}::test_a_downgrade_warns_once_per_run_and_once_per_process",
            f"{P}::test_concurrent_capability_errors_give_one_warning",
        ),
    ),
    m(
        "chain-logs-every-run",
        _CHAIN,
        "            if key in _warned:\n                return",
        "            if False:\n                return",
        (f"{CH}::test_a_downgrade_warns_once_per_run_and_once_per_process",),
    ),
    m(
        "chain-cfr-turned-back-on",
        _CHAIN,
        "        if not works:\n            self.cfr = False",
        "        self.cfr = works",
        (f"{CH}::test_copy_file_range_learned_off_stays_off",),
    ),
    m(
        "place-cfr-not-learned",
        _PLACE,
        "                run.chain.learn_cfr(cfr)",
        "                pass",
        (f"{P}::test_copy_stops_asking_copy_file_range_after_exdev",),
    ),
    m(
        "chain-private-files-hardlinked",
        _CHAIN,
        "        if private:\n",
        "        if False:\n",
        (f"{CH}::test_private_files_never_hardlink",),
    ),
    m(
        "chain-private-file-left-without-strategy",
        _CHAIN,
        'return tuple(s for s in chain if s != "hardlink") or ("copy",)',
        'return tuple(s for s in chain if s != "hardlink")',
        (f"{CH}::test_private_files_never_hardlink",),
    ),
    m(
        "chain-xattrs-unsupported-not-learned",
        _CHAIN,
        "                    self.xattrs = False\n",
        "                    pass\n",
        (
            f"{CH}::test_a_destination_without_xattrs_is_asked_once",
            f"{CH}::test_xattrs_unsupported_on_the_destination_are_tried_once",
        ),
    ),
    m(
        "place-xattrs-asked-after-learned-unsupported",
        _PLACE,
        "    if not chain.xattrs:\n        return\n",
        "",
        (f"{CH}::test_xattrs_unsupported_on_the_destination_are_tried_once",),
    ),
    m(
        "place-xattr-stop-ignored",
        _PLACE,
        '            if verdict == "stop":\n                return',
        '            if verdict == "stop":\n                continue',
        (f"{CH}::test_xattrs_unsupported_on_the_destination_are_tried_once",),
    ),
    m(
        "chain-xattr-denied-warned-per-file",
        _CHAIN,
        "                if name not in self.xattrs_denied:",
        "                if True:",
        (f"{CH}::test_a_refused_xattr_name_is_skipped_and_warned_once",),
    ),
    m(
        "chain-xattr-denied-stops-all",
        _CHAIN,
        '                    )\n            return "next"',
        '                    )\n            return "stop"',
        (
            f"{CH}::test_a_refused_xattr_name_is_skipped_and_warned_once",
            f"{CH}::test_a_refused_xattr_is_skipped_per_file_and_the_others_kept",
        ),
    ),
    m(
        "plan-unavailable-errno-ignored",
        _PLAN,
        "            code = impossible[0].errno",
        "            code = errno.EOPNOTSUPP",
        (
            f"{P}::test_forced_hardlink_across_bind_mount_fails_before_writing",
            "tests/test_cli.py::test_strict_makes_the_preference_an_error",
        ),
    ),
    # -- the C loop --------------------------------------------------------------------
    m(
        "c-close-failure-leaves-final-name",
        _C,
        "    if (close(dfd) != 0) { /* NFS reports write-back errors here */\n"
        "        unlinkat(ddir, name, 0);\n",
        "    if (close(dfd) != 0) { /* NFS reports write-back errors here */\n",
        (f"{GS}::test_failed_close_leaves_nothing_under_the_final_name",),
    ),
    m(
        "c-failed-write-leaves-final-name",
        _C,
        "fail_dst:\n    close(dfd);\n    unlinkat(ddir, name, 0);",
        "fail_dst:\n    close(dfd);",
        (
            f"{GS}::test_failed_close_leaves_nothing_under_the_final_name",
            f"{S}::test_reflink_refused_stops_at_the_first_file_leaving_nothing",
        ),
    ),
    m(
        "c-existing-name-truncated",
        _C,
        "dfd = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);",
        "dfd = openat(ddir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);",
        (f"{S}::test_stops_at_an_existing_name_and_leaves_it_alone",),
    ),
    # -- the platform package (_sys) --------------------------------------------------------
    m(
        "sys-ctypes-imported-outside",
        _PLACE,
        "import threading\n",
        "import ctypes  # noqa: F401\nimport threading\n",
        (f"{SY}::test_no_module_outside_sys_imports_ctypes_or_tests_the_platform",),
        "ctypes outside _sys: bindings without one home",
    ),
    m(
        "sys-platform-tested-outside",
        "src/linkstrategy/_cli.py",
        "    from ._cloop import speedups_status as status\n",
        "    if sys.platform == 'darwin':\n        return 'no'\n    from ._cloop import speedups_status as status\n",
        (f"{SY}::test_no_module_outside_sys_imports_ctypes_or_tests_the_platform",),
        "a caller branching on the platform",
    ),
    m(
        "sys-argtypes-not-declared",
        _SYS_LINUX,
        "    fn.argtypes = [getattr(_ct, a) for a in argtypes]\n",
        "",
        (f"{SY}::test_every_linux_binding_declares_argtypes_and_restype",),
        "a binding without argtypes: Python ints passed as C int whatever the prototype",
    ),
    m(
        "sys-restype-not-declared",
        _SYS_LINUX,
        "    fn.restype = getattr(_ct, restype)\n",
        "",
        (f"{SY}::test_every_linux_binding_declares_argtypes_and_restype",),
        "syscall() returning long read as int",
    ),
    m(
        "sys-library-touched-outside-bind",
        _SYS_LINUX,
        '        fn = _bind("fstatfs", "c_int", "c_int", "c_char_p")\n',
        '        _bind("fstatfs", "c_int", "c_int", "c_char_p")\n        fn = _libc.fstatfs\n',
        (f"{SY}::test_the_library_handle_is_touched_by_bind_only",),
        "a function taken from the library handle without _bind",
    ),
    m(
        "sys-ctypes-at-import",
        _SYS_LINUX,
        "import fcntl\n",
        "import ctypes  # noqa: F401\nimport fcntl\n",
        (f"{SY}::test_importing_the_library_loads_no_ctypes",),
        "import linkstrategy._place loads ctypes",
    ),
    m(
        "sys-darwin-signature-differs",
        _SYS_DARWIN,
        "def clone_file(src_fd: int, dir_fd: int, name: str, mode: int) -> int:",
        "def clone_file(src_fd: int, dir_fd: int, name: str) -> int:\n    mode = 0o600",
        (f"{SY}::test_linux_and_darwin_export_the_same_functions",),
        "the two platform modules disagree: callers would need a platform test",
    ),
    m(
        "sys-speedups-env-ignored",
        _CLOOP,
        '    if os.environ.get("LINKSTRATEGY_NO_SPEEDUPS"):',
        "    if False:",
        (f"{SY}::test_speedups_status_says_why",),
    ),
    m(
        "sys-fs-magic-wrong-field",
        _SYS_LINUX,
        "buf.raw[: _ct.sizeof(_ct.c_long)]",
        "buf.raw[_ct.sizeof(_ct.c_long) : 2 * _ct.sizeof(_ct.c_long)]",
        (f"{SY}::test_fs_magic_is_the_kernels_number",),
        "f_bsize read as f_type",
    ),
    m(
        "sys-exchange-is-a-rename",
        _SYS_LINUX,
        "_RENAME_EXCHANGE = 2\n",
        "_RENAME_EXCHANGE = 0\n",
        (f"{SY}::test_exchange_swaps_two_names",),
        "renameat2 without RENAME_EXCHANGE replaces b and loses a",
    ),
    m(
        "errors-xattr-denied-taken-for-fatal",
        _ERRORS,
        '    if code in XATTR_DENIED:\n        return "denied"\n',
        "",
        (f"{CH}::test_a_refused_xattr_name_is_skipped_and_warned_once",),
        "security.* refused to a user would fail the whole place()",
    ),
    m(
        "sys-exchange-einval-raises",
        _ERRORS,
        "frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})",
        "frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})",
        (f"{SY}::test_exchange_where_the_filesystem_cannot_is_false",),
        "NFS/FUSE without RENAME_EXCHANGE: replace() fails instead of renaming twice",
    ),
    m(
        "sys-exchange-error-names-one-path",
        _SYS_LINUX,
        "    raise OSError(code, os.strerror(code), a, None, b)\n",
        "    raise OSError(code, os.strerror(code), a)\n",
        (f"{SY}::test_exchange_of_a_missing_name_names_both",),
        "errors name both paths",
    ),
    m(
        "sys-clone-failure-leaves-the-file",
        _SYS_LINUX,
        "        with contextlib.suppress(OSError):\n            os.unlink(name, dir_fd=dir_fd)\n        raise",
        "        raise",
        (f"{SY}::test_clone_file_where_it_cannot_leaves_nothing",),
        "a failed clone leaves an empty temporary behind",
    ),
    m(
        "sys-clone-not-exclusive",
        _SYS_LINUX,
        "_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC",
        "_CREATE = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC",
        (f"{SY}::test_clone_file_never_touches_an_existing_name",),
        "a clone over an existing file (or through a symlink) overwrites it",
    ),
    m(
        "sys-statx-mount-root-misread",
        _SYS_LINUX,
        "bool(attrs & _STATX_ATTR_MOUNT_ROOT) if attrs_mask & _STATX_ATTR_MOUNT_ROOT else None",
        "bool(attrs_mask & _STATX_ATTR_MOUNT_ROOT) if attrs_mask & _STATX_ATTR_MOUNT_ROOT else None",
        (f"{SY}::test_statx_mount_id_and_mount_root",),
        "every directory taken for a mount root",
    ),
    m(
        "sys-statx-fallback-empty-name",
        _SYS_COMMON,
        "    if not name:\n        st = os.fstat(dir_fd)\n    else:\n",
        "    if False:\n        pass\n    else:\n",
        (f"{SY}::test_statx_without_libc_statx_falls_back",),
        "statx(fd, '') without libc statx: ENOENT instead of the directory itself",
    ),
    m(
        "sys-per-component-dotdot",
        _SYS_COMMON,
        '    if ".." in parts:\n',
        "    if False:\n",
        (f"{SY}::test_open_beneath_refuses_symlinks_and_dotdot",),
        "without openat2, '..' leads out of the directory",
    ),
    m(
        "sys-copy-stops-at-the-size-hint",
        _SYS_LINUX,
        "    return done + read_write_copy(src_fd, dst_fd), cfr_ok\n",
        "    return done, cfr_ok\n",
        (f"{SY}::test_copy_fd_reads_past_a_lying_size",),
        "/proc files (st_size 0) copied empty",
    ),
    m(
        "sys-fd-path-of-a-removed-directory",
        _SYS_LINUX,
        '    if p.startswith("/") and not p.endswith(" (deleted)"):',
        '    if p.startswith("/"):',
        (f"{SY}::test_fd_path_is_the_kernels_path",),
        "a removed directory reported as '<path> (deleted)'",
    ),
    # -- remove(): symlinks -------------------------------------------------------------
    m(
        "remove-subdir-opened-following-symlinks",
        _TREE,
        'O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)',
        'O_DIR = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)',
        (
            f"{GR}::test_symlink_to_the_moved_original_directory_is_not_followed",
            f"{R}::test_symlink_swapped_in_mid_walk_is_removed_not_followed",
        ),
    ),
    # -- remove(): refusals ---------------------------------------------------------------
    m(
        "remove-home-not-refused-by-identity",
        _REMOVAL,
        "    what = protected.get((st.dev, st.ino)) if stat.S_ISDIR(st.mode) else None",
        "    what = None",
        (
            f"{GR}::test_home_is_refused_through_a_symlinked_parent",
            f"{RS}::test_home_is_refused_by_identity_through_a_symlink",
        ),
    ),
    m(
        "remove-home-ancestors-allowed",
        _REMOVAL,
        '            p, what = up, "an ancestor of the home directory"',
        "            break",
        (f"{R}::test_refuses_home_and_its_ancestors_and_touches_nothing",),
    ),
    m(
        "remove-dot-dotdot-allowed",
        _REMOVAL,
        '    if name in (".", ".."):\n        raise RemoveError(errno.EINVAL, "refusing to remove \'.\' or \'..\'", s)',
        "    pass",
        (
            f"{RS}::test_dot_dotdot_and_empty_are_refused_and_nothing_changes",
            f"{RS}::test_cli_refuses_dot_dotdot_and_empty",
        ),
    ),
    m(
        "remove-parent-normalised-lexically",
        _REMOVAL,
        "    parent, name = split(p)\n    return Root(",
        "    parent, name = split(os.path.abspath(os.fspath(p)))\n    return Root(",
        (f"{RS}::test_dotdot_after_a_symlink_means_what_the_kernel_means",),
    ),
    m(
        "replace-parent-normalised-lexically",
        _TXN,
        "    parent, name = _split(p)\n    if create:",
        "    parent, name = _split(os.path.abspath(os.fspath(p)))\n    if create:",
        (f"{RS}::test_replace_through_symlink_and_dotdot_lands_where_the_kernel_means",),
    ),
    m(
        "remove-mount-point-root-allowed",
        _REMOVAL,
        '        raise RemoveError(errno.EBUSY, "refusing to remove a mount point", root.path)',
        "        pass",
        (f"{R}::test_refuses_a_mount_point",),
    ),
    # -- remove(): mounts ------------------------------------------------------------------
    m(
        "remove-mounts-crossed",
        _TREE,
        "        st.dev != root.dev\n"
        "        or (st.mnt_id is not None and root.mnt_id is not None and st.mnt_id != root.mnt_id)\n"
        "        or bool(st.mount_root)\n",
        "        False\n",
        (
            f"{R}::test_tmpfs_inside_tree_is_left_untouched_and_reported",
            f"{R}::test_bind_mount_of_same_filesystem_inside_tree_is_not_crossed",
            f"{R}::test_parallel_walk_leaves_a_mount_alone",
        ),
    ),
    m(
        "remove-busy-root-with-mount-deferred",
        _REMOVAL,
        "if r.done or o.error or o.mount or o.protected or run.defer is None:",
        "if r.done or o.error or o.protected or run.defer is None:",
        (f"{GR}::test_busy_root_holding_a_mount_is_not_deferred",),
    ),
    m(
        "remove-last-entries-go-despite-mount",
        _REMOVAL,
        "    if run.errors or run.mounts:\n        return run.report()",
        "    if run.errors:\n        return run.report()",
        (f"{GR}::test_last_entries_stay_when_a_mount_is_left_inside",),
    ),
    m(
        "remove-last-entries-go-despite-errors",
        _REMOVAL,
        "    if run.errors or run.mounts:\n        return run.report()",
        "    if run.mounts:\n        return run.report()",
        (f"{R}::test_non_retryable_error_is_reported_and_last_entries_are_kept",),
    ),
    m(
        "remove-last-entries-not-protected",
        _TREE,
        "                if node is not None and node.leaf:",
        "                if False:",
        (f"{R}::test_last_entries_go_after_everything_else_in_order",),
    ),
    m(
        "gc-crosses-mounts",
        _GC,
        "                not stat.S_ISDIR(st.mode)\n"
        "                or st.dev != top.dev\n"
        "                or st.mount_root\n"
        "                or (st.mnt_id is not None and st.mnt_id != top.mnt_id)\n",
        "                not stat.S_ISDIR(st.mode)\n",
        (f"{GR}::test_gc_does_not_cross_a_bind_mount",),
    ),
    # -- trash and gc (issue #9): fds, owners, scope -----------------------------------------
    m(
        "trash-shared-by-all-users",
        _TRASH,
        "    if parent.st_uid == euid and not parent.st_mode & stat.S_ISVTX:",
        "    if True:",
        (
            f"{RS}::test_shared_sticky_directory_each_user_defers_to_a_trash_of_their_own",
            f"{RS}::test_trash_name_is_per_user_where_the_directory_is_shared",
        ),
    ),
    m(
        "trash-open-follows",
        _TRASH,
        "    fd = os.open(name, _O_DIR, dir_fd=parent_fd)\n    try:\n        st = os.fstat(fd)\n        want",
        "    fd = os.open(name, os.O_RDONLY, dir_fd=parent_fd)\n    try:\n        st = os.fstat(fd)\n        want",
        (f"{RS}::test_open_trash_never_follows_a_symlink",),
    ),
    m(
        "trash-remembered-not-rechecked",
        _TRASH,
        "        if (tst.st_dev, tst.st_ino) != k.trash:",
        "        if False:",
        (f"{RS}::test_a_remembered_trash_swapped_for_a_symlink_is_not_followed",),
    ),
    m(
        "gc-empties-another-users-trash",
        _GC,
        "        if not may_act(st):\n            self.leave(",
        "        if False:\n            self.leave(",
        (f"{RS}::test_gc_as_root_leaves_another_users_trash_alone",),
    ),
    m(
        "gc-recovers-another-users-journal",
        _TXN,
        "    if not may_act(st):",
        "    if False:",
        (f"{RS}::test_foreign_journal_in_a_sticky_directory_is_left_alone",),
    ),
    m(
        "gc-journal-for-another-name",
        _TXN,
        "        or (journal_name(name) != jname)",
        "        or False",
        (f"{RS}::test_journal_whose_state_names_another_destination_is_left_alone",),
    ),
    m(
        "gc-always-recursive",
        _GC,
        "                    rest = g.directory(bfd, base)\n                    if recursive:",
        "                    rest = g.directory(bfd, base)\n                    if True:",
        (
            f"{RS}::test_gc_looks_at_the_path_its_entries_and_its_parent_unless_recursive",
            f"{RS}::test_cli_gc_recursive",
        ),
    ),
    m(
        "gc-dead-temporaries-kept",
        _GC,
        '        if verdict != "dead":\n            return',
        "        if True:\n            return",
        (
            f"{RS}::test_gc_removes_dead_temporaries_and_leaves_live_ones",
            f"{RS}::test_gc_parent_removes_what_a_place_killed_with_sigkill_left",
        ),
    ),
    m(
        "gc-busy-trash-not-retried",
        _REMOVAL,
        '            if action == "busy" and backoff.wait():',
        "            if False:",
        (
            f"{RS}::test_gc_retries_a_busy_trash_directory_within_its_budget",
            f"{RS}::test_gc_retries_a_busy_trash_directory_on_a_real_fuse_mount",
        ),
    ),
    m(
        "owner-lock-file-of-anyone",
        _OWNER,
        '        if not stat.S_ISREG(lst.st_mode) or lst.st_uid != st.st_uid:\n            return "live"',
        '        if False:\n            return "live"',
        (
            f"{TO}::test_a_directory_with_a_temporarys_name_and_no_lock_file_is_never_dead",
            f"{TO}::test_a_lock_file_of_another_user_proves_nothing",
        ),
    ),
    m(
        "owner-nolock-mark-ignored",
        _OWNER,
        "        if locked is False and _says_no_lock(lfd):",
        "        if False:",
        (f"{TO}::test_hold_leaves_its_lock_file_where_there_are_no_locks[getlk-says-free]",),
        "an unlocked lock file (no locks here) looks free: a live maker's directory is dead",
    ),
    m(
        "owner-hold-leaves-no-lock-file-without-locks",
        _OWNER,
        "        os.rename(tmp, LOCK_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)\n    except BaseException:",
        "        os.unlink(tmp, dir_fd=dir_fd)\n    except BaseException:",
        (f"{TO}::test_hold_leaves_its_lock_file_where_there_are_no_locks[no-getlk]",),
    ),
    m(
        "owner-dir-without-lock-file-dead-by-age",
        _OWNER,
        '        return "live" if verdict is None else verdict',
        '        return ("dead" if _old(st, GRACE_NO_LOCK) else "live") if verdict is None else verdict',
        (f"{TO}::test_a_directory_with_a_temporarys_name_and_no_lock_file_is_never_dead",),
        "races.md 1: an hour after a rename to a temporary's name, the directory is deleted",
    ),
    # -- remove(): limits (issue #9.6) ------------------------------------------------------
    m(
        "remove-serial-walk-fds-unbounded",
        _TREE,
        "_MAX_FDS = 32\n",
        "_MAX_FDS = 10**6\n",
        (f"{RS}::test_2000_deep_tree_under_ulimit_n_1024",),
    ),
    m(
        "remove-parallel-walk-depth-unbounded",
        _TREE,
        "_PARALLEL_DEPTH = 8\n",
        "_PARALLEL_DEPTH = 10**6\n",
        (f"{RS}::test_2000_deep_tree_under_ulimit_n_1024",),
    ),
    m(
        "remove-no-threads-is-fatal",
        _POOL,
        "                    self.cannot_start = time.monotonic()\n",
        "                    self.cannot_start = time.monotonic()\n"
        "                if not self.threads:\n"
        "                    raise\n",
        (f"{RS}::test_process_limit_remove_goes_on_with_the_threads_it_has",),
    ),
    m(
        "remove-emfile-taken-for-busy",
        _TREE,
        '                if action == "swapped":\n                    # Became a symlink',
        '                if action == "swapped" or e.errno in (errno.EMFILE, errno.ENFILE):\n'
        "                    # Became a symlink",
        (f"{R}::test_out_of_fds_is_an_error_with_its_name_not_busy",),
    ),
    # -- replace() (issue #9.5) --------------------------------------------------------------
    m(
        "replace-read-only-top-not-made-writable",
        _TXN,
        "    if st is None or not stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IWUSR:\n"
        "        return None",
        "    if True:\n        return None",
        (f"{RS}::test_replace_of_read_only_trees_as_their_owner",),
    ),
    m(
        "replace-places-through-the-journal-path",
        _TXN,
        'via = f"/proc/self/fd/{txn.jfd}" if os.path.isdir("/proc/self/fd") else txn.path',
        "via = txn.path",
        (f"{RS}::test_replace_places_through_the_journal_fd_not_a_path_swapped_meanwhile",),
    ),
    # -- remove(): budgets and permissions ---------------------------------------------
    m(
        "remove-budget-ignored",
        _TREE,
        "self.deadline = self.start + max(0.0, budget)",
        "self.deadline = self.start + 3600.0",
        (
            f"{GR}::test_busy_forever_ends_within_the_budget",
            f"{R}::test_busy_past_budget_is_deferred_to_trash_and_gc_empties_it",
        ),
        "retries for an hour: a named timeout failure",
    ),
    m(
        "remove-chmods-the-parent-of-a-root",
        _TREE,
        "        fixed = not fix_perms  # never chmod the directory holding a root: not ours",
        "        fixed = False",
        (
            f"{GR}::test_the_directory_holding_a_root_is_never_chmodded",
            f"{R}::test_read_only_directories_are_made_writable",
        ),
    ),
    # -- replace(): the journal ---------------------------------------------------------
    m(
        "txn-swapping-without-new-tree-drops-old",
        _TXN,
        "        if where is None:\n            self.rollback()\n            return",
        "        if where is None:\n            self.finish()\n            return",
        (f"{GT}::test_swapping_journal_whose_new_tree_is_missing_brings_the_old_tree_back",),
    ),
    m(
        "txn-state-not-fsynced",
        _TXN,
        "        os.write(fd, data)\n        os.fsync(fd)",
        "        os.write(fd, data)",
        (f"{GT}::test_journal_state_is_fsynced_renamed_then_its_directory_fsynced",),
    ),
    m(
        "txn-dir-fsynced-before-rename",
        _TXN,
        '    os.rename("state.tmp", "state", src_dir_fd=jfd, dst_dir_fd=jfd)\n'
        "    with contextlib.suppress(OSError):\n"
        "        os.fsync(jfd)",
        "    with contextlib.suppress(OSError):\n"
        "        os.fsync(jfd)\n"
        '    os.rename("state.tmp", "state", src_dir_fd=jfd, dst_dir_fd=jfd)',
        (f"{GT}::test_journal_state_is_fsynced_renamed_then_its_directory_fsynced",),
    ),
    m(
        "txn-swapping-rolled-back",
        _TXN,
        '        if phase == "swapping":\n            txn.roll_forward()',
        '        if phase == "swapping":\n            txn.rollback()',
        (f"{T}::test_kill_9_during_replace_then_recovery",),
    ),
    m(
        "txn-no-rollback-on-failure",
        _TXN,
        "            txn.rollback()  # the old tree is found by inode wherever the swap left it",
        "            pass",
        (
            f"{T}::test_real_enospc_rolls_back_and_old_tree_is_intact_byte_for_byte",
            f"{T}::test_failure_during_swap_rolls_back",
        ),
    ),
    m(
        "txn-lock-not-taken",
        _TXN,
        "        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n",
        "        pass\n",
        (
            f"{T}::test_live_transaction_is_not_recovered_under_its_feet",
            f"{U}::test_second_upgrade_of_a_parent_is_busy_while_one_runs",
        ),
    ),
    m(
        "txn-rename-budget-ignored",
        _TXN,
        "    backoff = Backoff(deadline=time.monotonic() + _RENAME_BUDGET)\n    while True:\n        try:\n            os.rename(",
        "    backoff = Backoff()  # no deadline\n    while True:\n        try:\n            os.rename(",
        (f"{GT}::test_rename_busy_forever_is_an_error_within_the_budget",),
        "retries for ever: a named timeout failure",
    ),
    m(
        "txn-exchange-budget-ignored",
        _TXN,
        "    backoff = Backoff(deadline=time.monotonic() + _RENAME_BUDGET)\n    while True:\n        try:\n            return exchange(",
        "    backoff = Backoff()  # no deadline\n    while True:\n        try:\n            return exchange(",
        (f"{GT}::test_rename_busy_forever_is_an_error_within_the_budget",),
        "retries for ever: a named timeout failure",
    ),
    # -- remove(files=, root=): uninstall by RECORD ---------------------------------------
    m(
        "uninstall-dotdot-inside-an-entry",
        _REMOVE,
        '    if not rest or ".." in rest or entry.startswith("/"):',
        '    if not rest or entry.startswith("/"):',
        (f"{UN}::test_entries_that_leave_the_record_shape_are_refused",),
    ),
    m(
        "uninstall-directory-entry-removed-as-a-tree",
        _REMOVE,
        "            if r.st is not None and stat.S_ISDIR(r.st.mode):\n                raise InvalidArgument(",
        "            if False:\n                raise InvalidArgument(",
        (f"{UN}::test_a_directory_in_the_list_is_refused_before_anything_goes",),
    ),
    m(
        "uninstall-metadata-with-the-files",
        _REMOVE,
        '        skip = {"/".join(p) for p in last_parts}',
        "        skip: set[str] = set()",
        (f"{UN}::test_metadata_stays_when_a_listed_file_cannot_go",),
    ),
    m(
        "uninstall-check-ignored",
        _REMOVE,
        "    if check and not report.ok:",
        "    if False:",
        (f"{UN}::test_metadata_stays_when_a_listed_file_cannot_go",),
    ),
    m(
        "tree-follows-a-swapped-symlink",
        _TREE,
        'O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)',
        'O_DIR = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)',
        (f"{TO}::test_a_directory_swapped_for_a_symlink_to_itself_after_its_stat_is_not_followed",),
    ),
    m(
        "pool-error-does-not-stop-the-run",
        "src/linkstrategy/_pool.py",
        "                if self.error is None:\n                    self.error = e\n            self.stop.set()",
        "                if self.error is None:\n                    self.error = e",
        (f"{PS}::test_a_failing_run_stops_its_other_jobs",),
    ),
    # -- one engine (issue #10): errno decisions, the job pool, the backoff, the hook ---------
    m(
        "remove-action-emfile-retried",
        _ERRORS,
        '    if code in REMOVE_RETRY:\n        return "retry"',
        '    if code in REMOVE_RETRY or code in (errno.EMFILE, errno.ENFILE):\n        return "retry"',
        (
            f"{R}::test_remove_action_table",
            f"{R}::test_out_of_fds_is_an_error_with_its_name_not_busy",
        ),
        "out of fds taken for busy: the budget is spent, then a silent deferral",
    ),
    # -- remove(): the C pass of a local removal (issue #11) ------------------------------
    Mutation(
        "clear-tree-follows-a-swapped-symlink",
        _C,
        (
            (
                "    int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);",
                "    int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);",
            ),
            (
                "    if (fstat(fd, &st) != 0 || st.st_dev != c->dev || st.st_ino != sx.stx_ino) {",
                "    if (fstat(fd, &st) != 0) {",
            ),
        ),
        (f"{RW}::test_a_directory_swapped_for_a_symlink_mid_walk_is_not_followed[c-deep]",),
        "a directory swapped for a symlink between statx and open: the C pass empties its target",
    ),
    m(
        "clear-tree-opened-dir-unchecked",
        _C,
        "    if (fstat(fd, &st) != 0 || st.st_dev != c->dev || st.st_ino != sx.stx_ino) {",
        "    if (fstat(fd, &st) != 0) {",
        (f"{RW}::test_a_mount_made_between_the_check_and_the_open_is_not_entered[c-deep]",),
        "a tmpfs mounted between the C pass's statx and its open would be emptied",
    ),
    Mutation(
        "clear-tree-device-unchecked",
        _C,
        (
            (
                "    if (!S_ISDIR(sx.stx_mode) || makedev(sx.stx_dev_major, sx.stx_dev_minor) != c->dev)",
                "    if (!S_ISDIR(sx.stx_mode))",
            ),
            (
                "    if (fstat(fd, &st) != 0 || st.st_dev != c->dev || st.st_ino != sx.stx_ino) {",
                "    if (fstat(fd, &st) != 0 || st.st_ino != sx.stx_ino) {",
            ),
        ),
        (f"{R}::test_btrfs_subvolume_inside_tree_is_left_and_reported[c]",),
        "a btrfs subvolume inside the tree (same mount, another st_dev) emptied by the C pass",
    ),
    m(
        "clear-tree-mount-unchecked",
        _C,
        "    if ((sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT))\n        return -1;\n"
        "    if (c->mnt_id >= 0 && (sx.stx_mask & STATX_MNT_ID) && (long long)sx.stx_mnt_id != c->mnt_id)\n        return -1;\n",
        "",
        (f"{R}::test_bind_mount_of_same_filesystem_inside_tree_is_not_crossed[c]",),
        "a bind mount of the same filesystem inside the tree emptied by the C pass",
    ),
    m(
        "clear-tree-error-not-left",
        _C,
        "        } else if (errno != ENOENT) {\n            f->left++;\n        }",
        "        }",
        (f"{RW}::test_a_real_error_is_reported_with_its_path_and_the_rest_goes[c-top]",),
        "a file the C pass could not unlink never reaches the Python walk: no error reported",
    ),
    m(
        "clear-tree-counts-silly-names",
        _C,
        "            if (!is_silly(name))\n                c->removed++;",
        "            c->removed++;",
        (f"{RW}::test_every_kind_of_entry_goes_with_either_walk[c]",),
        "the C pass counts silly-renamed names the Python walk does not: reports differ by path",
    ),
    m(
        "clear-tree-ignores-last",
        _TREE,
        "        if _fast is not None and not prot.children and not self._c_clear(top_fd, root):",
        "        if _fast is not None and not self._c_clear(top_fd, root):",
        (f"{R}::test_kill_at_random_points_never_orphans_files[c]",),
        "the C pass would remove `last` entries (METADATA, RECORD) with everything else",
    ),
    m(
        "clear-tree-job-enters-a-mount",
        _TREE,
        "            if not stat.S_ISDIR(st.mode) or _other_mount(st, root):",
        "            if not stat.S_ISDIR(st.mode):",
        (f"{RW}::test_a_mount_among_the_subdirectories_of_the_root_is_not_emptied[c]",),
        "a parallel C job would empty a bind mount directly under the root",
    ),
    m(
        "clear-tree-job-opens-what-replaced-it",
        _TREE,
        "            if (fst.st_dev, fst.st_ino) != (st.dev, st.ino):\n                return  # replaced between the look and the open",
        "            if False:\n                return",
        (f"{RW}::test_a_mount_made_between_the_check_and_the_open_is_not_entered[c-top]",),
        "a parallel C job would empty a tmpfs mounted between its look and its open",
    ),
    m(
        "clear-tree-threads-never",
        _TREE,
        "            if len(subs) > 1 and _worth_threads(top_fd, subs):",
        "            if False:",
        (f"{RW}::test_a_local_removal_takes_the_c_pass",),
        "a big local tree emptied by one thread (the parallel C pass never runs)",
    ),
    m(
        "clear-tree-threads-for-small-trees",
        _TREE,
        "            if len(subs) > 1 and _worth_threads(top_fd, subs):",
        "            if len(subs) > 1:",
        (f"{RW}::test_a_local_removal_takes_the_c_pass",),
        "a small package's removal pays thread hand-offs (0.25 ms instead of 0.15 ms)",
    ),
    m(
        "clear-tree-threads-on-a-disk",
        _TREE,
        "        if workers > 1 and fs_magic(top_fd) in _MEMORY_MAGIC:",
        "        if workers > 1:",
        (f"{RW}::test_a_local_removal_takes_the_c_pass",),
        "two threads removing from one disk filesystem: slower on XFS (journal contention)",
    ),
    m(
        "clear-tree-not-used",
        _TREE,
        "        if _fast is not None and not prot.children and not self._c_clear(top_fd, root):",
        "        if False:",
        (f"{RW}::test_a_local_removal_takes_the_c_pass",),
        'the C pass never runs: the "c" tests would test the Python walk twice',
    ),
    m(
        "remove-network-override-ignored",
        _TREE,
        "            or mount.mount_point in network_override()",
        "            or False",
        (
            f"{R}::test_remove_decides_network_as_place_does",
            f"{RS}::test_network_override_gets_the_parallel_walk",
        ),
        "a mount place() calls network gets a serial remove()",
    ),
    m(
        "pool-lifo-ignored",
        _POOL,
        "self.jobs.pop() if self.lifo else self.jobs.popleft()",
        "self.jobs.popleft()",
        ("tests/test_pool.py::test_order_of_a_tasks_queue",),
        "remove()'s parallel walk would open a whole level of a wide tree at once",
    ),
    m(
        "pool-caller-does-not-help",
        _POOL,
        "        while True:\n            with self.lock:\n                while not self.jobs and not done.is_set():",
        "        self.wait(done)\n        while True:\n            with self.lock:\n                while not self.jobs and not done.is_set():",
        ("tests/test_pool.py::test_a_helping_caller_works_its_own_jobs_too",),
        "remove()'s caller would wait on pool threads that are busy elsewhere or cannot start",
    ),
    m(
        "backoff-uncapped",
        _POOL,
        "        self.delay = min(self.delay * 2, self.cap)",
        "        self.delay = self.delay * 2",
        ("tests/test_pool.py::test_backoff_doubles_caps_and_stops_at_its_tries_or_deadline",),
    ),
    m(
        "backoff-past-the-deadline",
        _POOL,
        "            step = min(step, left)",
        "            pass",
        (
            "tests/test_pool.py::test_backoff_doubles_caps_and_stops_at_its_tries_or_deadline",
            f"{GR}::test_busy_forever_ends_within_the_budget",
        ),
    ),
    m(
        "rmtree-at-ignores-a-mount-left-inside",
        _REMOVAL,
        "    if run.mounts:\n        raise OSError(errno.EXDEV",
        "    if False:\n        raise OSError(errno.EXDEV",
        (f"{TO}::test_a_mount_inside_is_never_entered",),
        "place()'s rollback would report success with a mount (and its parents) left",
    ),
    m(
        "place-same-through-a-symlink-allowed",
        _PLACE,
        "            if os.path.samestat(os.stat(base, dir_fd=pfd), src_st):",
        "            if False:",
        (f"{P}::test_dst_inside_src_and_src_equal_dst_are_refused",),
    ),
    m(
        "owner-release-leaves-the-lock-file",
        _OWNER,
        "    _unlink_if(dir_fd, LOCK_NAME, (st.st_dev, st.st_ino))",
        "    pass",
        (
            f"{P}::test_fresh_destination_appears_complete_or_not_at_all",
            f"{B}::test_place_many_installs_every_package_into_one_site",
        ),
    ),
    m(
        "place-c-loop-hard-links-kept-apart",
        _PLACE,
        "        for idx, dev, ino in linked:",
        "        for idx, dev, ino in []:",
        (f"{PS}::test_hard_links_inside_the_tree_stay_links",),
    ),
    m(
        "tree-judges-its-own-temporaries",
        _REMOVAL,
        "        if n.startswith(ours) or not any",
        "        if not any",
        (f"{B}::test_a_process_never_judges_its_own_temporaries",),
        "quadratic: every job of a batch judged every other job's live temporaries",
    ),
    # -- upgrade(): several entries as one transaction ------------------------------------
    m(
        "upgrade-metadata-swapped-first",
        _UPG,
        "        return 2  # metadata: added, replaced or renamed",
        "        return -1  # metadata: added, replaced or renamed",
        (f"{U}::test_step_order_code_first_metadata_late_removals_last",),
        "the new dist-info would describe code not yet in place",
    ),
    m(
        "upgrade-renamed-dist-info-not-exchanged",
        _UPG,
        "                elif e.src_name != e.name and old == (pfd, e.src_name):",
        "                elif False:",
        (
            f"{U}::test_upgrade_swaps_every_entry_and_touches_nothing_else",
            f"{U}::test_step_order_code_first_metadata_late_removals_last",
            f"{U}::test_concurrent_reader_never_sees_two_dist_infos",
        ),
        "renamed in beside the old one: two dist-infos for a moment",
    ),
    m(
        "upgrade-rolls-forward-with-a-new-tree-lost",
        _UPG,
        "        if any(e.new is not None and self._find(e, e.new) is None for e in self.entries):",
        "        if False:",
        (f"{U}::test_swapping_with_a_new_tree_lost_rolls_back_as_a_whole",),
        "half forward, half old: a mix",
    ),
    m(
        "upgrade-recovery-moves-without-checking-the-names",
        _UPG,
        "        self.check()\n        for e in sorted(self.entries, key=_order):\n",
        "        for e in sorted(self.entries, key=_order):\n",
        (f"{U}::test_recovery_leaves_a_journal_whose_names_were_changed_by_someone_else",),
        "moves entries before finding one that someone else changed: a mix, and a stranger's directory beside ours",
    ),
    m(
        "txn-recovers-a-journal-of-another-kind-as-replace",
        _TXN,
        "        if other is None:\n            if lock_fd is not None:",
        "        if False:\n            if lock_fd is not None:",
        (f"{U}::test_replace_recovery_leaves_an_upgrade_journal_to_upgrade",),
        "replace()'s recovery must not act on a journal it does not understand",
    ),
    m(
        "upgrade-journal-not-recovered-by-gc",
        _UPG,
        "    return _txn.recover_journal_at(parent_fd, parent, jname, kinds={KIND: recover_upgrade_at})",
        "    return _txn.recover_journal_at(parent_fd, parent, jname)",
        (
            f"{U}::test_kill_9_at_every_step_then_recovery",
            f"{U}::test_kill_9_at_every_step_on_disk_filesystems",
        ),
        "an interrupted upgrade left half done",
    ),
    m(
        "upgrade-swapping-rolled-back",
        _UPG,
        '        if phase == "swapping":\n            up.roll_forward()',
        '        if phase == "swapping":\n            up.rollback()',
        (f"{U}::test_kill_9_at_every_step_then_recovery",),
        "a kill after the point of no return must roll forward",
    ),
    m(
        "upgrade-change-while-building-unnoticed",
        _UPG,
        "        if e.old is not None and _txn._ident_at(up.parent_fd, e.src_name) != e.old:",
        "        if False:",
        (f"{U}::test_an_entry_changed_while_building_fails_the_upgrade_untouched",),
        "someone else's tree swapped out and deleted",
    ),
    m(
        "upgrade-failure-not-rolled-back",
        _UPG,
        "            try:\n                up.rollback()\n",
        "            try:\n                pass\n",
        (f"{U}::test_failure_while_swapping_rolls_back_as_a_whole",),
        "an error mid-swap leaves a mix until the next call",
    ),
    m(
        "upgrade-entry-name-with-slash",
        _UPG,
        '        or "/" in n\n        or "\\0" in n',
        '        or "\\0" in n',
        (f"{U}::test_bad_input_is_refused_before_anything_changes",),
        "a name reaching outside the parent",
    ),
    m(
        "upgrade-tree-at-its-old-name-not-found",
        _UPG,
        "        for n in dict.fromkeys((e.name, e.src_name)):\n            if _txn._ident_at(self.parent_fd, n) == ident:",
        "        for n in (e.name,):\n            if _txn._ident_at(self.parent_fd, n) == ident:",
        (
            f"{U}::test_kill_9_during_a_roll_forward_then_recovery_again",
            f"{U}::test_kill_9_at_every_step_then_recovery",
        ),
        "killed between the dist-info's exchange and its rename: the new tree is under the old name",
    ),
    m(
        "upgrade-roll-back-not-resumable",
        _UPG,
        "                if new == (pfd, e.src_name):\n                    self._swap(old, new, self._free(e.slot))",
        "                if False:\n                    self._swap(old, new, self._free(e.slot))",
        (f"{U}::test_kill_9_during_a_roll_back_then_recovery_again",),
        "a roll back killed half way must be resumable by the next recovery",
    ),
    m(
        "upgrade-same-inode-taken-for-a-removal",
        _UPG,
        "        if e.new == e.old:\n",
        "        if False:\n",
        (f"{U}::test_a_file_entry_already_hardlinked_to_its_new_source_stays",),
        "a reinstall from the same cache would delete the installed file",
    ),
]
