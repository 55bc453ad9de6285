"""`POST /tts`: text in, speech out as JSON with base64 WAV (the upstream contract) or as raw audio bytes.

The answer's format is `?format=`, else the body's `format`, else the first format the Accept header names, else
JSON. Audio formats are those of `tts_service.audio` (wav, mp3, opus, aac, flac, pcm, mulaw, alaw).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tts_service.api.delivery import check_buffered_estimate, check_buffered_size, is_buffered
from tts_service.api.deps import EngineDep
from tts_service.audio import AUDIO_MEDIA_TYPES, AudioFormat, encode_whole, format_from_accept
from tts_service.engine import SpeechOptions
from tts_service.engine.audio import mel_spectrogram
from tts_service.engine.options import SpeechText

router = APIRouter(tags=["tts"])

ResponseFormat = Literal["json", "mp3", "opus", "aac", "flac", "wav", "pcm", "mulaw", "alaw"]
"""`json` (base64 WAV inside JSON) or one of `tts_service.audio.FORMATS`."""

TOO_LARGE_ADVICE = (
    "ask for a compressed format (format mp3, opus or aac), send less text, or stream it "
    "(POST /tts/stream on the local server, or the WebSocket API)"
)


class TtsRequest(SpeechOptions):
    """Body of POST /tts (and POST /tts/stream)."""

    text: SpeechText = Field(description="Text to speak: 1 to MAX_TEXT_CHARS characters after trimming.")
    include_spectrogram: bool = Field(False, description="Add an 80-band log-mel spectrogram for display.")
    format: ResponseFormat | None = Field(
        None, description="Answer format: JSON with base64 WAV, or raw bytes of an audio format (see README)."
    )
    sample_rate: int | None = Field(
        None, description="pcm and wav: 8000, 16000, 22050, 24000, 44100 or 48000 Hz; mulaw and alaw: 8000."
    )


class TtsResponse(BaseModel):
    """JSON answer of POST /tts."""

    audio_base64: str = Field(description="A complete 16-bit mono WAV file, standard base64.")
    sample_rate: int
    duration_ms: int
    voice: str
    spectrogram: dict[str, Any] | None = None


def answer_format(query: ResponseFormat | None, body: ResponseFormat | None, accept: str | None) -> ResponseFormat:
    """`?format=` decides, then the body's `format`, then the first format named in Accept; JSON by default."""
    return query or body or format_from_accept(accept) or "json"


@router.post(
    "/tts",
    response_model=TtsResponse,
    responses={
        200: {
            "content": {media: {} for media in AUDIO_MEDIA_TYPES},
            "description": "JSON, or audio bytes with `format` or an audio Accept type",
        }
    },
)
async def tts(
    body: TtsRequest,
    request: Request,
    engine: EngineDep,
    format: Annotated[ResponseFormat | None, Query(description="Overrides the body and the Accept header.")] = None,
) -> Response:
    """Synthesize speech."""
    fmt = answer_format(format, body.format, request.headers.get("accept"))
    audio_format: AudioFormat = "wav" if fmt == "json" else fmt
    req = engine.request(body.text, body)
    if is_buffered(request):
        check_buffered_estimate(req, audio_format, body.sample_rate, advice=TOO_LARGE_ADVICE)
    speech = await engine.synthesize(req)
    data, encoder = await asyncio.to_thread(
        encode_whole, speech.pcm, speech.sample_rate, audio_format, body.sample_rate
    )
    headers = {
        "X-Voice": speech.voice_id,
        "X-Audio-Duration-Ms": str(speech.duration_ms),
        "X-Sample-Rate": str(encoder.sample_rate),
    }
    if fmt != "json":
        if is_buffered(request):
            check_buffered_size(len(data), binary=True, advice=TOO_LARGE_ADVICE)
        return Response(data, media_type=encoder.media_type, headers=headers)
    spectrogram = None
    if body.include_spectrogram:
        # Seconds of numpy work on long audio: on a thread, or every connection would wait for it.
        spectrogram = await asyncio.to_thread(mel_spectrogram, speech.pcm, speech.sample_rate)
    payload = TtsResponse(
        audio_base64=base64.b64encode(data).decode("ascii"),
        sample_rate=encoder.sample_rate,
        duration_ms=speech.duration_ms,
        voice=speech.voice_id,
        spectrogram=spectrogram,
    )
    response = JSONResponse(payload.model_dump(exclude_none=True), headers=headers)
    if is_buffered(request):
        check_buffered_size(len(response.body), binary=False, advice=TOO_LARGE_ADVICE)
    return response
