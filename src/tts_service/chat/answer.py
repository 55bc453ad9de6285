"""A whole chat answer (`POST /chat`, `POST /voice-chat`): the reply written in full, then spoken in one piece.

Where the answer is buffered before it leaves (Lambda), its size is bounded: the caller says how much audio fits
beside the text, synthesis stops at the last whole sentence that does, and the caller refuses an answer that still
cannot fit before the turn is stored.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import aclosing

import numpy as np

from tts_service.chat.messages import ChatRequest, ChatResponse
from tts_service.chat.service import ChatService
from tts_service.chat.speech import speech_text
from tts_service.engine import Engine, SpeechRequest
from tts_service.engine.audio import SAMPLE_WIDTH, WAV_HEADER_BYTES, Int16Array, encode_wav
from tts_service.engine.text import split_sentences
from tts_service.observability.liveness import tracked

JSON_BYTES_PER_CHAR = 6
"""The most a character of text can take in the JSON answer (a `\\u0000` escape)."""


async def answer(
    service: ChatService,
    engine: Engine,
    body: ChatRequest,
    owner: str,
    *,
    speak: bool,
    conversation_url: Callable[[str], str],
    audio_budget: Callable[[int], int] | None = None,
    check: Callable[[ChatResponse], None] | None = None,
) -> ChatResponse:
    """Answer `body.message` in `owner`'s conversation, with the reply as speech too when `speak`.

    `audio_budget(text_bytes)`: the bytes of audio the answer may carry beside that much JSON text (None: no
    bound). `check` raises when the answer cannot be delivered; it runs before the turn is stored.
    """
    if speak:
        engine.request("Hello.", body)  # refuse a bad voice or option before the LLM spends anything
    turn = await service.prepare(body.message, body.conversation_id, owner)
    reply = await service.llm.complete(turn.messages)
    url = conversation_url(turn.conversation_id)
    payload = ChatResponse(reply=reply, conversation_id=turn.conversation_id, conversation_url=url, memory=turn.memory)
    text = speech_text(reply, engine.settings.max_text_chars) if speak else ""
    if text:
        budget = audio_budget(JSON_BYTES_PER_CHAR * (len(reply) + len(text) + len(url))) if audio_budget else None
        req = engine.request(text, body)
        with tracked(engine, req):
            spoken, pcm, sample_rate = await speech_within(engine, req, budget)
        wav = encode_wav(pcm, sample_rate)
        payload.audio_base64 = base64.b64encode(wav).decode("ascii")
        payload.sample_rate = sample_rate
        payload.duration_ms = round(1000 * pcm.size / sample_rate)
        payload.voice = req.voice.id
        payload.cleaned_text = spoken
    if check is not None:
        check(payload)
    # Stored only now that the whole answer is made: a reply the user never gets is not remembered.
    payload.memory = await service.finish(turn, reply)
    return payload


async def speech_within(engine: Engine, req: SpeechRequest, budget: int | None) -> tuple[str, Int16Array, int]:
    """The text spoken, its PCM and rate: all of `req`, or the whole sentences whose 16-bit PCM (and WAV header)
    fit in `budget` bytes, the synthesis closed at the first that does not."""
    if budget is None:
        speech = await engine.synthesize(req)
        return req.text, speech.pcm, speech.sample_rate
    room = max(0, (budget - WAV_HEADER_BYTES) // SAMPLE_WIDTH)
    kept: list[Int16Array] = []
    sentences: list[str] = []
    pending: list[Int16Array] = []
    used = 0
    sample_rate = req.voice.sample_rate
    whole = True
    async with aclosing(engine.stream(req)) as chunks:
        async for chunk in chunks:
            sample_rate = chunk.sample_rate
            size = sum(p.size for p in pending) + chunk.pcm.size
            if used + size > room:
                whole = False
                break
            pending.append(chunk.pcm)
            if chunk.sentence_end:
                kept += pending
                used += size
                sentences.append(chunk.text)
                pending = []
    if not kept:
        # Not even the first sentence fits: as much of it as does.
        first = np.concatenate(pending)[:room] if pending else np.zeros(0, dtype=np.int16)
        return req.text if whole else (split_sentences(req.text) or [req.text])[0], first, sample_rate
    return req.text if whole else " ".join(sentences), np.concatenate(kept), sample_rate
