"""The strategy chain of one place() run, and what the run learns about its pair.

A run starts from its plan's chain (what the pair can do, best first) and learns
while it places files, as uv's ``LinkState`` does, but per pair and shared by the
run's threads:

* a capability error (the pair cannot clone, cannot link) drops that strategy
  for the rest of the run -- the *downgrade* -- with one warning per run in the
  report and one per process in the log; a per-file limit (EMLINK) or a transient
  error that outlived its retries moves only that file down the chain;
* copy_file_range refusing the pair is not asked again (``cfr``);
* a destination without extended attributes is not asked again (``xattrs``), and
  a name it refuses (``security.*`` as a user) is reported once.

:class:`Chain` holds that state and takes those decisions; :mod:`._place` does
the syscalls and asks it.  What an errno means is :func:`._errors.place_action`'s
call.
"""

from __future__ import annotations

import errno as _errno
import threading

from . import _errors as E
from ._errors import PlaceError, StrategyUnavailable
from ._log import log
from ._plan import Plan
from ._record import record

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from typing import Any, Literal

    from ._plan import Strategy


__all__ = ["TRANSIENT_TRIES", "Chain", "Fallback"]

#: Attempts of one strategy on one file after a transient error, before the file
#: moves down the chain.
TRANSIENT_TRIES = 4

#: Strategies whose result is a name of the source's own data (``copy=`` files never get them).
_SHARED = ("hardlink", "symlink")

#: Downgrade warnings already logged by this process: (source mount, destination
#: mount, strategy, errno).  A report lists its run's own warnings regardless.
_warned: set[tuple[Any, ...]] = set()
_warned_lock = threading.Lock()


@record(frozen=True)
class Fallback:
    """One file that could not use a strategy, and what it used instead."""

    path: str
    from_strategy: Strategy
    to_strategy: Strategy
    errno: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "from": self.from_strategy,
            "to": self.to_strategy,
            "errno": _errno.errorcode.get(self.errno, str(self.errno)),
            "reason": self.reason,
        }


class Chain:
    """The strategies left for one run's pair and what the run has learned.

    Shared by the run's worker threads.  The hot path reads plain attributes
    (``strategies``, ``cfr``, ``xattrs``) without a lock: each is replaced whole,
    and only ever towards "try less".  The lock is taken only when something is
    learned (an error), never per file placed.
    """

    def __init__(self, plan: Plan, *, xattrs: bool = True) -> None:
        self.plan = plan
        #: The strategies still worth trying, best first (a tuple, replaced whole).
        self.strategies: tuple[Strategy, ...] = tuple(plan.chain)
        #: A capability error at the chain's end is an error of its own
        #: (:class:`StrategyUnavailable`), not a fallback.
        self.strict = plan.strict
        #: copy_file_range still worth trying for this pair.
        self.cfr = True
        #: Extended attributes still copied: asked for, and the destination has them.
        self.xattrs = xattrs
        #: Extended attribute names the destination refused (skipped, warned once each).
        self.xattrs_denied: set[str] = set()
        self.fallbacks: list[Fallback] = []
        self.warnings: list[str] = []
        self._warned: set[tuple[Strategy, int | None]] = set()
        self._lock = threading.Lock()

    # -- per file -------------------------------------------------------------------------
    def for_file(self, private: bool = False) -> tuple[Strategy, ...]:
        """The strategies to try for one file, in order.  ``private``: the caller will
        rewrite this file (``copy=``), so never a name of the source's data -- no
        hardlink and no symlink, through either of which the rewrite would change the
        cache: the chain without them, or a copy when nothing else is left."""
        chain = self.strategies
        if private:
            return tuple(s for s in chain if s not in _SHARED) or ("copy",)
        return chain

    def failed(
        self,
        strategy: Strategy,
        nxt: Strategy | None,
        err: OSError,
        tries: int,
        path: str,
        src: str,
        dst: str,
    ) -> Literal["retry", "next"]:
        """``strategy`` failed with ``err`` on one file (``path``, relative, for the
        report; ``src``/``dst`` for an error), on try ``tries`` (0 the first);
        ``nxt`` is the file's next strategy (None at the end of its chain).

        ``"retry"``: try again after a pause (a transient error, a bounded number of
        times).  ``"next"``: go on with ``nxt``; the :class:`Fallback` is recorded,
        and a capability error drops ``strategy`` for the rest of the run (one
        warning).  Otherwise raises: :class:`StrategyUnavailable` for a capability
        error at the end of a strict chain, :class:`PlaceError` for anything else."""
        code = err.errno
        action = E.place_action(code, strategy)
        if action == "retry":
            if tries < TRANSIENT_TRIES:
                return "retry"
            action = "next_for_file"
        if action != "fail" and nxt is not None:
            per_file = action == "next_for_file"
            reason = "per-file limit" if per_file else f"pair cannot {strategy}"
            with self._lock:
                self.fallbacks.append(Fallback(path, strategy, nxt, code or 0, reason))
            if not per_file:
                self.downgrade(strategy, err, path)
            return "next"
        if action == "next_for_pair" and self.strict:
            raise StrategyUnavailable(
                code, f"forced strategy {strategy} failed: {err.strerror}", src, None, dst
            ) from err
        raise PlaceError(code, f"{strategy} failed: {err.strerror}", src, None, dst) from err

    def downgrade(self, strategy: Strategy, err: OSError, path: str) -> None:
        """The pair cannot do ``strategy`` (``err`` on ``path``): drop it for the rest of
        the run -- never the last strategy left -- and warn once."""
        with self._lock:
            if strategy in self.strategies and len(self.strategies) > 1:
                self.strategies = tuple(s for s in self.strategies if s != strategy)
        self._warn_once(strategy, err, path)

    def record(self, fallbacks: tuple[Fallback, ...]) -> None:
        """Fallbacks of a nested placement (a directory merged instead of renamed)."""
        with self._lock:
            self.fallbacks.extend(fallbacks)

    # -- learned on the way -----------------------------------------------------------------
    def learn_cfr(self, works: bool) -> None:
        """After a copy: ``works`` is False once copy_file_range refused this pair.  Once
        off it stays off (a thread still copying with it cannot turn it back on)."""
        if not works:
            self.cfr = False

    def xattr_failed(self, err: OSError, name: str) -> Literal["next", "stop", "fail"]:
        """Setting extended attribute ``name`` failed with ``err``.  ``"stop"``: the
        destination has none (the run stops copying them, one warning); ``"next"``:
        this name may not be set here (skipped, one warning per name); ``"fail"``: a
        real error, for the caller to raise."""
        code = err.errno
        action = E.xattr_action(code)
        if action == "unsupported":  # e.g. EFS: no user xattrs at all
            with self._lock:
                if self.xattrs:
                    self.xattrs = False
                    self.warnings.append(
                        "extended attributes not kept on "
                        f"{self.plan.dst_probe.mount.mount_point}"
                        f" ({_errname(code)} setting {name})"
                    )
            return "stop"
        if action == "denied":
            with self._lock:
                if name not in self.xattrs_denied:
                    self.xattrs_denied.add(name)
                    self.warnings.append(
                        f"extended attribute {name} not kept: {_errname(code)} ({err.strerror})"
                    )
            return "next"
        return "fail"

    # -- warnings ---------------------------------------------------------------------------
    def _warn_once(self, strategy: Strategy, err: OSError, path: str) -> None:
        sp, dp = self.plan.src_probe.mount, self.plan.dst_probe.mount
        key = (sp.mount_id, sp.mount_point, dp.mount_id, dp.mount_point, strategy, err.errno)
        msg = (
            f"cannot {strategy} from {sp.mount_point} ({sp.fstype}) to {dp.mount_point} "
            f"({dp.fstype}): {_errname(err.errno)} ({err.strerror}) on {path}; falling back "
            f"to {self.strategies[0]} for this pair (choose with LINKSTRATEGY_STRATEGY or "
            "--strategy; strict=True or --strict makes it an error)."
        )
        with self._lock:  # once per run in the report, once per process in the log
            if (strategy, err.errno) in self._warned:
                return
            self._warned.add((strategy, err.errno))
            self.warnings.append(msg)
        with _warned_lock:
            if key in _warned:
                return
            _warned.add(key)
        log.warning("%s", msg)


def _errname(code: int | None) -> str:
    return _errno.errorcode.get(code or 0, str(code))
