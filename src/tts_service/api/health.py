"""`GET /health` (liveness: the process answers) and `GET /healthz` (readiness: the default voice and WARM_VOICES
speak)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter

from tts_service.api.deps import EngineDep
from tts_service.engine import warm
from tts_service.errors import ServiceError, ServiceUnavailable

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)

READINESS_WAIT_SECS = 20.0


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: answers as long as the event loop runs; never touches the engine."""
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
            reason = exc.message if isinstance(exc, ServiceError) else "voices are still loading"
            raise ServiceUnavailable(f"not ready: {reason}", headers={"Retry-After": "5"}) from None
    return {
        "status": "ready",
        "default_voice": engine.registry.default_voice,
        "warm_voices": engine.settings.warm_voice_ids,
        "voices_loaded": engine.voices.loaded_ids(),
    }
