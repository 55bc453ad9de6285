"""The driver's ordering guarantees, with a scripted engine so every interleaving is deterministic."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from tts_service.config import Settings
from tts_service.engine import SpeechChunk, SpeechOptions
from tts_service.streaming.driver import StreamDriver


@dataclass
class _Voice:
    id: str = "fake-voice"
    sample_rate: int = 16000


@dataclass
class _Request:
    text: str
    voice: _Voice
    sentence_silence: float = 0.0


class ScriptedEngine:
    """Yields one chunk per sentence; each chunk after the first waits for `release` (a synthesis in progress)."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.registry = SimpleNamespace(default_voice=_Voice.id)  # what liveness compares a voice with
        self.release = asyncio.Event()
        self.made = 0
        self.closed = 0

    def request(self, text: str, options: SpeechOptions | None = None) -> _Request:
        return _Request(text.strip(), _Voice())

    async def stream(self, req: _Request) -> AsyncGenerator[SpeechChunk, None]:
        try:
            for n, sentence in enumerate(s for s in req.text.split(".") if s.strip()):
                if n > 0:
                    await self.release.wait()
                self.made += 1
                yield SpeechChunk(n, sentence, np.full(1600, 1000, dtype=np.int16), 16000)
        finally:
            self.closed += 1


class Recorder:
    def __init__(self) -> None:
        self.frames: list[Any] = []

    async def send_text(self, data: str) -> None:
        self.frames.append(json.loads(data))

    async def send_bytes(self, data: bytes) -> None:
        self.frames.append(data)

    def types(self) -> list[str]:
        return ["binary" if isinstance(f, bytes) else f["type"] for f in self.frames]


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_cancel_mid_synthesis_sends_end_after_the_last_audio_and_closes_the_engine_stream() -> None:
    async def scenario() -> tuple[Recorder, ScriptedEngine]:
        engine = ScriptedEngine()
        out = Recorder()
        driver = StreamDriver(engine, out)  # type: ignore[arg-type]
        await driver.handle(json.dumps({"type": "speak", "text": "One. Two. Three.", "encoding": "base64"}))
        await _settle()  # the first chunk is out; the second is "being synthesized"
        await driver.handle('{"type": "cancel"}')
        engine.release.set()
        await _settle()
        await driver.close()
        return out, engine

    out, engine = asyncio.run(scenario())
    assert out.types() == ["start", "audio", "end"]
    assert out.frames[-1]["cancelled"] is True
    assert out.frames[-1]["chunks"] == 1
    assert engine.made == 1
    assert engine.closed == 1


def test_cancel_after_the_end_adds_nothing() -> None:
    async def scenario() -> Recorder:
        engine = ScriptedEngine()
        engine.release.set()
        out = Recorder()
        driver = StreamDriver(engine, out)  # type: ignore[arg-type]
        await driver.handle(json.dumps({"type": "speak", "text": "One. Two."}))
        await _settle()
        await driver.handle('{"type": "cancel"}')
        await _settle()
        return out

    out = asyncio.run(scenario())
    assert out.types() == ["start", "binary", "binary", "end"]
    assert out.frames[-1]["cancelled"] is False


def test_disconnect_closes_the_engine_stream() -> None:
    async def scenario() -> ScriptedEngine:
        engine = ScriptedEngine()
        out = Recorder()
        driver = StreamDriver(engine, out)  # type: ignore[arg-type]
        frames: list[str | bytes | None] = [json.dumps({"type": "speak", "text": "One. Two. Three."})]

        async def receive() -> str | bytes | None:
            if frames:
                return frames.pop()
            await _settle()
            return None  # the client has gone while chunk two is in progress

        await driver.run(receive)
        return engine

    engine = asyncio.run(scenario())
    assert engine.made == 1
    assert engine.closed == 1


def test_failing_transport_stops_synthesis() -> None:
    class Broken(Recorder):
        async def send_bytes(self, data: bytes) -> None:
            raise ConnectionResetError

    async def scenario() -> tuple[Recorder, ScriptedEngine]:
        engine = ScriptedEngine()
        engine.release.set()
        out = Broken()
        driver = StreamDriver(engine, out)  # type: ignore[arg-type]
        await driver.handle(json.dumps({"type": "speak", "text": "One. Two. Three."}))
        await _settle()
        return out, engine

    out, engine = asyncio.run(scenario())
    assert out.types() == ["start"]
    assert engine.made == 1
    assert engine.closed == 1
