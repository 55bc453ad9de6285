"""Warm-up at start: the default voice and every voice of WARM_VOICES loaded and spoken once.

The engine warms its default voice itself; the others are warmed here through its public API (a short synthesis,
or a short stream where streams are served, which also splits the voice for chunked decoding), so the first real
request for any of them is not a cold one. Readiness (`GET /healthz`) waits for all of them.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Final

from tts_service.engine.options import SpeechOptions
from tts_service.engine.synth import Engine
from tts_service.errors import VoiceNotFound

logger = logging.getLogger(__name__)

WARM_TEXT: Final = "Warming up."

_WARMED: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()


def pending(engine: Engine) -> list[str]:
    """WARM_VOICES ids not warmed yet (the default voice is the engine's own `ready()`)."""
    done = _WARMED.get(engine, set())
    return [v for v in engine.settings.warm_voice_ids if v != engine.registry.default_voice and v not in done]


async def warm_voices(engine: Engine, *, stream: bool = True) -> None:
    """Warm each pending voice of WARM_VOICES; VoiceNotFound names an id the voice map does not have."""
    for voice_id in pending(engine):
        if voice_id not in engine.registry.voices:
            raise VoiceNotFound(f"WARM_VOICES names {voice_id!r}, which the voice map does not register")
        req = engine.request(WARM_TEXT, SpeechOptions(voice=voice_id))
        if stream:
            async for _ in engine.stream(req):
                pass
        else:
            await engine.synthesize(req)
        _WARMED.setdefault(engine, set()).add(voice_id)
        logger.info("voice warm", extra={"voice": voice_id})


async def warm(engine: Engine) -> None:
    """The default voice (with its streaming split), then WARM_VOICES: what the local server does at start."""
    await engine.warm()
    await warm_voices(engine)


def warm_blocking(engine: Engine) -> None:
    """`warm` for Lambda init, where no event loop runs and responses are not streamed."""
    engine.warm_blocking()
    if pending(engine):
        asyncio.run(warm_voices(engine, stream=False))


def ready(engine: Engine) -> bool:
    return engine.ready() and not pending(engine)
