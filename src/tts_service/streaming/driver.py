"""One streaming connection over the engine: client messages in, events out, whatever carries them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol

from tts_service.audio import Encoder, new_encoder
from tts_service.engine import Engine, SpeechChunk, SpeechOptions
from tts_service.errors import ServiceError, UnexpectedMessage, ValidationFailed
from tts_service.observability.liveness import tracked
from tts_service.streaming.events import (
    AudioEvent,
    ChunkEvent,
    Encoding,
    EndEvent,
    ErrorEvent,
    Event,
    EventMaker,
    StartEvent,
    to_json,
)
from tts_service.streaming.messages import (
    CancelMessage,
    ClientMessage,
    EndMessage,
    SpeakMessage,
    StartMessage,
    parse_message,
)
from tts_service.streaming.session import IncrementalText, keep_sentence_gap

logger = logging.getLogger(__name__)

MAX_QUEUED = 256
"""Sentences waiting to be synthesized in one stream at most."""

Incoming = str | bytes | None
"""A client frame; None when the client has gone."""


class Transport(Protocol):
    """Where events go: a WebSocket, or anything with text and binary frames."""

    async def send_text(self, data: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...


class TransportGone(Exception):
    """Sending failed: the client has left."""


@dataclass
class _Stream:
    id: str
    options: SpeechOptions
    encoding: Encoding
    maker: EventMaker
    text: IncrementalText | None
    """Pending incremental text; None for a `speak` stream, which has all its text at once."""
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    """Sentences (or a whole `speak` text) to synthesize in order; None ends the stream."""
    ending: bool = False
    spoken: int = 0
    task: asyncio.Task[None] | None = None
    closing: bool = False
    """Set when its last event (`end` or a failing `error`) is being sent: a late cancel adds no second one."""
    encoder: Encoder | None = None
    """The stream's encoder (one codec state across all its sentences); None for PCM at the voice's rate."""


class StreamDriver:
    """Runs the protocol for one connection: at most one stream at a time, then the next."""

    def __init__(
        self, engine: Engine, transport: Transport, charge: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.engine = engine
        self.transport = transport
        self.charge = charge
        """Charges a message that starts a stream to the client's budget (RateLimited when spent)."""
        settings = engine.settings
        self.max_text_chars = settings.max_text_chars
        self.max_pending = settings.stream_max_pending_chars
        self.max_audio_bytes = settings.stream_max_audio_bytes
        self.stream: _Stream | None = None
        self._send_lock = asyncio.Lock()
        self._inflight: asyncio.Future[None] | None = None

    async def run(self, receive: Callable[[], Awaitable[Incoming]]) -> None:
        """Handle frames until the client leaves; then stop any synthesis (its worker is freed)."""
        try:
            while True:
                raw = await receive()
                if raw is None:
                    return
                await self.handle(raw)
        finally:
            await self.close()

    async def handle(self, raw: str | bytes) -> None:
        """One client frame; a bad one gets an `error` event and the connection stays usable."""
        try:
            await self._dispatch(parse_message(raw, self.max_text_chars))
        except ServiceError as exc:
            await self._emit_quietly(ErrorEvent.from_error(exc))

    async def close(self) -> None:
        stream = self.stream
        if stream is not None and stream.task is not None:
            stream.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await stream.task
        self.stream = None

    # --- messages ---

    async def _dispatch(self, msg: ClientMessage) -> None:
        if isinstance(msg, SpeakMessage | StartMessage):
            if self.stream is not None:
                raise UnexpectedMessage(f"a stream is running; send cancel or wait for its end before {msg.type}")
            if self.charge is not None:
                await self.charge()
            await self._open(msg)
            return
        stream = self.stream
        if isinstance(msg, CancelMessage):
            if stream is not None:
                await self._cancel(stream)
            return  # nothing to cancel: the stream ended while the cancel was on its way
        if stream is None or stream.text is None or stream.ending:
            raise UnexpectedMessage(f"{msg.type} needs an open incremental stream: send start first")
        # Text arrives faster than speech is made; holding it all would grow memory without bound. One message
        # may complete many sentences, so the room is checked before any of them is taken.
        for sentence in stream.text.take(msg, room=MAX_QUEUED - stream.queue.qsize()):
            stream.queue.put_nowait(sentence)
        if isinstance(msg, EndMessage):
            stream.ending = True
            stream.queue.put_nowait(None)

    async def _open(self, msg: SpeakMessage | StartMessage) -> None:
        options = msg.options()
        # Validate voice, speaker and text before announcing a stream; errors go back as `error` events.
        probe = self.engine.request(msg.text if isinstance(msg, SpeakMessage) else "start", options)
        source_rate = probe.voice.sample_rate
        encoder = None
        if msg.format != "pcm" or msg.sample_rate not in (None, source_rate):
            if msg.spectrogram:
                raise ValidationFailed(
                    "spectrogram events come with pcm at the voice's own rate only", fields=["spectrogram"]
                )
            encoder = new_encoder(msg.format, source_rate, msg.sample_rate)
        stream = _Stream(
            id=uuid.uuid4().hex,
            options=options,
            encoding=msg.encoding,
            maker=EventMaker(
                self.max_audio_bytes,
                spectrogram=msg.spectrogram,
                sample_rate=source_rate,
                words=msg.timestamps == "word",
            ),
            text=None if isinstance(msg, SpeakMessage) else IncrementalText(self.max_pending),
            encoder=encoder,
        )
        if isinstance(msg, SpeakMessage):
            stream.queue.put_nowait(probe.text)
            stream.queue.put_nowait(None)
            stream.ending = True
        self.stream = stream
        rate = encoder.sample_rate if encoder is not None else source_rate
        await self._emit(StartEvent(stream.id, probe.voice.id, rate, msg.encoding, msg.format))
        stream.task = asyncio.create_task(self._speak(stream), name=f"stream-{stream.id}")
        logger.info("stream started", extra={"stream_id": stream.id, "voice": probe.voice.id, "mode": msg.type})

    async def _cancel(self, stream: _Stream) -> None:
        if stream.closing:
            return  # the stream is already ending on its own; the cancel crossed its `end`
        stream.closing = True
        if stream.task is not None:
            stream.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.task
        if self._inflight is not None:
            # An audio frame already handed to the transport goes out before `end`, never after it.
            with contextlib.suppress(Exception):
                await self._inflight
        if self.stream is stream:
            self.stream = None
        await self._emit_quietly(stream.maker.end(cancelled=True))
        logger.info("stream cancelled", extra={"stream_id": stream.id, "chunks": stream.maker.seq})

    # --- synthesis ---

    async def _speak(self, stream: _Stream) -> None:
        try:
            while (text := await stream.queue.get()) is not None:
                req = self.engine.request(text, stream.options)
                first = True
                # Closed however the loop ends (a client gone or too slow): synthesis stops, its admission is freed.
                with tracked(self.engine, req, "tts.stream", ignore=(TransportGone,)) as span:
                    async with aclosing(self.engine.stream(req)) as chunks:
                        async for chunk in chunks:
                            if first and stream.spoken > 0:
                                keep_sentence_gap(chunk, req)
                            if first and span is not None:
                                span.add_event("first_audio")
                            first = False
                            await self._send_audio(stream, await self._audio_events(stream, chunk))
                stream.spoken += 1
            if stream.encoder is not None:
                await self._send_audio(stream, await self._audio_events(stream, None))
            stream.closing = True
            await asyncio.shield(self._emit(stream.maker.end()))
            logger.info("stream ended", extra={"stream_id": stream.id, "chunks": stream.maker.seq})
        except TransportGone:
            logger.info("client left mid-stream", extra={"stream_id": stream.id})
        except ServiceError as exc:
            stream.closing = True
            await self._emit_quietly(ErrorEvent.from_error(exc, ends_stream=True))
        except Exception as exc:
            logger.error("stream failed", extra={"stream_id": stream.id, "error_type": type(exc).__name__})
            stream.closing = True
            await self._emit_quietly(
                ErrorEvent("internal_error", "synthesis failed; the error was logged", ends_stream=True)
            )
        finally:
            if self.stream is stream:
                self.stream = None

    @staticmethod
    async def _audio_events(stream: _Stream, chunk: SpeechChunk | None) -> list[ChunkEvent]:
        """The events of one chunk (None: the encoder's tail), encoded on a thread when the stream has a format."""
        if stream.encoder is None:
            if chunk is None:
                return []
            if stream.maker.spectrogram:
                return await asyncio.to_thread(stream.maker.events, chunk)  # numpy work: off the event loop
            return stream.maker.events(chunk)
        if chunk is None:
            data = await asyncio.to_thread(stream.encoder.finish)
        else:
            data = await asyncio.to_thread(stream.encoder.encode, chunk.pcm)
        return [*stream.maker.encoded(data, chunk)]

    async def _send_audio(self, stream: _Stream, events: list[ChunkEvent]) -> None:
        for event in events:
            # Shielded: a cancel never cuts a frame in half; it takes effect after this one.
            self._inflight = asyncio.ensure_future(self._emit(event, stream.encoding))
            await asyncio.shield(self._inflight)

    # --- output ---

    async def _emit(self, event: Event, encoding: Encoding = "base64") -> None:
        async with self._send_lock:
            try:
                if encoding == "binary" and isinstance(event, AudioEvent):
                    await self.transport.send_bytes(event.pcm)
                else:
                    await self.transport.send_text(to_json(event))
            except Exception as exc:
                raise TransportGone(type(exc).__name__) from exc

    async def _emit_quietly(self, event: ErrorEvent | EndEvent) -> None:
        with contextlib.suppress(TransportGone):
            await self._emit(event)
