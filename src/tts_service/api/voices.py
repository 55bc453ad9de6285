"""`GET /voices` and `GET /voices/detail`: what can speak, read from the voice map without loading models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tts_service.api.deps import EngineDep
from tts_service.engine.registry import VoiceEntry
from tts_service.errors import VoiceUnavailable

router = APIRouter(tags=["voices"])


@router.get("/voices")
async def list_voices(engine: EngineDep) -> dict[str, list[str]]:
    """Language code -> voice ids, the language's default voice first."""
    return engine.registry.languages


@router.get("/voices/detail")
async def voice_detail(engine: EngineDep) -> list[dict[str, Any]]:
    """Every registered voice with its metadata and whether it is loaded now."""
    loaded = set(engine.voice_cache.loaded_ids())
    registry = engine.registry
    return [
        _describe(entry, entry.id in loaded, entry.id == registry.default_voice) for entry in registry.voices.values()
    ]


def _describe(entry: VoiceEntry, loaded: bool, default: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": entry.id,
        "key": f"{entry.language}:{entry.id}",
        "language": entry.language,
        "display_name": entry.display_name,
        "quality": entry.quality,
        "gender": entry.gender,
        "default": default,
        "loaded": loaded,
    }
    try:
        info.update(sample_rate=entry.sample_rate, num_speakers=entry.num_speakers, speakers=entry.speakers)
        info["available"] = entry.model.path.is_file()
    except VoiceUnavailable as exc:
        info.update(sample_rate=None, num_speakers=None, speakers={}, available=False, problem=exc.message)
    return info
