"""Streaming transports of the local shim: `WS /ws/tts` (the streaming protocol) and `POST /tts/stream`.

`POST /tts/stream` takes the `/tts` body and answers with chunked audio as sentences finish: `audio/wav` by default
(a header of unknown length, then PCM), or the body's `format` / the first format Accept names: raw 16-bit mono PCM
(`Accept: audio/pcm`, at the voice's rate unless `sample_rate` says otherwise), mp3, opus (Ogg), aac (ADTS),
mulaw, alaw, each encoded chunk by chunk, so `curl -N ... | aplay` (or `| mpv -`) plays at once. flac is sent
when complete: its header carries the length.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketState

from tts_service.api.delivery import AudioStreamingResponse, encoded, start_stream
from tts_service.api.deps import ChargeDep, EngineDep
from tts_service.api.sockets import frames
from tts_service.api.tts import ResponseFormat, TtsRequest
from tts_service.audio import AUDIO_MEDIA_TYPES, AudioFormat, format_from_accept, new_encoder
from tts_service.engine.audio import CHANNELS, SAMPLE_WIDTH
from tts_service.errors import ValidationFailed
from tts_service.middleware.drain import BUSY_STATE
from tts_service.streaming.driver import StreamDriver

logger = logging.getLogger(__name__)

router = APIRouter(tags=["stream"])


def stream_format(body: ResponseFormat | None, accept: str | None) -> AudioFormat:
    """The body's `format`, else the first audio format Accept names, else WAV; JSON cannot stream."""
    fmt = body or format_from_accept(accept) or "wav"
    if fmt == "json":
        if body is None:
            return "wav"  # `Accept: application/json, audio/*` from a generic client: it still gets audio
        raise ValidationFailed("format json cannot stream; use POST /tts, or an audio format", fields=["format"])
    if fmt == "srt" or fmt == "vtt":
        raise ValidationFailed(f"format {fmt} is subtitles; ask POST /tts for them", fields=["format"])
    return fmt


@router.post(
    "/tts/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {media: {} for media in AUDIO_MEDIA_TYPES},
            "description": "Audio as it is made.",
        }
    },
)
async def tts_stream(body: TtsRequest, request: Request, engine: EngineDep) -> StreamingResponse:
    """Synthesize speech and send each piece as soon as it is ready and encoded (chunked transfer)."""
    fmt = stream_format(body.format, request.headers.get("accept"))
    req = engine.request(body.text, body)
    encoder = new_encoder(fmt, req.voice.sample_rate, body.sample_rate, whole=fmt == "flac")
    chunks = await start_stream(engine, req)
    headers = {
        "X-Voice": req.voice.id,
        "X-Sample-Rate": str(encoder.sample_rate),
        "X-Sample-Width": str(SAMPLE_WIDTH),
        "X-Channels": str(CHANNELS),
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    }
    return AudioStreamingResponse(encoded(chunks, encoder), media_type=encoder.media_type, headers=headers)


class _WebSocketTransport:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send_text(self, data: str) -> None:
        await self.ws.send_text(data)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)


@router.websocket("/ws/tts")
async def ws_tts(ws: WebSocket, engine: EngineDep, charge: ChargeDep) -> None:
    """The streaming protocol (docs/api.md, "Streaming"): JSON messages in; start, audio, end or error out.

    Each `speak` and `start` is charged to the client's rate budget; a spent budget is an `error` event.
    """
    await ws.accept()
    driver = StreamDriver(engine, _WebSocketTransport(ws), charge=charge)
    ws.scope.setdefault("state", {})[BUSY_STATE] = lambda: driver.stream is not None  # a drain lets it finish

    await driver.run(frames(ws))
    if ws.client_state == WebSocketState.CONNECTED:
        # The client closed first in the usual case; closing an already closed socket is not an error.
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close()
