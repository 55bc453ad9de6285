"""The worker pool: indexed workers, the order jobs run in (ranks within a request, requests in turn), dropped and
failed jobs, shutdown, and the idle hook that gives the arenas back."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from tts_service.engine.pool import Group, WorkerPool, current_worker


def test_each_worker_knows_its_index() -> None:
    pool = WorkerPool(2, 0)
    barrier = threading.Barrier(2, timeout=10)

    def where() -> int:
        barrier.wait()  # both jobs run at once, so they are on different workers
        return current_worker()

    futures = [pool.submit(where) for _ in range(2)]
    assert sorted(f.result(timeout=10) for f in futures) == [0, 1]
    pool.shutdown()


def test_idle_hook_runs_once_the_last_request_leaves() -> None:
    pool = WorkerPool(1, 1)
    pool.idle_delay = 0.05
    ran = threading.Event()
    with pool.admit(on_idle=ran.set), pool.admit(on_idle=ran.set):
        pass
    assert ran.wait(5)
    pool.shutdown()


def test_idle_hook_waits_while_requests_keep_coming() -> None:
    pool = WorkerPool(1, 1)
    pool.idle_delay = 0.2
    ran = threading.Event()
    with pool.admit(on_idle=ran.set):
        pass
    with pool.admit(on_idle=None):
        # A request came in before the delay ran out: no trim under its feet.
        assert not ran.wait(0.5)
    pool.shutdown()


class Gate:
    """A job that holds its worker until opened: the jobs queued meanwhile wait, and their order shows."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.opened = threading.Event()

    def __call__(self) -> str:
        self.started.set()
        self.opened.wait(10)
        return "gate"


@pytest.fixture
def pools() -> Iterator[Callable[[int], WorkerPool]]:
    """Pools that are shut down after the test, passed or not."""
    made: list[WorkerPool] = []

    def make(workers: int) -> WorkerPool:
        made.append(WorkerPool(workers, 0))
        return made[-1]

    yield make
    for pool in made:
        pool.shutdown()


def hold(pool: WorkerPool, group: Group | None = None) -> tuple[Gate, Future[str]]:
    """A gate running on one of the pool's workers."""
    gate = Gate()
    future = pool.submit(gate, group=group)
    assert gate.started.wait(10)
    return gate, future


def note(order: list[str], name: str) -> Callable[[], str]:
    def job() -> str:
        order.append(name)
        return name

    return job


def settled(future: Future[Any]) -> threading.Event:
    """Set once the pool's own bookkeeping for `future` has run.

    `future.result()` may return before it: callbacks run after waiters wake, in the order they were added, and
    the pool adds its own in `submit`, before this one.
    """
    event = threading.Event()
    future.add_done_callback(lambda _: event.set())
    return event


def test_a_groups_jobs_run_in_rank_order(pools: Callable[[int], WorkerPool]) -> None:
    pool = pools(1)
    gate, _ = hold(pool)
    group = pool.group()
    order: list[str] = []
    ranks = {"3": (3,), "1a": (1,), "2.1": (2, 1), "2.0": (2, 0), "1b": (1,), "2": (2,), "1c": (1,), "1d": (1,)}
    futures = [pool.submit(note(order, name), group=group, rank=rank) for name, rank in ranks.items()]
    gate.opened.set()
    for future in futures:
        future.result(timeout=10)
    # Equal ranks keep their submission order (a heap alone would not: four ties come out a, b, d, c); a shorter
    # rank goes before its own extensions.
    assert order == ["1a", "1b", "1c", "1d", "2", "2.0", "2.1", "3"]


def test_requests_take_turns(pools: Callable[[int], WorkerPool]) -> None:
    pool = pools(1)
    gate, _ = hold(pool)
    first, second = pool.group(), pool.group()
    order: list[str] = []
    futures = [pool.submit(note(order, f"a{n}"), group=first, rank=(n,)) for n in range(3)]
    futures.append(pool.submit(note(order, "b0"), group=second))
    futures.append(pool.submit(note(order, "lone")))  # no group: a group of its own
    gate.opened.set()
    for future in futures:
        future.result(timeout=10)
    # First come, first served would run all of a's before the others.
    assert order == ["a0", "b0", "lone", "a1", "a2"]


def test_the_request_waiting_longest_goes_first(pools: Callable[[int], WorkerPool]) -> None:
    pool = pools(1)
    gate, _ = hold(pool)
    older, newer = pool.group(), pool.group()
    order: list[str] = []
    # The newer request queues first, but the older one has waited longer (since it was made) for a worker.
    futures = [pool.submit(note(order, "newer"), group=newer), pool.submit(note(order, "older"), group=older)]
    gate.opened.set()
    for future in futures:
        future.result(timeout=10)
    assert order == ["older", "newer"]


def test_a_free_worker_serves_the_request_with_fewest_jobs_running(pools: Callable[[int], WorkerPool]) -> None:
    pool = pools(2)
    first = pool.group()
    running, _ = hold(pool, group=first)
    other, _ = hold(pool)
    order: list[str] = []
    later = pool.submit(note(order, "first's second job"), group=first)
    # Made after first's job started: first has waited longer, and queued earlier, yet it already has a worker.
    second = pool.group()
    turn = pool.submit(note(order, "second's job"), group=second)
    other.opened.set()  # one worker free; the other still runs first's job
    turn.result(timeout=10)
    later.result(timeout=10)
    running.opened.set()
    assert order == ["second's job", "first's second job"]


def test_a_lone_request_gets_every_worker(pools: Callable[[int], WorkerPool]) -> None:
    pool = pools(2)
    group = pool.group()
    barrier = threading.Barrier(2, timeout=10)

    def meet() -> int:
        barrier.wait()  # only returns if both jobs run at once
        return current_worker()

    futures = [pool.submit(meet, group=group, rank=(n,)) for n in range(2)]
    assert sorted(f.result(timeout=10) for f in futures) == [0, 1]


def test_an_abandoned_queued_job_never_runs(pools: Callable[[int], WorkerPool]) -> None:
    pool = pools(1)
    gate, _ = hold(pool)
    group = pool.group()
    order: list[str] = []
    dropped, kept, last = (pool.submit(note(order, name), group=group, rank=(n,)) for n, name in enumerate("xyz"))
    pool.abandon(dropped)  # the first in line: the worker must skip it, not stop at it
    assert dropped.cancelled()
    assert pool.admitted == 0, "a dropped job holds no place, unlike a running one"
    done = settled(last)
    gate.opened.set()
    assert kept.result(timeout=10) == "y"
    assert last.result(timeout=10) == "z"
    assert done.wait(10)
    assert order == ["y", "z"]
    assert pool.idle_workers == pool.workers
    assert pool.alone(pool.group())


def test_shutdown_cancels_queued_jobs_and_lets_running_ones_finish(pools: Callable[[int], WorkerPool]) -> None:
    pool = pools(1)
    gate, running = hold(pool)
    order: list[str] = []
    queued = [pool.submit(note(order, "grouped"), group=pool.group()), pool.submit(note(order, "lone"))]
    pool.shutdown()
    assert all(future.cancelled() for future in queued)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(note(order, "too late"))
    assert not running.done()
    gate.opened.set()
    assert running.result(timeout=10) == "gate"
    for thread in pool._threads:
        thread.join(10)
        assert not thread.is_alive()
    assert order == []


def test_shutdown_stops_idle_workers(pools: Callable[[int], WorkerPool]) -> None:
    pool = pools(2)
    assert pool.submit(current_worker).result(timeout=10) in (0, 1)
    pool.shutdown()
    for thread in pool._threads:
        thread.join(10)
        assert not thread.is_alive()


def test_a_failing_job_hands_its_error_to_the_caller_and_the_worker_goes_on(
    pools: Callable[[int], WorkerPool],
) -> None:
    pool = pools(1)
    group = pool.group()

    def fail() -> None:
        raise ValueError("no such phoneme")

    failed = pool.submit(fail, group=group)
    with pytest.raises(ValueError, match="no such phoneme"):
        failed.result(timeout=10)
    after = pool.submit(lambda: "next", group=group)
    done = settled(after)
    assert after.result(timeout=10) == "next"
    assert done.wait(10)
    # The failed job no longer counts as running, for the pool and for its request.
    assert pool.idle_workers == 1
    assert pool.alone(group)


def test_alone_means_no_other_request_has_jobs_queued_or_running(pools: Callable[[int], WorkerPool]) -> None:
    pool = pools(1)
    mine, theirs = pool.group(), pool.group()
    gate, running = hold(pool, group=mine)
    assert pool.alone(mine)
    assert not pool.alone(theirs)
    mine_queued = pool.submit(lambda: "mine", group=mine)
    assert pool.alone(mine)
    their_job = pool.submit(lambda: "theirs", group=theirs)
    assert not pool.alone(mine)
    assert not pool.alone(theirs)
    pool.abandon(their_job)  # dropped while queued: no longer in the way
    assert pool.alone(mine)
    lone = pool.submit(lambda: "lone")
    assert not pool.alone(mine)
    done = settled(lone)
    gate.opened.set()
    assert [f.result(timeout=10) for f in (running, mine_queued, lone)] == ["gate", "mine", "lone"]
    assert done.wait(10)
    assert pool.alone(mine)
    assert pool.alone(theirs)
