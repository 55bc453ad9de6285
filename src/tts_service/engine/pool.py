"""The synthesis workers: one thread per session pair, a scheduler over requests' jobs, bounded admission, conductors.

The design, measured on 2 cores (in-process, 5 interleaved rounds, paired; `make bench` repeats it over HTTP
against Piper's own server, docs/performance.md): each worker owns single-threaded onnxruntime sessions, and a
request's pieces (sentences, or parts of over-long ones) are spread over the workers with a look-ahead, in
order; a piece's decoder windows are spread too when a worker would otherwise idle.

| per-worker sessions | paragraph, 1 client | one 40-word sentence | 4 clients, audio-s/s | stream first audio |
| --- | --- | --- | --- | --- |
| 1 thread (chosen) | 1.13 s | 1.43 s on one worker (see below) | 21.5 | 0.13 s (0.09 s, head sessions) |
| 2 threads, spinning off | 1.26 s | 0.81 s | 20.0 | 0.09 s |
| 2 threads, spinning on | 1.87 s | 0.82 s | 13.3 | 0.12 s |

One request alone thus uses every core with no intra-op synchronisation, and under load every core runs one piece
at a time, the machine's throughput ceiling. What single-threaded sessions lose, a lone long sentence and a
stream's first audio, is won back by the head sessions (all cores, spinning within a run, taken only by a job
that has the machine to itself, `Synthesis._all_cores`): they make a stream's first
window, run a request of one piece alone on an idle machine (a 40-word sentence then takes 1.04x raw stock
Piper's time, docs/performance.md from `make bench`), and decode a lone request's last piece.
The old design, one shared multi-threaded session with spinning, was the best for one short sentence and the
worst under concurrency.

Jobs are not served in arrival order. Each request's jobs form a group taken in rank order (its pieces in order,
a piece's decoding before the next piece's frontend), and a free worker serves the group with the fewest jobs
running, then the one that waited longest. Served first come, first served with one piece per worker in flight,
a piece that finished before an earlier one left its worker idle until that one was done, and a later piece's
windows could take both workers while the first piece waited: a paragraph alone kept the 2 cores 71-94% busy.
With groups, ranks and two pieces per worker in flight, 94-97% (in-process traces of fresh 64-word paragraphs,
/proc CPU against wall time). Once a lone request has handed over all its pieces, the one that is at least the
rest of its work put together (its last, or a long sentence before a short one) is split over every worker, or
decoded on the head sessions when too short to split (`engine/pipeline.py`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import functools
import heapq
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tts_service.errors import ServiceBusy
from tts_service.observability import Metrics

T = TypeVar("T")

_worker = threading.local()


_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _finish_at_exit() -> None:
    """Let running jobs end before the interpreter goes: onnxruntime aborts the process if torn down mid-run."""
    for pool in list(_pools):
        pool.shutdown()
        for thread in pool._threads:
            thread.join(timeout=30)


def current_worker() -> int:
    """The index of the synthesis worker running this code (0 outside the pool: callers on their own thread)."""
    return int(getattr(_worker, "index", 0))


class Group:
    """One request's jobs: queued in rank order, and served in turn with other requests' groups."""

    __slots__ = ("heap", "last", "queued", "running")

    def __init__(self, last: int) -> None:
        self.heap: list[_Job] = []
        self.queued = 0
        """Jobs waiting (the heap may still hold cancelled ones)."""
        self.running = 0
        self.last = last
        """When this group last had a job started (or was made): the longer ago, the sooner its turn."""


@dataclass(order=True)
class _Job:
    rank: tuple[int, ...]
    seq: int
    future: Future[Any] = field(compare=False)
    call: Callable[[], Any] = field(compare=False)
    group: Group = field(compare=False)


class WorkerPool:
    """`workers` threads; at most `workers + queue_size` requests admitted at once, the next refused at once.

    Jobs are not served first come, first served. Each request's jobs form a group, taken in rank order (its
    pieces in order, a piece's decoding before the next piece's frontend), and a free worker serves the group
    with the fewest jobs running, then the one that waited longest. One request alone thus gets every worker,
    always on the piece it needs first; several share the workers in turn.
    """

    def __init__(self, workers: int, queue_size: int, metrics: Metrics | None = None) -> None:
        self.workers = workers
        self.metrics = metrics
        self.capacity = workers + queue_size
        # Conductors phonemize and hand pieces to the workers; they wait far more than they compute.
        self._conductors = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="conduct")
        self._admitted = 0
        self._orphans = 0
        """Jobs whose caller gave up (timeout, disconnect) but which still run on a worker."""
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._groups: dict[int, Group] = {}
        """Groups with jobs queued."""
        self._ticks = itertools.count()
        self._closed = False
        self._generation = 0
        self._jobs = 0
        """Jobs queued or running."""
        self.idle_delay = 1.0
        """Seconds of no admitted request before `on_idle` runs."""
        self._threads = [
            threading.Thread(target=self._serve, args=(index,), name=f"synth_{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()
        _pools.add(self)

    @property
    def admitted(self) -> int:
        """Places taken: admitted requests plus abandoned jobs still occupying a worker."""
        return self._admitted + self._orphans

    @contextmanager
    def admit(self, on_idle: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold a place for one request (a whole synthesis or a whole stream); ServiceBusy when full.

        `on_idle` is queued for a worker when the last admitted request leaves, `idle_delay` seconds later
        unless another request came in meanwhile.
        """
        with self._lock:
            if self._admitted + self._orphans >= self.capacity:
                if self.metrics is not None:
                    self.metrics.observe_rejected("busy")
                raise ServiceBusy(
                    "all synthesis workers are busy and the queue is full; retry shortly",
                    headers={"Retry-After": "1"},
                )
            self._admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1
                idle = self._admitted == 0
                self._generation += 1
                generation = self._generation
            if idle and on_idle is not None:
                timer = threading.Timer(self.idle_delay, self._when_idle, (generation, on_idle))
                timer.daemon = True
                timer.start()

    def _when_idle(self, generation: int, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._admitted or generation != self._generation:
                return  # work came in meanwhile: the next idle moment will do it
        with contextlib.suppress(RuntimeError):  # shut down meanwhile
            self.submit(fn)

    def group(self) -> Group:
        """A new group for one request's jobs."""
        with self._lock:
            return Group(next(self._ticks))

    def submit(
        self, fn: Callable[..., T], *args: object, group: Group | None = None, rank: tuple[int, ...] = ()
    ) -> Future[T]:
        """Queue a blocking call for a worker, in a copy of the caller's context (its request id for logs).

        Within `group`, lower ranks run first; a call without a group is a group of its own.
        """
        context = contextvars.copy_context()
        future: Future[T] = Future()
        with self._work:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            tick = next(self._ticks)
            owner = group if group is not None else Group(tick)
            heapq.heappush(owner.heap, _Job(rank, tick, future, functools.partial(context.run, fn, *args), owner))
            self._groups[id(owner)] = owner
            self._jobs += 1
            owner.queued += 1
            self._work.notify()
        future.add_done_callback(functools.partial(self._job_done, owner))
        return future

    def _job_done(self, owner: Group, future: Future[Any]) -> None:
        if future.cancelled():
            with self._lock:
                # Dropped before it started; its heap entry is skipped when reached.
                self._jobs -= 1
                owner.queued -= 1

    def _next(self) -> _Job | None:
        """The next job to start (under the lock): the least served group's lowest rank; None when shut down."""
        while True:
            if self._closed:
                return None
            best: Group | None = None
            for key, owner in list(self._groups.items()):
                while owner.heap and owner.heap[0].future.cancelled():
                    heapq.heappop(owner.heap)
                if not owner.heap:
                    del self._groups[key]
                elif best is None or (owner.running, owner.last) < (best.running, best.last):
                    best = owner
            if best is not None:
                job = heapq.heappop(best.heap)
                if not best.heap:
                    del self._groups[id(best)]
                if job.future.set_running_or_notify_cancel():
                    best.running += 1
                    best.last = next(self._ticks)
                    best.queued -= 1
                    return job
                continue
            self._work.wait()

    def _serve(self, index: int) -> None:
        _worker.index = index
        while True:
            with self._work:
                job = self._next()
            if job is None:
                return
            result: Any = None
            try:
                result = job.call()
            except BaseException as exc:  # delivered to whoever waits on the future, as an executor would
                self._finished(job)
                job.future.set_exception(exc)
            else:
                self._finished(job)
                job.future.set_result(result)
            del job, result  # no reference to a finished job's arrays while this worker waits

    def _finished(self, job: _Job) -> None:
        # Before the result is set: callbacks that queue the next jobs see this worker as free.
        with self._lock:
            job.group.running -= 1
            self._jobs -= 1

    @property
    def idle_workers(self) -> int:
        """Workers with nothing to do right now (queued jobs count as work): a hint for splitting a job."""
        return max(0, self.workers - self._jobs)

    @property
    def sole_job(self) -> bool:
        """Asked from a running job: whether it is the only job queued or running, so every other worker is free."""
        return self._jobs <= 1

    def alone(self, group: Group) -> bool:
        """Whether every job queued or running is of `group`: its workers are about to be free for it alone."""
        with self._lock:
            return self._jobs == group.queued + group.running

    def conduct(self, fn: Callable[[], None]) -> Future[None]:
        """Run a request's conductor on its own thread, in a copy of the caller's context."""
        context = contextvars.copy_context()
        return self._conductors.submit(context.run, fn)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run a blocking call on a worker thread and await it."""
        future = self.submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self.abandon(future)
            raise

    def abandon(self, future: Future[Any]) -> None:
        """A job whose caller left: if it is still queued it is dropped, if running it keeps its place until done.

        Without this, a burst of timeouts would let more work in than there are workers for.
        """
        if future.cancel() or future.done():
            return
        with self._lock:
            self._orphans += 1
        future.add_done_callback(self._orphan_done)

    def _orphan_done(self, _: Future[Any]) -> None:
        with self._lock:
            self._orphans -= 1

    def shutdown(self) -> None:
        with self._work:
            self._closed = True
            pending = [job for owner in self._groups.values() for job in owner.heap]
            self._groups.clear()
            self._work.notify_all()
        for job in pending:
            job.future.cancel()
        self._conductors.shutdown(wait=False, cancel_futures=True)
