"""The synthesis workers: one thread per session pair, admission with a bounded queue, and request conductors.

The design, measured on 2 cores (in-process, 5 interleaved rounds, paired; `make bench` repeats it over HTTP
against Piper's own server, docs/performance.md): each worker owns single-threaded onnxruntime sessions, and a
request's pieces (sentences, or parts of over-long ones) are spread over the workers with a small look-ahead, in
order; a piece's decoder windows are spread too when a worker would otherwise idle.

| per-worker sessions | paragraph, 1 client | one 40-word sentence | 4 clients, audio-s/s | stream first audio |
| --- | --- | --- | --- | --- |
| 1 thread (chosen) | 1.13 s | 1.43 s on one worker (see below) | 21.5 | 0.13 s (0.09 s, head sessions) |
| 2 threads, spinning off | 1.26 s | 0.81 s | 20.0 | 0.09 s |
| 2 threads, spinning on | 1.87 s | 0.82 s | 13.3 | 0.12 s |

One request alone thus uses every core with no intra-op synchronisation, and under load every core runs one piece
at a time, the machine's throughput ceiling. What single-threaded sessions lose, a lone long sentence and a
stream's first audio, is won back by the head sessions (all cores, spinning off): they make a stream's first
window, and run a request of one piece alone on an idle machine (a 40-word sentence then takes 1.04x raw stock
Piper's time, docs/performance.md from `make bench`); a piece's windows also spread over idle workers.
The old design, one shared multi-threaded session with spinning, was the best for one short sentence and the
worst under concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from tts_service.errors import ServiceBusy
from tts_service.observability import Metrics

T = TypeVar("T")

_worker = threading.local()


def current_worker() -> int:
    """The index of the synthesis worker running this code (0 outside the pool: callers on their own thread)."""
    return int(getattr(_worker, "index", 0))


class WorkerPool:
    """`workers` threads; at most `workers + queue_size` requests admitted at once, the next refused at once."""

    def __init__(self, workers: int, queue_size: int, metrics: Metrics | None = None) -> None:
        self.workers = workers
        self.metrics = metrics
        self.capacity = workers + queue_size
        counter = itertools.count()
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="synth", initializer=self._name_worker, initargs=(counter,)
        )
        # Conductors phonemize and hand pieces to the workers; they wait far more than they compute.
        self._conductors = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="conduct")
        self._admitted = 0
        self._orphans = 0
        """Jobs whose caller gave up (timeout, disconnect) but which still run on a worker."""
        self._lock = threading.Lock()
        self._generation = 0
        self._jobs = 0
        """Jobs queued or running."""
        self.idle_delay = 1.0
        """Seconds of no admitted request before `on_idle` runs."""

    @staticmethod
    def _name_worker(counter: Iterator[int]) -> None:
        _worker.index = next(counter)

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

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """Queue a blocking call for a worker, in a copy of the caller's context (its request id for logs)."""
        context = contextvars.copy_context()
        with self._lock:
            self._jobs += 1
        future = self._executor.submit(context.run, fn, *args)
        future.add_done_callback(self._job_done)
        return future

    def _job_done(self, _: Future[Any]) -> None:
        with self._lock:
            self._jobs -= 1

    @property
    def idle_workers(self) -> int:
        """Workers with nothing to do right now (queued jobs count as work): a hint for splitting a job."""
        return max(0, self.workers - self._jobs)

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
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._conductors.shutdown(wait=False, cancel_futures=True)
