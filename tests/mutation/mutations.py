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
GS = "tests/test_guarantees_speedups.py"

_PLACE = "src/linkstrategy/_place.py"
_REMOVE = "src/linkstrategy/_remove.py"
_TXN = "src/linkstrategy/_txn.py"
_C = "src/linkstrategy/_speedups.c"
_SYSCALLS = "src/linkstrategy/_syscalls.py"
_ERRORS = "src/linkstrategy/_errors.py"
_OWNER = "src/linkstrategy/_owner.py"
_TREE = "src/linkstrategy/_tree.py"
PS = "tests/test_place_safety.py"
B = "tests/test_batch.py"
TO = "tests/test_tree_owner.py"


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
    # -- place(): symlinks ----------------------------------------------------------------
    m(
        "place-middle-component-followed",
        _SYSCALLS,
        "flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS",
        "flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0, 0",
        (f"{GP}::test_symlink_swapped_for_a_middle_component_never_leads_outside",),
        "openat2 without RESOLVE_*: symlinks in middle components are followed",
    ),
    m(
        "place-middle-component-followed-without-openat2",
        _SYSCALLS,
        "fl = (flags if last else os.O_RDONLY | os.O_DIRECTORY) | os.O_NOFOLLOW | os.O_CLOEXEC",
        "fl = (flags if last else os.O_RDONLY | os.O_DIRECTORY) | (os.O_NOFOLLOW if last else 0) | os.O_CLOEXEC",
        (f"{GP}::test_symlink_swapped_for_a_middle_component_never_leads_outside",),
        "the per-component path (no openat2) follows symlinks in middle components",
    ),
    m(
        "place-last-component-followed",
        _SYSCALLS,
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
        _TREE,
        "            verdict = judge(dir_fd, n, st)",
        "            verdict = 'dead'",
        (f"{GP}::test_fresh_temporaries_of_other_writers_survive",),
    ),
    m(
        "owner-lockless-age-ignored",
        _OWNER,
        '        return "dead" if _old(st, GRACE_NO_LOCK) else "live"\n    try:\n        pst',
        '        return "dead"\n    try:\n        pst',
        (f"{GP}::test_fresh_temporaries_of_other_writers_survive",),
    ),
    m(
        "owner-held-lock-ignored",
        _OWNER,
        '        return "live" if locked else "dead"',
        '        return "dead"',
        (
            f"{GP}::test_fresh_temporaries_of_other_writers_survive",
            f"{TO}::test_liveness_is_the_lock_not_the_pid",
        ),
    ),
    m(
        "owner-other-users-temporaries-judged",
        _OWNER,
        "    if not may_act(dir_fd, st):",
        "    if False:",
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
        "                if len(stack) > MAX_FDS:",
        "                if False:",
        (f"{TO}::test_deep_tree_under_a_small_fd_limit",),
    ),
    m(
        "tree-enters-other-mounts",
        _TREE,
        "                if cst.st_dev != root_dev or (root_mnt is not None and _mnt_id(cfd) != root_mnt):",
        "                if False:",
        (f"{TO}::test_a_mount_inside_is_never_entered",),
    ),
    m(
        "tree-expect-ignored",
        _TREE,
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
        _PLACE,
        "                    if tries < _TRANSIENT_TRIES:",
        "                    if True:",
        (f"{GP}::test_transient_errors_are_retried_a_bounded_number_of_times",),
        "loops for ever: a named timeout failure",
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
    # -- remove(): symlinks -------------------------------------------------------------
    m(
        "remove-subdir-opened-following-symlinks",
        _REMOVE,
        '_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)',
        '_O_DIR = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)',
        (
            f"{GR}::test_symlink_to_the_moved_original_directory_is_not_followed",
            f"{R}::test_symlink_swapped_in_mid_walk_is_removed_not_followed",
        ),
    ),
    # -- remove(): refusals ---------------------------------------------------------------
    m(
        "remove-home-check-on-unresolved-parent",
        _REMOVE,
        "    real_parent = os.path.realpath(root.parent)",
        "    real_parent = root.parent",
        (f"{GR}::test_home_is_refused_through_a_symlinked_parent",),
    ),
    m(
        "remove-home-ancestors-allowed",
        _REMOVE,
        'if home and (full == home or home.startswith(full.rstrip("/") + "/")):',
        "if home and full == home:",
        (f"{R}::test_refuses_home_and_its_ancestors_and_touches_nothing",),
    ),
    m(
        "remove-mount-point-root-allowed",
        _REMOVE,
        '        raise RemoveError(errno.EBUSY, "refusing to remove a mount point", root.path)',
        "        pass",
        (f"{R}::test_refuses_a_mount_point",),
    ),
    # -- remove(): mounts ------------------------------------------------------------------
    m(
        "remove-mounts-crossed",
        _REMOVE,
        "            st.dev != root.dev\n"
        "            or (st.mnt_id is not None and root.mnt_id is not None and st.mnt_id != root.mnt_id)\n"
        "            or st.mount_root\n",
        "            False\n",
        (
            f"{R}::test_tmpfs_inside_tree_is_left_untouched_and_reported",
            f"{R}::test_bind_mount_of_same_filesystem_inside_tree_is_not_crossed",
            f"{R}::test_parallel_walk_leaves_a_mount_alone",
        ),
    ),
    m(
        "remove-busy-root-with-mount-deferred",
        _REMOVE,
        "if r.done or o.error or o.mount or o.protected or not run.defer:",
        "if r.done or o.error or o.protected or not run.defer:",
        (f"{GR}::test_busy_root_holding_a_mount_is_not_deferred",),
    ),
    m(
        "remove-last-entries-go-despite-mount",
        _REMOVE,
        "    if run.errors or run.mounts:\n        return run.report()",
        "    if run.errors:\n        return run.report()",
        (f"{GR}::test_last_entries_stay_when_a_mount_is_left_inside",),
    ),
    m(
        "remove-last-entries-go-despite-errors",
        _REMOVE,
        "    if run.errors or run.mounts:\n        return run.report()",
        "    if run.mounts:\n        return run.report()",
        (f"{R}::test_non_retryable_error_is_reported_and_last_entries_are_kept",),
    ),
    m(
        "remove-last-entries-not-protected",
        _REMOVE,
        "                if node is not None and node.leaf:",
        "                if False:",
        (f"{R}::test_last_entries_go_after_everything_else_in_order",),
    ),
    m(
        "gc-crosses-mounts",
        _REMOVE,
        "                        if (\n"
        "                            st.dev == here.dev\n"
        "                            and not st.mount_root\n"
        "                            and (st.mnt_id is None or st.mnt_id == here.mnt_id)\n"
        "                        ):",
        "                        if True:",
        (f"{GR}::test_gc_does_not_cross_a_bind_mount",),
    ),
    # -- remove(): budgets and permissions ---------------------------------------------
    m(
        "remove-budget-ignored",
        _REMOVE,
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
        _REMOVE,
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
        '    os.rename(tmp, os.path.join(txn, "state"))\n    _fsync_dir(txn)',
        '    _fsync_dir(txn)\n    os.rename(tmp, os.path.join(txn, "state"))',
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
        (f"{T}::test_live_transaction_is_not_recovered_under_its_feet",),
    ),
    m(
        "txn-rename-budget-ignored",
        _TXN,
        "            if e.errno not in REMOVE_RETRY or time.monotonic() + delay > deadline:\n"
        "                raise",
        "            if e.errno not in REMOVE_RETRY:\n                raise",
        (f"{GT}::test_rename_busy_forever_is_an_error_within_the_budget",),
        "retries for ever: a named timeout failure",
    ),
    m(
        "txn-exchange-budget-ignored",
        _TXN,
        "        if code not in REMOVE_RETRY or time.monotonic() + delay > deadline:",
        "        if code not in REMOVE_RETRY:",
        (f"{GT}::test_rename_busy_forever_is_an_error_within_the_budget",),
        "retries for ever: a named timeout failure",
    ),
]
