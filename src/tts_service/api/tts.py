"""`POST /tts`: text in, speech out as JSON with base64 WAV (the upstream contract) or as raw audio bytes.

The answer's format is `?format=`, else the body's `format`, else the first format the Accept header names, else
JSON. Audio formats are those of `tts_service.audio` (wav, mp3, opus, aac, flac, pcm, mulaw, alaw).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from tts_service.api.delivery import check_buffered_estimate, check_buffered_size, is_buffered
from tts_service.api.deps import EngineDep, OwnerDep
from tts_service.audio import AUDIO_MEDIA_TYPES, AudioFormat, encode_whole, format_from_accept
from tts_service.engine import Speech, SpeechOptions, SpeechRequest
from tts_service.engine.audio import encode_wav, mel_spectrogram
from tts_service.engine.options import SpeechText
from tts_service.engine.subtitles import SUBTITLE_MEDIA_TYPES, ms, render_subtitles, subtitle_cues
from tts_service.observability import tracing
from tts_service.observability.liveness import tracked
from tts_service.observability.samples import get_sample_store

router = APIRouter(tags=["tts"])
logger = logging.getLogger(__name__)

ResponseFormat = Literal["json", "mp3", "opus", "aac", "flac", "wav", "pcm", "mulaw", "alaw", "srt", "vtt"]
"""`json` (base64 WAV inside JSON), one of `tts_service.audio.FORMATS`, or subtitles of the speech (srt, vtt)."""

TOO_LARGE_ADVICE = (
    "ask for a compressed format (format mp3, opus or aac), send less text, or stream it "
    "(POST /tts/stream on the local server, or the WebSocket API)"
)


class TtsRequest(SpeechOptions):
    """Body of POST /tts (and POST /tts/stream)."""

    text: SpeechText = Field(description="Text to speak: 1 to MAX_TEXT_CHARS characters after trimming.")
    include_spectrogram: bool = Field(False, description="Add an 80-band log-mel spectrogram for display.")
    format: ResponseFormat | None = Field(
        None, description="Answer format: JSON with base64 WAV, or raw bytes of an audio format (docs/api.md, Formats)."
    )
    sample_rate: int | None = Field(
        None, description="pcm and wav: 8000, 16000, 22050, 24000, 44100 or 48000 Hz; mulaw and alaw: 8000."
    )
    timestamps: Literal["none", "word"] = Field(
        "none", description="`word`: add `words`, when each word of the text is spoken (from Piper's durations)."
    )


class WordOut(BaseModel):
    """One spoken word and when it sounds, in milliseconds from the start of the audio."""

    word: str
    start_ms: int
    end_ms: int


class TtsResponse(BaseModel):
    """JSON answer of POST /tts."""

    audio_base64: str = Field(description="A complete 16-bit mono WAV file, standard base64.")
    sample_rate: int
    duration_ms: int
    voice: str
    spectrogram: dict[str, Any] | None = None
    words: list[WordOut] | None = None


def answer_format(query: ResponseFormat | None, body: ResponseFormat | None, accept: str | None) -> ResponseFormat:
    """`?format=` decides, then the body's `format`, then the first format named in Accept; JSON by default."""
    return query or body or format_from_accept(accept) or "json"


@router.post(
    "/tts",
    response_model=TtsResponse,
    responses={
        200: {
            "content": {media: {} for media in (*AUDIO_MEDIA_TYPES, *SUBTITLE_MEDIA_TYPES.values())},
            "description": "JSON, audio bytes with `format` or an audio Accept type, or subtitles (srt, vtt)",
        }
    },
)
async def tts(
    body: TtsRequest,
    request: Request,
    engine: EngineDep,
    owner: OwnerDep,
    format: Annotated[ResponseFormat | None, Query(description="Overrides the body and the Accept header.")] = None,
) -> Response:
    """Synthesize speech."""
    fmt = answer_format(format, body.format, request.headers.get("accept"))
    req = engine.request(body.text, body)
    if fmt == "srt" or fmt == "vtt":
        with tracked(engine, req):
            speech = await engine.synthesize(req)
        cues = subtitle_cues(speech.words, speech.sample_rate)
        return Response(render_subtitles(cues, fmt), media_type=f"{SUBTITLE_MEDIA_TYPES[fmt]}; charset=utf-8")
    audio_format: AudioFormat = "wav" if fmt == "json" else fmt
    if is_buffered(request):
        check_buffered_estimate(req, audio_format, body.sample_rate, advice=TOO_LARGE_ADVICE)
    with tracked(engine, req) as span:
        speech = await engine.synthesize(req)
        tracing.set_attributes(span, {"tts.audio_ms": speech.duration_ms, "tts.chunks": speech.chunks})
    with tracing.span("tts.encode", {"tts.format": audio_format}) as span:
        data, encoder = await asyncio.to_thread(
            encode_whole, speech.pcm, speech.sample_rate, audio_format, body.sample_rate
        )
        tracing.set_attributes(span, {"tts.bytes": len(data)})
    headers = {
        "X-Voice": speech.voice_id,
        "X-Audio-Duration-Ms": str(speech.duration_ms),
        "X-Sample-Rate": str(encoder.sample_rate),
    }
    # DEBUG_SAMPLES: kept on disk after the answer has gone (a background task), never before it.
    sample = _sample_task(request, owner, req, speech, audio_format)
    if fmt != "json":
        if is_buffered(request):
            check_buffered_size(len(data), binary=True, advice=TOO_LARGE_ADVICE)
        return Response(data, media_type=encoder.media_type, headers=headers, background=sample)
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
        words=[
            WordOut(word=w.word, start_ms=ms(w.start, speech.sample_rate), end_ms=ms(w.end, speech.sample_rate))
            for w in speech.words
        ]
        if body.timestamps == "word"
        else None,
    )
    response = JSONResponse(payload.model_dump(exclude_none=True), headers=headers, background=sample)
    if is_buffered(request):
        check_buffered_size(len(response.body), binary=False, advice=TOO_LARGE_ADVICE)
    return response


def _sample_task(
    request: Request, owner: str, req: SpeechRequest, speech: Speech, fmt: AudioFormat
) -> BackgroundTask | None:
    store = get_sample_store()
    if store is None:
        return None
    details = {
        "voice": speech.voice_id,
        "answer_format": fmt,
        "duration_ms": speech.duration_ms,
        "synthesis_ms": round(speech.synthesis_seconds * 1000, 1),
        "options": {
            "speaker_id": req.speaker_id,
            "length_scale": req.length_scale,
            "noise_scale": req.noise_scale,
            "noise_w": req.noise_w,
            "volume": req.volume,
            "sentence_silence": req.sentence_silence,
        },
        "request_id": request.scope.get("state", {}).get("request_id"),
        "trace_id": (tracing.current_ids() or (None, None))[0],
    }

    def keep() -> None:
        try:
            store.record(owner, req.text, encode_wav(speech.pcm, speech.sample_rate), details)
        except OSError as exc:  # a full or read-only disk must not fail the request that already succeeded
            logger.warning("debug sample not kept", extra={"error_type": type(exc).__name__})

    return BackgroundTask(asyncio.to_thread, keep)
