"""Streaming transports of the local shim: `WS /ws/tts` (the streaming protocol) and `POST /tts/stream`.

`POST /tts/stream` takes the `/tts` body and answers with chunked `audio/wav` (a header of unknown length, then
PCM as sentences finish) or, with `Accept: audio/pcm`, raw 16-bit mono PCM, so `curl -N ... | aplay` plays at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketState

from tts_service.api.deps import EngineDep
from tts_service.api.tts import TtsRequest
from tts_service.engine import SpeechChunk
from tts_service.engine.audio import CHANNELS, SAMPLE_WIDTH, wav_header
from tts_service.streaming.driver import Incoming, StreamDriver

logger = logging.getLogger(__name__)

router = APIRouter(tags=["stream"])

PCM_TYPES = frozenset({"audio/pcm", "audio/l16", "audio/raw"})


def wants_pcm(accept: str | None) -> bool:
    """Raw PCM when the client names it before any WAV type in Accept; WAV otherwise."""
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in PCM_TYPES:
            return True
        if media.startswith("audio/wav") or media in ("audio/x-wav", "audio/wave", "audio/*"):
            return False
    return False


@router.post(
    "/tts/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"audio/wav": {}, "audio/pcm": {}}, "description": "Audio as it is made."}},
)
async def tts_stream(body: TtsRequest, request: Request, engine: EngineDep) -> StreamingResponse:
    """Synthesize speech and send each sentence as soon as it is ready (chunked transfer)."""
    req = engine.request(body.text, body)
    chunks = engine.stream(req)
    # Wait for the first chunk before answering, so "busy" or a synthesis failure is a proper error response
    # rather than a 200 cut short.
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await chunks.aclose()
        raise
    pcm_only = wants_pcm(request.headers.get("accept"))

    async def body_iter() -> AsyncIterator[bytes]:
        try:
            if not pcm_only:
                yield wav_header(req.voice.sample_rate, None)
            if first is not None:
                yield _bytes(first)
            async for chunk in chunks:
                yield _bytes(chunk)
        finally:
            # Client gone or done: closing the engine stream frees its worker after the chunk in progress.
            await chunks.aclose()

    headers = {
        "X-Voice": req.voice.id,
        "X-Sample-Rate": str(req.voice.sample_rate),
        "X-Sample-Width": str(SAMPLE_WIDTH),
        "X-Channels": str(CHANNELS),
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    }
    media_type = f"audio/pcm;rate={req.voice.sample_rate};channels=1;bits=16" if pcm_only else "audio/wav"
    return StreamingResponse(body_iter(), media_type=media_type, headers=headers)


def _bytes(chunk: SpeechChunk) -> bytes:
    return chunk.pcm.astype("<i2", copy=False).tobytes()


class _WebSocketTransport:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send_text(self, data: str) -> None:
        await self.ws.send_text(data)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)


@router.websocket("/ws/tts")
async def ws_tts(ws: WebSocket, engine: EngineDep) -> None:
    """The streaming protocol (see README, 'Streaming'): JSON messages in; start, audio, end or error out."""
    await ws.accept()
    driver = StreamDriver(engine, _WebSocketTransport(ws))

    async def receive() -> Incoming:
        try:
            message = await ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        if message.get("text") is not None:
            text: str = message["text"]
            return text
        data: bytes = message.get("bytes") or b""
        return data

    await driver.run(receive)
    if ws.client_state == WebSocketState.CONNECTED:
        # The client closed first in the usual case; closing an already closed socket is not an error.
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close()
