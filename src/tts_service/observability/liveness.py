"""What liveness (`GET /health`) knows about the engine, learnt from real work, never from a probe's synthesis.

The process is alive while its event loop answers, unless the engine has shown it can no longer speak:

- its default voice could not be loaded (missing or corrupt files, an onnxruntime that cannot open it): every
  request without a `voice` fails, and a restart is the documented remedy (it reloads, or the orchestrator makes
  the failure visible as a crash loop);
- LIVENESS_MAX_SYNTH_FAILURES syntheses in a row failed on the server's side (SynthesisFailed or an unexpected
  exception: a poisoned lock, a broken session), with no success in between.

Client errors, a full queue (503 busy), other voices being unavailable, timeouts and cancellations say nothing
about the engine's health and are not counted. A success of the default voice clears both conditions.

Routes wrap their engine calls in `tracked(...)`, which also opens the synthesis span.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from tts_service.config import get_settings
from tts_service.errors import ServiceError, SynthesisFailed, VoiceUnavailable
from tts_service.observability import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from tts_service.engine import Engine, SpeechRequest

logger = logging.getLogger(__name__)


class Liveness:
    """Thread-safe record of the engine's recent failures; `problem()` is what fails liveness."""

    def __init__(self, max_failures: int = 3) -> None:
        self.max_failures = max_failures
        self._lock = threading.Lock()
        self._failures = 0
        self._default_voice_problem: str | None = None

    def succeeded(self, *, default_voice: bool) -> None:
        with self._lock:
            self._failures = 0
            if default_voice:
                self._default_voice_problem = None

    def failed(self, kind: str) -> None:
        with self._lock:
            self._failures += 1
            failures = self._failures
        if failures == self.max_failures:
            logger.error("synthesis keeps failing; liveness fails", extra={"failures": failures, "error_type": kind})

    def default_voice_unloadable(self, voice_id: str, code: str) -> None:
        with self._lock:
            first = self._default_voice_problem is None
            self._default_voice_problem = f"the default voice {voice_id} cannot be loaded ({code})"
        if first:
            logger.error("default voice unloadable; liveness fails", extra={"voice": voice_id, "error_code": code})

    def problem(self) -> str | None:
        """Why the process should be restarted, or None while it is healthy."""
        with self._lock:
            if self._default_voice_problem is not None:
                return self._default_voice_problem
            if self._failures >= self.max_failures:
                return f"{self._failures} syntheses failed in a row"
            return None


@lru_cache
def get_liveness() -> Liveness:
    """The process-wide record (the engine is process-wide too)."""
    return Liveness(get_settings().liveness_max_synth_failures)


def observe_failure(engine: Engine, voice_id: str, exc: BaseException, liveness: Liveness | None = None) -> None:
    """Count `exc`, raised while `voice_id` was synthesizing, if it says something about the engine's health."""
    liveness = liveness or get_liveness()
    if isinstance(exc, VoiceUnavailable):
        if voice_id == engine.registry.default_voice:
            liveness.default_voice_unloadable(voice_id, exc.code)
    elif isinstance(exc, SynthesisFailed):
        liveness.failed(exc.code)
    elif isinstance(exc, Exception) and not isinstance(exc, ServiceError):
        liveness.failed(type(exc).__name__)


@contextlib.contextmanager
def tracked(
    engine: Engine,
    req: SpeechRequest,
    name: str = "tts.synthesize",
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> Iterator[Span | None]:
    """A synthesis of `req`: a span named `name` (voice, text length, never the text) and its outcome counted for
    liveness. Exceptions of `ignore` (a client that left) count as neither success nor failure."""
    attributes: tracing.Attributes = {"tts.voice": req.voice.id, "tts.text_chars": len(req.text)}
    with tracing.span(name, attributes) as span:
        try:
            yield span
        except ignore:
            raise
        except BaseException as exc:
            observe_failure(engine, req.voice.id, exc)
            raise
        get_liveness().succeeded(default_voice=req.voice.id == engine.registry.default_voice)
