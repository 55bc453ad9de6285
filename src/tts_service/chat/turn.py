"""A spoken chat turn as a stream of events, independent of the transport that carries them.

The LLM's tokens go out as `token` events the moment they arrive; its text is cut into sentences as they
complete (`split_complete`), and each sentence is synthesized on the worker pool while the LLM writes the
next, its audio going out as the streaming protocol's `audio` events (one `seq` across the whole reply). A
set `cancel` event stops both the LLM stream (its HTTP connection is closed) and synthesis. The turn ends
with the protocol's `end` (when speaking) and `done {reply}`; the turn is stored once, whole, before `done`;
a cancelled or failed turn is not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal

from tts_service.chat.memory import MemoryState
from tts_service.chat.service import ChatService
from tts_service.chat.speech import speakable
from tts_service.credentials import conversation_ref
from tts_service.engine import Engine, SpeechOptions
from tts_service.engine.text import split_complete
from tts_service.errors import ServiceError, ValidationFailed
from tts_service.streaming.events import AudioEvent, Encoding, EndEvent, EventMaker, StartEvent

logger = logging.getLogger(__name__)

MAX_QUEUED_EVENTS = 64
"""Events (tokens, audio of at most STREAM_MAX_AUDIO_BYTES) made but not yet sent, per turn."""
MAX_QUEUED_SENTENCES = 16
"""Sentences the LLM wrote that wait for synthesis, per turn."""


@dataclass(frozen=True)
class TurnStartEvent:
    """A turn begins: its conversation and memory state, and (when speaking) the audio format."""

    conversation_id: str
    memory: MemoryState
    start: StartEvent | None

    def to_dict(self) -> dict[str, Any]:
        base = self.start.to_dict() if self.start else {"type": "start", "stream_id": uuid.uuid4().hex}
        return {**base, "conversation_id": self.conversation_id, "memory": self.memory, "speak": self.start is not None}


@dataclass(frozen=True)
class TokenEvent:
    """A piece of the reply as the LLM wrote it."""

    token: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "token", "token": self.token}


@dataclass(frozen=True)
class DoneEvent:
    """The turn is over: the whole reply (or what was written before a cancel)."""

    reply: str
    conversation_id: str
    memory: MemoryState
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "done",
            "reply": self.reply,
            "conversation_id": self.conversation_id,
            "memory": self.memory,
            "cancelled": self.cancelled,
            "stored": self.memory == "ok" and not self.cancelled,
        }


TurnEvent = TurnStartEvent | TokenEvent | AudioEvent | EndEvent | DoneEvent


@dataclass(frozen=True)
class TurnRequest:
    """One message to answer, and how to speak the answer."""

    message: str
    owner: str
    """Whose conversation this is (`tts_service.credentials`): recall and storage are that owner's only."""
    conversation_id: str | None = None
    speak: bool = True
    options: SpeechOptions | None = None
    encoding: Encoding = "binary"
    max_audio_bytes: int | None = None
    """PCM bytes per audio event; None: STREAM_MAX_AUDIO_BYTES (API Gateway needs its own 32 KB-safe bound)."""


_Item = tuple[Literal["event"], TurnEvent] | tuple[Literal["finished"], str] | tuple[Literal["failed"], BaseException]


async def spoken_turn(
    service: ChatService, engine: Engine, req: TurnRequest, cancel: asyncio.Event
) -> AsyncGenerator[TurnEvent, None]:
    """Answer `req.message` as events; raises ServiceError (before or during the turn) for the transport to render."""
    options = req.options or SpeechOptions()
    turn = await service.prepare(req.message, req.conversation_id, req.owner)
    start: StartEvent | None = None
    if req.speak:
        # Refuse a bad voice before the LLM spends anything.
        probe = engine.request("Hello.", options)
        voice = await engine.loaded_voice(probe.voice)
        start = StartEvent(uuid.uuid4().hex, probe.voice.id, voice.sample_rate, req.encoding)
    yield TurnStartEvent(turn.conversation_id, turn.memory, start)

    # Bounded: when the transport is slower than synthesis (or synthesis than the LLM), the producers wait instead
    # of holding the whole reply's audio in memory; a client that stops reading is cut off by the send timeout.
    out: asyncio.Queue[_Item] = asyncio.Queue(MAX_QUEUED_EVENTS)
    sentences: asyncio.Queue[str | None] = asyncio.Queue(MAX_QUEUED_SENTENCES)
    maker = EventMaker(req.max_audio_bytes or engine.settings.stream_max_audio_bytes)
    parts: list[str] = []
    timing = {"started": time.perf_counter()}

    async def write() -> None:
        pending = ""
        async for piece in service.llm.stream(turn.messages):
            parts.append(piece)
            await out.put(("event", TokenEvent(piece)))
            if req.speak:
                pending += piece
                complete, pending = split_complete(pending)
                for sentence in complete:
                    await sentences.put(sentence)
        if req.speak:
            if pending.strip():
                await sentences.put(pending)
            await sentences.put(None)

    async def say() -> None:
        while (sentence := await sentences.get()) is not None:
            text = speakable(sentence)
            if not any(ch.isalnum() for ch in text):
                continue
            try:
                speech = engine.request(text[: engine.settings.max_text_chars], options)
            except ValidationFailed:
                continue  # nothing speakable in it
            async with contextlib.aclosing(engine.stream(speech)) as chunks:  # a cancel frees the admission now
                async for chunk in chunks:
                    for event in maker.events(chunk):
                        if isinstance(event, AudioEvent):
                            if "first_audio" not in timing:
                                timing["first_audio"] = time.perf_counter()
                            await out.put(("event", event))

    async def guard(name: str, work: Any) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await out.put(("failed", exc))
            return
        await out.put(("finished", name))

    tasks = [asyncio.create_task(guard("write", write()))]
    if req.speak:
        tasks.append(asyncio.create_task(guard("say", say())))
    cancelled_wait = asyncio.create_task(cancel.wait())
    cancelled = False
    # What the client was given: a cancel drops queued events, and the end and done events must not count them.
    said: list[str] = []
    delivered = {"chunks": 0, "samples": 0}
    try:
        finished = 0
        while finished < len(tasks):
            # A cancel wins over events already queued: when synthesis or the LLM runs ahead of the transport
            # the queue is never empty, and the turn would otherwise play to its end.
            if cancel.is_set():
                cancelled = True
                break
            getter = asyncio.create_task(out.get())
            done, _ = await asyncio.wait({getter, cancelled_wait}, return_when=asyncio.FIRST_COMPLETED)
            if cancelled_wait in done:
                getter.cancel()
                cancelled = True
                break
            item = getter.result()
            if item[0] == "event":
                event = item[1]
                if isinstance(event, TokenEvent):
                    said.append(event.token)
                elif isinstance(event, AudioEvent):
                    delivered["chunks"] += 1
                    delivered["samples"] += len(event.pcm) // 2
                yield event
            elif item[0] == "finished":
                finished += 1
            else:
                error = item[1]
                if isinstance(error, ServiceError):
                    raise error
                logger.error("chat turn failed", extra={"error_type": type(error).__name__})
                raise ServiceError("the turn failed; the error was logged") from error
    finally:
        cancelled_wait.cancel()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    reply = "".join(said if cancelled else parts)
    if req.speak:
        rate = start.sample_rate if start is not None else 0
        duration_ms = round(1000 * delivered["samples"] / rate) if rate else 0
        yield EndEvent(chunks=delivered["chunks"], duration_ms=duration_ms, cancelled=cancelled)
    if cancelled:
        logger.info(
            "chat turn cancelled", extra={"conversation": conversation_ref(turn.conversation_id), "chars": len(reply)}
        )
        yield DoneEvent(reply, turn.conversation_id, turn.memory, cancelled=True)
        return
    memory = await service.finish(turn, reply)
    logger.info(
        "chat turn",
        extra={
            "conversation": conversation_ref(turn.conversation_id),
            "memory": memory,
            "audio_events": maker.seq,
            "first_audio_seconds": round(timing["first_audio"] - timing["started"], 3)
            if "first_audio" in timing
            else None,
            "seconds": round(time.perf_counter() - timing["started"], 3),
        },
    )
    yield DoneEvent(reply, turn.conversation_id, memory)
