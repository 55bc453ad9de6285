"""`POST /tts`: text in, speech out as JSON with base64 WAV (the upstream contract) or as raw WAV bytes."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tts_service.api.deps import EngineDep
from tts_service.engine import SpeechOptions
from tts_service.engine.audio import encode_wav, mel_spectrogram

router = APIRouter(tags=["tts"])

WAV_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"})


class TtsRequest(SpeechOptions):
    """Body of POST /tts."""

    text: str = Field(description="Text to speak: 1 to MAX_TEXT_CHARS characters after trimming.")
    include_spectrogram: bool = Field(False, description="Add an 80-band log-mel spectrogram for display.")


class TtsResponse(BaseModel):
    """JSON answer of POST /tts."""

    audio_base64: str = Field(description="A complete 16-bit mono WAV file, standard base64.")
    sample_rate: int
    duration_ms: int
    voice: str
    spectrogram: dict[str, Any] | None = None


def wants_wav(fmt: str | None, accept: str | None) -> bool:
    """`?format=` decides; otherwise the first of JSON or WAV named in Accept; JSON by default."""
    if fmt is not None:
        return fmt == "wav"
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in WAV_TYPES or media == "audio/*":
            return True
        if media in ("application/json", "application/*"):
            return False
    return False


@router.post(
    "/tts",
    response_model=TtsResponse,
    responses={200: {"content": {"audio/wav": {}}, "description": "JSON, or WAV with Accept: audio/wav"}},
)
async def tts(
    body: TtsRequest,
    request: Request,
    engine: EngineDep,
    format: Annotated[Literal["json", "wav"] | None, Query(description="Overrides the Accept header.")] = None,
) -> Response:
    """Synthesize speech."""
    speech = await engine.synthesize(engine.request(body.text, body))
    wav = encode_wav(speech.pcm, speech.sample_rate)
    headers = {"X-Voice": speech.voice_id, "X-Audio-Duration-Ms": str(speech.duration_ms)}
    if wants_wav(format, request.headers.get("accept")):
        return Response(wav, media_type="audio/wav", headers=headers)
    payload = TtsResponse(
        audio_base64=base64.b64encode(wav).decode("ascii"),
        sample_rate=speech.sample_rate,
        duration_ms=speech.duration_ms,
        voice=speech.voice_id,
        spectrogram=mel_spectrogram(speech.pcm, speech.sample_rate) if body.include_spectrogram else None,
    )
    return JSONResponse(payload.model_dump(exclude_none=True), headers=headers)
