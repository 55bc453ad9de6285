"""How routes hand audio to clients: streamed as the engine makes it, or whole within a buffered response's limit.

On the local server a response streams (chunked transfer): the engine's chunked decoding gives a first chunk
early, each chunk is encoded as it arrives and its bytes go out at once. Behind API Gateway, Mangum buffers the
whole body and Lambda returns at most 6 MB, base64 included; `tts_service.aws.handler.make_handler` marks such
apps (`app.state.buffered_responses`), and routes check the size there before answering.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tts_service.audio import AudioFormat, Encoder, output_rate
from tts_service.audio.formats import min_bytes_per_second
from tts_service.engine import Engine, SpeechChunk, SpeechRequest
from tts_service.engine.estimate import min_audio_seconds
from tts_service.errors import ResponseTooLarge, ValidationFailed
from tts_service.observability import tracing
from tts_service.observability.liveness import get_liveness, observe_failure

if TYPE_CHECKING:
    from opentelemetry.trace import Span

BUFFERED_RESPONSE_LIMIT: Final = 6 * 1024 * 1024
"""Lambda's synchronous response payload limit, which API Gateway's integration inherits."""
_ENVELOPE_BYTES: Final = 16 * 1024
"""The JSON around the body in Lambda's answer: status, headers, `isBase64Encoded`."""


def is_buffered(request: Request) -> bool:
    """True when this app's responses are collected whole before they leave (Mangum on Lambda)."""
    return bool(getattr(request.app.state, "buffered_responses", False))


def check_buffered_size(size: int, *, binary: bool, advice: str) -> None:
    """Refuse (413) a body that would not fit a buffered Lambda response; binary bodies travel as base64."""
    wire = 4 * math.ceil(size / 3) if binary else size
    if wire + _ENVELOPE_BYTES > BUFFERED_RESPONSE_LIMIT:
        limit_mb = f"{BUFFERED_RESPONSE_LIMIT / 2**20:.3g}"
        raise ResponseTooLarge(
            f"the answer would be {wire / 2**20:.1f} MB on the wire and a buffered response holds at most "
            f"{limit_mb} MB; {advice}",
            limit_bytes=BUFFERED_RESPONSE_LIMIT,
            size_bytes=wire,
        )


def check_buffered_estimate(
    req: SpeechRequest, fmt: AudioFormat, sample_rate: int | None, *, advice: str, pcm_rate: int | None = None
) -> None:
    """Refuse (413) before synthesis an answer that cannot fit a buffered response even at the fastest speech.

    `min_audio_seconds` is a floor, so nothing refused here could have fitted; what passes is still checked once
    encoded (`check_buffered_size`). Variable-rate codecs have no floor on their size and are not refused here.
    """
    rate = output_rate(fmt, req.voice.sample_rate, sample_rate, pcm_rate)
    least = min_bytes_per_second(fmt, rate) * min_audio_seconds(req)
    wire = 4 * math.ceil(least / 3)
    if wire + _ENVELOPE_BYTES > BUFFERED_RESPONSE_LIMIT:
        limit_mb = f"{BUFFERED_RESPONSE_LIMIT / 2**20:.3g}"
        raise ResponseTooLarge(
            f"this speech would take at least {wire / 2**20:.1f} MB on the wire and a buffered response holds at "
            f"most {limit_mb} MB, so it was not synthesized; {advice}",
            limit_bytes=BUFFERED_RESPONSE_LIMIT,
            size_bytes=int(wire),
        )


def buffered_audio_budget(text_bytes: int) -> int:
    """Bytes of audio a buffered JSON answer can carry as base64 besides `text_bytes` of other JSON."""
    return max(0, (BUFFERED_RESPONSE_LIMIT - _ENVELOPE_BYTES - text_bytes) * 3 // 4)


class AudioStreamingResponse(StreamingResponse):
    """A streamed answer whose body is closed however the response ends (done, client gone, client too slow), so
    its synthesis stops and its admission is freed at once rather than whenever the iterator is collected."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


@dataclass
class AudioChunks:
    """A stream whose first chunk is made: the rest to come, and its span (ended with the stream)."""

    first: SpeechChunk
    rest: AsyncGenerator[SpeechChunk, None]
    engine: Engine
    req: SpeechRequest
    span: Span | None = None


async def start_stream(engine: Engine, req: SpeechRequest) -> AudioChunks:
    """Start synthesis and wait for its first chunk.

    Answering only then makes "busy", a synthesis failure or text with nothing to speak a proper error response
    rather than a 200 cut short. The stream's span (`tts.stream`, a child of the request's) lasts until the last
    chunk is sent, with the time to first audio as an event.
    """
    span = tracing.start_span("tts.stream", {"tts.voice": req.voice.id, "tts.text_chars": len(req.text)})
    chunks = engine.stream(req)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        error = ValidationFailed("text contains nothing to speak")
        tracing.end_span(span, error)
        raise error from None
    except BaseException as exc:
        observe_failure(engine, req.voice.id, exc)
        tracing.end_span(span, exc)
        await chunks.aclose()
        raise
    if span is not None:
        span.add_event("first_audio")
    return AudioChunks(first, chunks, engine, req, span)


async def encoded(stream: AudioChunks, encoder: Encoder) -> AsyncGenerator[bytes, None]:
    """The encoder's bytes, chunk by chunk as synthesis goes; closing it stops synthesis after the chunk in progress.

    Encoding runs on a thread: a codec's few milliseconds per chunk stay off the event loop.
    """
    chunks = stream.rest
    error: BaseException | None = None
    try:
        data = await asyncio.to_thread(encoder.encode, stream.first.pcm)
        if data:
            yield data
        async for chunk in chunks:
            data = await asyncio.to_thread(encoder.encode, chunk.pcm)
            if data:
                yield data
        tail = await asyncio.to_thread(encoder.finish)
        if tail:
            yield tail
        get_liveness().succeeded(default_voice=stream.req.voice.id == stream.engine.registry.default_voice)
    except BaseException as exc:
        error = exc
        observe_failure(stream.engine, stream.req.voice.id, exc)
        raise
    finally:
        await chunks.aclose()
        tracing.set_attributes(stream.span, {"tts.format": encoder.format, "tts.audio_ms": encoder.duration_ms})
        tracing.end_span(stream.span, error)
