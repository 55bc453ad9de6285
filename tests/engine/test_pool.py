"""The worker pool: indexed workers, and the idle hook that gives the arenas back."""

from __future__ import annotations

import threading

from tts_service.engine.pool import WorkerPool, current_worker


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
