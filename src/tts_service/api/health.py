"""`GET /health` (liveness: the process answers and its engine can still speak) and `GET /healthz` (readiness: the
default voice and WARM_VOICES speak)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter

from tts_service.api.deps import EngineDep
from tts_service.engine import warm
from tts_service.errors import EngineUnhealthy, ServiceError, ServiceUnavailable
from tts_service.observability.liveness import get_liveness, observe_failure

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)

READINESS_WAIT_SECS = 20.0


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: answers while the event loop runs, unless real work showed the engine cannot speak any more (its
    default voice will not load, or syntheses keep failing): then 503, so the orchestrator restarts the process.
    Cheap: it reads what requests recorded and never synthesizes."""
    problem = get_liveness().problem()
    if problem is not None:
        raise EngineUnhealthy(f"restart needed: {problem}")
    return {"status": "ok"}


@router.get("/healthz")
async def healthz(engine: EngineDep) -> dict[str, object]:
    """Readiness: the default voice and those of WARM_VOICES have loaded and synthesized; warms them (bounded wait)."""
    if not warm.ready(engine):
        try:
            async with asyncio.timeout(READINESS_WAIT_SECS):
                if not engine.ready():
                    await engine.warm()
                await warm.warm_voices(engine)
        except (ServiceError, TimeoutError) as exc:
            if not engine.ready():  # the default voice's own failure, not one of WARM_VOICES
                observe_failure(engine, engine.registry.default_voice, exc)
            reason = exc.message if isinstance(exc, ServiceError) else "voices are still loading"
            raise ServiceUnavailable(f"not ready: {reason}", headers={"Retry-After": "5"}) from None
    return {
        "status": "ready",
        "default_voice": engine.registry.default_voice,
        "warm_voices": engine.settings.warm_voice_ids,
        "voices_loaded": engine.voice_cache.loaded_ids(),
    }
