"""OpenAI-compatible routes: `POST /v1/audio/speech`, `GET /v1/models` (+ `/v1/models/{id}`), `GET /v1/audio/voices`.

Point OpenAI's SDKs at this server (`base_url=".../v1"`) and `client.audio.speech.create(...)` speaks with Piper:

- `model`: `tts-1`, `tts-1-hd` and `gpt-4o-mini-tts` (and its dated snapshots) all run the requested Piper voice;
  the name changes nothing, as quality is a property of the voice (its `quality`). One of our voice ids as `model`
  picks that voice whatever OpenAI name `voice` gives (the SDK insists on one).
- `voice`: one of our voice ids, or an OpenAI voice name (`alloy`, ...) mapped in the voice map's `openai_voices`;
  `{"id": ...}` works as well.
- `response_format`: mp3 (default), opus, aac, flac, wav, pcm (24 kHz, as OpenAI's), and our mulaw and alaw;
  `sample_rate` (ours) picks 8000/16000/... for pcm and wav.
- `speed` 0.25 to 4.0; `instructions` is accepted and ignored (Piper voices take no style prompts).
- `stream_format`: `audio` streams the bytes as they are encoded, `sse` sends `speech.audio.delta` events (base64
  audio) and a final `speech.audio.done` with `usage`. Behind API Gateway (buffered) both come whole, within
  Lambda's 6 MB.

Errors take OpenAI's shape (see `tts_service.responses.error_response`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Final, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tts_service.api.delivery import (
    AudioStreamingResponse,
    check_buffered_estimate,
    check_buffered_size,
    encoded,
    is_buffered,
    start_stream,
)
from tts_service.api.deps import EngineDep
from tts_service.audio import AUDIO_MEDIA_TYPES, Encoder, encode_whole, new_encoder
from tts_service.audio.formats import OPENAI_PCM_RATE
from tts_service.engine import Engine, SpeechOptions, SpeechRequest
from tts_service.engine.options import SPEED_MAX, SPEED_MIN, SpeechText
from tts_service.engine.registry import VoiceRegistry
from tts_service.errors import ModelNotFound, ValidationFailed, VoiceNotFound
from tts_service.observability import tracing
from tts_service.observability.liveness import tracked

router = APIRouter(prefix="/v1", tags=["openai"])

OPENAI_MODELS: Final = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")
MAX_INPUT_CHARS: Final = 4096
OWNER: Final = "tts-service"
SSE_BUFFERED_DELTA_BYTES: Final = 16 * 1024
"""Audio per `speech.audio.delta` when the whole answer is made at once (Lambda); streamed, one per chunk."""
USAGE_FRAME_MS: Final = 20
"""Piper has no tokens: `usage` counts input characters, and output in 20 ms frames of audio."""
TOO_LARGE_ADVICE = (
    "use a compressed response_format (mp3, opus or aac), send less input, or stream it from the local server"
)


class VoiceRef(BaseModel):
    """`{"id": "..."}`: the SDK's custom-voice form."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)


class SpeechBody(BaseModel):
    """Body of POST /v1/audio/speech: OpenAI's fields, plus `sample_rate` for pcm/wav/mulaw/alaw."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=200)
    input: SpeechText = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    voice: str | VoiceRef = Field(union_mode="left_to_right")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm", "mulaw", "alaw"] = "mp3"
    speed: float = Field(1.0, ge=SPEED_MIN, le=SPEED_MAX)
    instructions: str | None = Field(None, description="Accepted and ignored: Piper voices take no style prompts.")
    stream_format: Literal["audio", "sse"] = "audio"
    sample_rate: int | None = None


def resolve_voice(registry: VoiceRegistry, model: str, voice: str | VoiceRef) -> str:
    """The registered voice a request speaks with (see the module docstring for the order)."""
    name = voice if isinstance(voice, str) else voice.id
    if model not in OPENAI_MODELS and model not in registry.voices:
        models = ", ".join([*OPENAI_MODELS, *sorted(registry.voices)])
        raise ModelNotFound(f"model {model!r} does not exist here; models: {models}", param="model")
    if name in registry.voices:
        return name
    if model in registry.voices:
        return model
    mapped = registry.openai_voices.get(name.lower())
    if mapped is not None:
        return mapped
    known = ", ".join([*sorted(registry.openai_voices), *sorted(registry.voices)])
    raise VoiceNotFound(f"voice {name!r} is not available; voices: {known}", param="voice")


def _speech_request_text(engine: Engine, text: str) -> str:
    clean = text.strip()
    if not clean:
        raise ValidationFailed("input is empty", fields=["input"])
    limit = engine.settings.max_text_chars
    if len(clean) > limit:
        raise ValidationFailed(f"input is {len(clean)} characters; this server's limit is {limit}", fields=["input"])
    return clean


@router.post(
    "/audio/speech",
    response_class=Response,
    responses={
        200: {
            "content": {media: {} for media in (*AUDIO_MEDIA_TYPES, "text/event-stream")},
            "description": "Audio, or SSE events",
        }
    },
)
async def speech(body: SpeechBody, request: Request, engine: EngineDep) -> Response:
    """OpenAI's text to speech."""
    voice_id = resolve_voice(engine.registry, body.model, body.voice)
    req = engine.request(_speech_request_text(engine, body.input), SpeechOptions(voice=voice_id, speed=body.speed))
    headers = {"X-Voice": req.voice.id, "Cache-Control": "no-store"}
    if is_buffered(request):
        return await _whole(engine, req, body, headers)
    # flac is the one format whose header needs the length: it is encoded as chunks come and sent when complete.
    fmt = body.response_format
    encoder = new_encoder(fmt, req.voice.sample_rate, body.sample_rate, pcm_rate=OPENAI_PCM_RATE, whole=fmt == "flac")
    chunks = await start_stream(engine, req)
    headers |= {"X-Sample-Rate": str(encoder.sample_rate), "X-Accel-Buffering": "no"}
    if body.stream_format == "sse":
        events = _sse(encoded(chunks, encoder), req.text, encoder)
        return AudioStreamingResponse(events, media_type="text/event-stream", headers=headers)
    return AudioStreamingResponse(encoded(chunks, encoder), media_type=encoder.media_type, headers=headers)


async def _whole(engine: Engine, req: SpeechRequest, body: SpeechBody, headers: dict[str, str]) -> Response:
    """The whole answer at once, for a buffered response (Lambda), refused when it would not fit."""
    fmt = body.response_format
    # A bad rate, or an answer that cannot fit, is refused before synthesis is paid for.
    check_buffered_estimate(req, fmt, body.sample_rate, advice=TOO_LARGE_ADVICE, pcm_rate=OPENAI_PCM_RATE)
    with tracked(engine, req):
        result = await engine.synthesize(req)
    with tracing.span("tts.encode", {"tts.format": fmt}):
        data, encoder = await asyncio.to_thread(
            encode_whole, result.pcm, result.sample_rate, fmt, body.sample_rate, pcm_rate=OPENAI_PCM_RATE
        )
    headers = headers | {"X-Sample-Rate": str(encoder.sample_rate), "X-Audio-Duration-Ms": str(result.duration_ms)}
    if body.stream_format == "sse":
        step = SSE_BUFFERED_DELTA_BYTES
        events = b"".join([*(_delta(data[i : i + step]) for i in range(0, len(data), step)), _done(req.text, encoder)])
        check_buffered_size(len(events), binary=False, advice=TOO_LARGE_ADVICE)
        return Response(events, media_type="text/event-stream", headers=headers)
    check_buffered_size(len(data), binary=True, advice=TOO_LARGE_ADVICE)
    return Response(data, media_type=encoder.media_type, headers=headers)


async def _sse(pieces: AsyncGenerator[bytes, None], text: str, encoder: Encoder) -> AsyncIterator[bytes]:
    async with aclosing(pieces):
        async for piece in pieces:
            yield _delta(piece)
    yield _done(text, encoder)


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _delta(audio: bytes) -> bytes:
    return _event({"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode("ascii")})


def _done(text: str, encoder: Encoder) -> bytes:
    output = math.ceil(encoder.duration_ms / USAGE_FRAME_MS)
    usage = {"input_tokens": len(text), "output_tokens": output, "total_tokens": len(text) + output}
    return _event({"type": "speech.audio.done", "usage": usage})


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": OWNER}


@router.get("/models")
async def list_models(engine: EngineDep) -> dict[str, Any]:
    """OpenAI's model names, then our voice ids (each usable as `model`)."""
    return {"object": "list", "data": [_model(m) for m in [*OPENAI_MODELS, *sorted(engine.registry.voices)]]}


@router.get("/models/{model_id}")
async def get_model(model_id: str, engine: EngineDep) -> dict[str, Any]:
    if model_id not in OPENAI_MODELS and model_id not in engine.registry.voices:
        raise ModelNotFound(f"model {model_id!r} does not exist here", param="model")
    return _model(model_id)


@router.get("/audio/voices")
async def list_voices(engine: EngineDep) -> dict[str, Any]:
    """Every name `voice` takes: OpenAI's names with the voice each maps to, then our own voices."""
    registry = engine.registry
    data = [
        _voice(name, registry.voices[voice_id].display_name, registry.voices[voice_id].language, voice_id)
        for name, voice_id in sorted(registry.openai_voices.items())
    ]
    data += [_voice(vid, v.display_name, v.language, vid) for vid, v in sorted(registry.voices.items())]
    return {"object": "list", "data": data}


def _voice(name: str, display: str | None, language: str, voice_id: str) -> dict[str, Any]:
    return {"id": name, "object": "voice", "name": display or name, "language": language, "voice": voice_id}
