"""`GET /health` (liveness: the process answers) and `GET /healthz` (readiness: the default voice speaks)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter

from tts_service.api.deps import EngineDep
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
    """Readiness: the default voice is loaded and has synthesized; warms it (bounded wait) if not."""
    if not engine.ready():
        try:
            await asyncio.wait_for(engine.warm(), READINESS_WAIT_SECS)
        except (ServiceError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, ServiceError) else "default voice is still loading"
            raise ServiceUnavailable(f"not ready: {reason}", headers={"Retry-After": "5"}) from None
    return {
        "status": "ready",
        "default_voice": engine.registry.default_voice,
        "voices_loaded": engine.voices.loaded_ids(),
    }
