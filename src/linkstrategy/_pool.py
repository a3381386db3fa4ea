"""One pool of worker threads for every place() in a process.

A place() of a small package is a few dozen syscalls: starting threads for it
(``Thread.start`` waits until the thread runs) cost more than the work.  So the
workers live in one pool per process, started as they are first needed, and each
leaves after :data:`IDLE_SECONDS` without work; a forked child starts afresh.

Each call has its own :class:`Tasks`, a queue of its jobs done by at most
``workers`` pool threads at once (``workers=1`` is serial, whatever else the pool
is doing): a thread takes a *slot* from the pool's queue and does that queue's
jobs until it has none left.  A :class:`Group` is one tree's jobs in a Tasks: its
first error, its stop flag, and an event when all are done; the trees of one
:func:`~linkstrategy.place_many` share one Tasks (one limit on threads) and keep
their own Groups (one tree's failure stops only that tree).

A thread that cannot be started (``ulimit -u``) is not an error: the pool goes on
with the threads it has, and a caller whose pool has none does its own jobs.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque

from ._log import log

TYPE_CHECKING = False  # mypy treats any name TYPE_CHECKING as true; typing stays unloaded
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Literal


__all__ = ["Abort", "Backoff", "Group", "Pool", "Tasks", "shared"]


#: A worker without a job for this long leaves the pool.
IDLE_SECONDS = 2.0
#: After a thread failed to start, no new one is tried for this long.
_RETRY_START = 1.0


class Abort(Exception):
    """Raised by a job that stops because another job of its call failed: not an error."""


class Tasks:
    """A queue of jobs done by at most ``workers`` threads of ``pool`` at a time: one
    call's, or one batch's (:func:`~linkstrategy.place_many`).  A job is any
    callable; errors are the submitter's to catch (see :class:`Group`).

    ``order="lifo"``: the newest job is taken first.  A tree walk that submits a
    directory's subdirectories as jobs then goes deep first, and holds about
    ``workers`` times the tree's depth directories open, not a whole level of a
    wide tree at once (remove()'s parallel walk)."""

    def __init__(self, pool: Pool, workers: int, order: Literal["fifo", "lifo"] = "fifo") -> None:
        self.pool = pool
        self.workers = max(1, workers)
        self.lifo = order == "lifo"
        self.lock = threading.Lock()
        self.more = threading.Condition(self.lock)  # a job queued, or a helper's event set
        self.jobs: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self.slots = 0  # threads working on these jobs now
        # Told True when a thread could take a job and none is queued, False when that
        # ends (_place: a C walk then shares a directory with it); with its state.
        self.on_hungry: Callable[[bool], None] | None = None
        self.hungry_flag: Any = None
        self._hungry = False

    def submit(self, fn: Callable[..., None], *args: Any, first: bool = False) -> None:
        """Queue ``fn(*args)``; ``first``: to be taken before every job queued now."""
        with self.lock:
            if first and not self.lifo:
                self.jobs.appendleft((fn, args))
            else:  # (lifo: the newest is taken first anyway)
                self.jobs.append((fn, args))
            grant = self.slots < self.workers
            if grant:
                self.slots += 1
            self._note()
            self.more.notify()  # a caller in help_until() may take it
        if grant:
            self.pool.put(self)

    def work(self) -> None:
        """Do jobs until none is queued (one slot's worth)."""
        while True:
            with self.lock:
                if not self.jobs:
                    self.slots -= 1
                    self._note()
                    return
                fn, args = self._take()
            fn(*args)

    def _take(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        """The next job (the lock held): the newest with ``order="lifo"``, else the oldest."""
        job = self.jobs.pop() if self.lifo else self.jobs.popleft()
        self._note()
        return job

    def hunger(self, make: Callable[[], Any], set_flag: Callable[[Any, bool], None]) -> Any:
        """A flag kept equal to "a thread could take a job and none is queued": made
        once by ``make()``, then set by ``set_flag(flag, value)`` at each change."""
        with self.lock:
            if self.hungry_flag is None:
                flag = make()
                set_flag(flag, self._hungry)
                self.hungry_flag = flag
                self.on_hungry = lambda value: set_flag(flag, value)
            return self.hungry_flag

    def _note(self) -> None:
        """Tell :attr:`on_hungry` when "a thread could take a job and none is queued"
        starts or ends (the lock held)."""
        hungry = not self.jobs and self.slots < self.workers
        if hungry != self._hungry:
            self._hungry = hungry
            if self.on_hungry is not None:
                self.on_hungry(hungry)

    def help_until(self, done: threading.Event) -> None:
        """Wait for ``done``, doing this queue's jobs in the calling thread meanwhile, as
        one more worker besides the pool's (remove()'s walk): a caller never waits for
        threads that cannot start.  Whoever sets ``done`` then calls :meth:`wake`."""
        while True:
            with self.lock:
                while not self.jobs and not done.is_set():
                    self.more.wait(0.05)  # a bounded wait: a backstop, not the signal
                if done.is_set():
                    return
                fn, args = self._take()
            fn(*args)

    def wake(self) -> None:
        """Wake :meth:`help_until` callers to look at their event again."""
        with self.lock:
            self.more.notify_all()

    def wait(self, done: threading.Event) -> None:
        """Wait for ``done``; if the pool has no thread, do queued jobs in this one.
        Never an unbounded wait: the last thread may leave just as a slot is queued."""
        while not done.wait(0.05 if self.pool.alive() else 0.001):
            if not self.pool.alive():
                self.pool.work_once()


class Backoff:
    """Waits between the tries of one retried operation: ``start`` seconds, doubling,
    at most ``cap`` a step; ``tries`` waits at most, and never past ``deadline``
    (:func:`time.monotonic`).  The one backoff of place(), remove(), gc() and
    replace()'s renames.

    >>> b = Backoff(start=0.0, tries=2)
    >>> b.wait(), b.wait(), b.wait()
    (True, True, False)
    """

    __slots__ = ("cap", "deadline", "delay", "tries")

    def __init__(
        self,
        start: float = 0.01,
        cap: float = 0.5,
        *,
        deadline: float | None = None,
        tries: int | None = None,
    ) -> None:
        self.delay = start
        self.cap = cap
        self.deadline = deadline
        self.tries = tries

    def wait(self) -> bool:
        """Sleep the next step and return True; False (at once) when the tries or the
        time are used up.  The last step is cut short to end at the deadline."""
        if self.tries is not None:
            if self.tries <= 0:
                return False
            self.tries -= 1
        step = self.delay
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return False
            step = min(step, left)
        time.sleep(step)
        self.delay = min(self.delay * 2, self.cap)
        return True


class Group:
    """Jobs that belong together (one tree): a count of unfinished ones, the first
    error, a stop flag, and an event set when all are done."""

    def __init__(self, tasks: Tasks) -> None:
        self.tasks = tasks
        self.lock = threading.Lock()
        self.pending = 0
        self.done = threading.Event()
        self.done.set()
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def submit(self, fn: Callable[..., None], *args: Any, first: bool = False) -> None:
        with self.lock:
            self.pending += 1
            self.done.clear()
        self.tasks.submit(self._guarded, fn, args, first=first)

    def call(self, fn: Callable[..., None], *args: Any) -> None:
        """Do ``fn(*args)`` in this thread as one of the group's jobs: its error is the
        group's, as a worker's would be; an interrupt (not an :class:`Exception`) also
        goes on up from here."""
        with self.lock:
            self.pending += 1
            self.done.clear()
        self._guarded(fn, args, reraise=True)

    def wait(self) -> None:
        """Until every job submitted so far (and all they submit) is done."""
        try:
            self.tasks.wait(self.done)
        except BaseException:  # KeyboardInterrupt: stop the jobs, wait for the running ones
            self.stop.set()
            self.tasks.wait(self.done)
            raise

    def _guarded(
        self, fn: Callable[..., None], args: tuple[Any, ...], reraise: bool = False
    ) -> None:
        try:
            if not self.stop.is_set():
                fn(*args)
        except Abort:
            pass
        except BaseException as e:
            with self.lock:
                if self.error is None:
                    self.error = e
            self.stop.set()
            if reraise and not isinstance(e, Exception):
                raise
        finally:
            with self.lock:
                self.pending -= 1
                if self.pending == 0:
                    self.done.set()


class Pool:
    """Worker threads taking calls' slots from one queue; grown on demand: a slot that
    no idle thread is there to take starts a thread."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Tasks] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0  # threads waiting for a slot (a starting one counts)
        self.queued = 0  # slots put and not yet taken
        self.cannot_start = -_RETRY_START  # when a thread last failed to start

    def alive(self) -> bool:
        return self.threads > 0

    def put(self, tasks: Tasks) -> None:
        with self.lock:
            self.queued += 1
            start = self.queued > self.idle and time.monotonic() - self.cannot_start > _RETRY_START
            if start:
                self.threads += 1
                self.idle += 1  # counted idle until it takes a slot
        self.queue.put(tasks)
        if start:
            t = threading.Thread(target=self._work, name="linkstrategy-worker", daemon=True)
            try:
                t.start()
            except RuntimeError:  # "can't start new thread": go on with the ones we have
                with self.lock:
                    self.threads -= 1
                    self.idle -= 1
                    self.cannot_start = time.monotonic()
                log.debug("worker thread not started; %d running", self.threads)

    def work_once(self) -> None:
        try:
            tasks = self.queue.get(timeout=0.01)
        except queue.Empty:
            return
        with self.lock:
            self.queued -= 1
        tasks.work()

    def _work(self) -> None:
        get = self.queue.get
        while True:
            try:
                tasks = get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self.lock:
                    self.idle -= 1
                    self.threads -= 1
                return
            with self.lock:
                self.idle -= 1
                self.queued -= 1
            tasks.work()
            with self.lock:
                self.idle += 1


_shared: Pool | None = None
_shared_lock = threading.Lock()


def shared() -> Pool:
    """The process's pool (a new one in a forked child)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Pool()
        return _shared


def _after_fork() -> None:
    global _shared, _shared_lock
    _shared = None
    _shared_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
