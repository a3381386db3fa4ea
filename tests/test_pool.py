"""The shared worker pool (_pool): as many threads as a call asks for, really at once."""

from __future__ import annotations

import threading
import time

import pytest

from linkstrategy import _pool


@pytest.mark.parametrize("width", [2, 8, 48])
def test_a_call_gets_its_width_of_threads_at_once(
    monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    """Jobs submitted in a burst (a directory's subdirectories) must get ``width``
    threads: each job waits at a barrier for ``width`` of them.  A pool that starts a
    thread only when none is idle starts one for the whole burst, and the barrier
    breaks."""
    monkeypatch.setattr(_pool, "_shared", None)
    tasks = _pool.Tasks(_pool.shared(), width)
    group = _pool.Group(tasks)
    barrier = threading.Barrier(width, timeout=20)
    met: list[int] = []

    def job() -> None:
        barrier.wait()
        met.append(1)

    def root() -> None:
        for _ in range(width):
            group.submit(job)

    group.submit(root)
    group.wait()
    assert group.error is None, repr(group.error)
    assert len(met) == width


def test_width_one_is_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pool, "_shared", None)
    tasks = _pool.Tasks(_pool.shared(), 1)
    group = _pool.Group(tasks)
    running: list[int] = []
    most = [0]
    lock = threading.Lock()

    def job() -> None:
        with lock:
            running.append(1)
            most[0] = max(most[0], len(running))
        threading.Event().wait(0.01)
        with lock:
            running.pop()

    for _ in range(10):
        group.submit(job)
    group.wait()
    assert most[0] == 1


@pytest.mark.parametrize("order", ["fifo", "lifo"])
def test_order_of_a_tasks_queue(monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    """``lifo`` takes the newest job first (remove()'s walk goes deep first), ``fifo``
    the oldest (place())."""
    monkeypatch.setattr(_pool, "_shared", None)
    tasks = _pool.Tasks(_pool.shared(), 1, order=order)  # type: ignore[arg-type]
    group = _pool.Group(tasks)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def first() -> None:
        started.set()
        release.wait(20)
        ran.append("first")

    group.submit(first)
    assert started.wait(20)
    for name in "abc":
        group.submit(ran.append, name)
    release.set()
    group.wait()
    assert ran == (["first", "a", "b", "c"] if order == "fifo" else ["first", "c", "b", "a"])


def test_backoff_doubles_caps_and_stops_at_its_tries_or_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(_pool.time, "sleep", slept.append)
    b = _pool.Backoff(0.01, 0.03, tries=4)
    assert [b.wait() for _ in range(5)] == [True, True, True, True, False]
    assert slept == [0.01, 0.02, 0.03, 0.03]
    slept.clear()
    b = _pool.Backoff(5.0, deadline=_pool.time.monotonic() + 0.2)
    assert b.wait() and 0 < slept[0] <= 0.2  # the last step ends at the deadline
    b.deadline = _pool.time.monotonic() - 0.001
    assert not b.wait() and len(slept) == 1


def test_a_helping_caller_works_its_own_jobs_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """remove()'s walk waits with ``help_until``: the calling thread does queued jobs of
    its call as one more worker, so it never waits on threads that are busy elsewhere or
    cannot start."""
    monkeypatch.setattr(_pool, "_shared", None)
    tasks = _pool.Tasks(_pool.shared(), 1, order="lifo")
    done = threading.Event()
    lock = threading.Lock()
    left = [40]
    runners: set[str] = set()

    def job() -> None:
        runners.add(threading.current_thread().name)
        threading.Event().wait(0.002)
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            done.set()
            tasks.wake()

    for _ in range(40):
        tasks.submit(job)
    tasks.help_until(done)
    assert left == [0]
    assert threading.current_thread().name in runners


def test_the_hungry_flag_follows_idle_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Tasks.hunger``: up while a thread could take a job and none is queued (a C
    walk then shares work), down while every slot is busy or a job waits."""
    monkeypatch.setattr(_pool, "_shared", None)
    tasks = _pool.Tasks(_pool.shared(), 2)
    group = _pool.Group(tasks)
    seen: list[bool] = []
    flag = tasks.hunger(lambda: seen, lambda f, v: f.append(v))
    assert flag is seen and tasks.hunger(list, list.append) is seen  # made once
    assert seen == [False]
    first, second, release = threading.Event(), threading.Event(), threading.Event()

    def job(started: threading.Event) -> None:
        started.set()
        release.wait(20)

    group.submit(job, first)
    assert first.wait(20)
    assert seen[-1] is True  # one job running, one slot free, nothing queued
    group.submit(job, second)
    assert second.wait(20)
    assert seen[-1] is False  # both slots busy
    release.set()
    group.wait()
    deadline = time.monotonic() + 20  # the slots are given back just after the jobs end
    while seen[-1] is not True and time.monotonic() < deadline:
        time.sleep(0.001)
    assert seen[-1] is True


def test_a_job_submitted_first_is_taken_before_the_queued_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``first=True`` (a C walk giving its board away): the next free thread joins that
    walk rather than start another queued tree."""
    monkeypatch.setattr(_pool, "_shared", None)
    tasks = _pool.Tasks(_pool.shared(), 1)
    group = _pool.Group(tasks)
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def job(name: str) -> None:
        order.append(name)
        if name == "a":
            started.set()
            release.wait(20)

    group.submit(job, "a")
    assert started.wait(20)
    group.submit(job, "b")
    group.submit(job, "c")
    group.submit(job, "gift", first=True)
    release.set()
    group.wait()
    assert order == ["a", "gift", "b", "c"]


def test_a_job_called_here_is_one_of_the_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Group.call`` (a tree's top directory done in the calling thread): the jobs it
    submits go to the workers, the group waits for them, its error is the group's (not
    raised there, as a worker's would not be), and an interrupt goes on up from it."""
    monkeypatch.setattr(_pool, "_shared", None)
    group = _pool.Group(_pool.Tasks(_pool.shared(), 2))
    ran: list[bool] = []

    def child() -> None:
        time.sleep(0.05)
        ran.append(threading.current_thread() is threading.main_thread())

    def top() -> None:
        ran.append(threading.current_thread() is threading.main_thread())
        group.submit(child)

    group.call(top)
    group.wait()
    assert ran == [True, False] and group.error is None

    def fails() -> None:
        raise OSError(5, "injected")

    group.call(fails)
    assert isinstance(group.error, OSError) and group.stop.is_set()
    group.wait()  # nothing pending: returns at once

    group = _pool.Group(_pool.Tasks(_pool.shared(), 2))

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        group.call(interrupted)
    assert isinstance(group.error, KeyboardInterrupt) and group.stop.is_set()
    assert group.done.is_set()
