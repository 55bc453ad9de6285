"""The bounded set of threads that run synthesis, so the event loop never blocks and load never queues forever."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from tts_service.errors import ServiceBusy
from tts_service.observability import Metrics

T = TypeVar("T")


class WorkerPool:
    """`workers` threads; at most `workers + queue_size` jobs admitted at once, the next refused at once."""

    def __init__(self, workers: int, queue_size: int, metrics: Metrics | None = None) -> None:
        self.workers = workers
        self.metrics = metrics
        self.capacity = workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synth")
        self._admitted = 0
        self._orphans = 0
        """Calls whose caller gave up (timeout, disconnect) but which still run on a worker."""
        self._lock = threading.Lock()

    @property
    def admitted(self) -> int:
        """Places taken: admitted jobs plus abandoned calls still occupying a worker."""
        return self._admitted + self._orphans

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for one job (a whole synthesis or a whole stream); ServiceBusy when full."""
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

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run a blocking call on a worker thread, in a copy of the caller's context (its request id for logs)."""
        context = contextvars.copy_context()
        future = self._executor.submit(context.run, fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # A call already running cannot be cancelled: it keeps its worker until it returns, so it keeps
            # its place too, or a burst of timeouts would let more work in than there are workers for.
            if not future.done():
                with self._lock:
                    self._orphans += 1
                future.add_done_callback(self._orphan_done)
            raise

    def _orphan_done(self, _: Future[Any]) -> None:
        with self._lock:
            self._orphans -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
