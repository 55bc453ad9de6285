"""Server -> client events and their JSON rendering, plus the cutting of audio into transport-sized events."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tts_service.audio import AudioFormat
from tts_service.engine.audio import CHANNELS, HOP_LENGTH, SAMPLE_WIDTH, mel_spectrogram
from tts_service.engine.speech import SpeechChunk
from tts_service.errors import ServiceError

Encoding = Literal["binary", "base64"]

# API Gateway refuses WebSocket frames over 32 KB (peers.md §8); with 16 KB of PCM per event, the base64
# JSON (~22 KB) plus the sentence text (capped below) and a slice of spectrogram stay under it.
API_GATEWAY_FRAME_LIMIT = 32 * 1024
AWS_MAX_AUDIO_BYTES = 16 * 1024
MAX_EVENT_TEXT = 1000
# Pieces end on whole spectrogram hops so each audio event has its own spectrogram frames.
_ALIGN_BYTES = HOP_LENGTH * SAMPLE_WIDTH


@dataclass(frozen=True)
class StartEvent:
    """A stream begins: the audio format of everything that follows."""

    stream_id: str
    voice: str
    sample_rate: int
    encoding: Encoding
    format: AudioFormat = "pcm"

    def to_dict(self) -> dict[str, Any]:
        # Bytes per sample: 2 for 16-bit PCM, 1 for G.711; compressed formats have none.
        width = {"pcm": SAMPLE_WIDTH, "mulaw": 1, "alaw": 1}.get(self.format)
        return {
            "type": "start",
            "stream_id": self.stream_id,
            "voice": self.voice,
            "sample_rate": self.sample_rate,
            "sample_width": width,
            "channels": CHANNELS,
            "encoding": self.encoding,
            "format": self.format,
        }


@dataclass(frozen=True)
class AudioEvent:
    """Audio bytes: 16-bit little-endian mono PCM, or the stream's `format` (a piece of one mp3/Ogg/G.711 stream).

    `text` is the sentence on its first event, empty on the rest.
    """

    seq: int
    pcm: bytes
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "audio",
            "seq": self.seq,
            "audio": base64.b64encode(self.pcm).decode("ascii"),
            "text": self.text,
        }


@dataclass(frozen=True)
class SpectrogramEvent:
    """Log-mel frames (80 bands, hop 256) of the audio event with the same `seq`."""

    seq: int
    frames: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "spectrogram", "seq": self.seq, "frames": self.frames}


@dataclass(frozen=True)
class WordsEvent:
    """When the words of the audio event with the same `seq` (and what follows it) are spoken, in milliseconds
    from the start of the stream. Sent only when the stream asked for `timestamps: "word"`."""

    seq: int
    words: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "words", "seq": self.seq, "words": self.words}


@dataclass(frozen=True)
class EndEvent:
    """The stream is over: audio events sent, their total duration, and whether it was cancelled."""

    chunks: int
    duration_ms: int
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"type": "end", "chunks": self.chunks, "duration_ms": self.duration_ms, "cancelled": self.cancelled}


@dataclass(frozen=True)
class ErrorEvent:
    """A message was refused, or the stream failed (`ends_stream`); `code` is the service's stable error code."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    ends_stream: bool = False
    """True when the running stream is over (no `end` follows); a refused message leaves the stream running."""

    @classmethod
    def from_error(cls, exc: ServiceError, ends_stream: bool = False) -> ErrorEvent:
        return cls(code=exc.code, message=exc.message, details=dict(exc.details), ends_stream=ends_stream)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.details,
            "type": "error",
            "code": self.code,
            "message": self.message,
            "ends_stream": self.ends_stream,
        }


Event = StartEvent | AudioEvent | SpectrogramEvent | WordsEvent | EndEvent | ErrorEvent
ChunkEvent = AudioEvent | SpectrogramEvent | WordsEvent
"""What one engine chunk becomes."""


class AnyEvent(Protocol):
    """Any event a connection sends: the streaming protocol's (`Event`) or a chat turn's."""

    def to_dict(self) -> dict[str, Any]: ...


def to_json(event: AnyEvent) -> str:
    """Compact JSON text of an event (non-ASCII kept as UTF-8: smaller frames)."""
    return json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)


class EventMaker:
    """Turns engine chunks into numbered audio (and spectrogram) events of bounded size.

    The counters are plain fields so a stateless transport (Lambda) can persist and restore them.
    """

    def __init__(
        self,
        max_audio_bytes: int,
        spectrogram: bool = False,
        seq: int = 0,
        samples: int = 0,
        sample_rate: int = 0,
        words: bool = False,
    ) -> None:
        self.max_audio_bytes = max(_ALIGN_BYTES, max_audio_bytes // _ALIGN_BYTES * _ALIGN_BYTES)
        self.spectrogram = spectrogram
        self.words = words
        """Add a `words` event for each chunk whose words start in it."""
        self.seq = seq
        """Next audio event's sequence number (= audio events made so far)."""
        self.samples = samples
        self.sample_rate = sample_rate
        self._sentence_start = True
        self._pending_text = ""
        """A sentence's text whose encoded bytes have not started yet (codecs work in frames)."""

    @property
    def duration_ms(self) -> int:
        return round(1000 * self.samples / self.sample_rate) if self.sample_rate else 0

    def end(self, cancelled: bool = False) -> EndEvent:
        return EndEvent(chunks=self.seq, duration_ms=self.duration_ms, cancelled=cancelled)

    def _words_event(self, chunk: SpeechChunk, seq: int) -> list[ChunkEvent]:
        if not self.words or not chunk.words:
            return []
        rate = chunk.sample_rate
        words = [
            {
                "word": w.word,
                "start_ms": round(1000 * (self.samples + w.start) / rate),
                "end_ms": round(1000 * (self.samples + w.end) / rate),
            }
            for w in chunk.words
        ]
        return [WordsEvent(seq=seq, words=words)]

    def events(self, chunk: SpeechChunk) -> list[ChunkEvent]:
        """The events of one engine chunk, in order."""
        self.sample_rate = chunk.sample_rate
        data = chunk.pcm.astype("<i2", copy=False).tobytes()
        frames: list[list[float]] | None = None
        if self.spectrogram:
            frames = mel_spectrogram(chunk.pcm, chunk.sample_rate)["frames"]
        out: list[ChunkEvent] = self._words_event(chunk, self.seq)
        for start in range(0, len(data), self.max_audio_bytes):
            piece = data[start : start + self.max_audio_bytes]
            text = chunk.text[:MAX_EVENT_TEXT] if self._sentence_start else ""
            self._sentence_start = False
            out.append(AudioEvent(seq=self.seq, pcm=piece, text=text))
            if frames is not None:
                lo = start // _ALIGN_BYTES
                last = start + self.max_audio_bytes >= len(data)
                hi = len(frames) if last else (start + len(piece)) // _ALIGN_BYTES
                out.append(SpectrogramEvent(seq=self.seq, frames=frames[lo:hi]))
            self.seq += 1
        self.samples += chunk.pcm.size
        self._sentence_start = chunk.sentence_end
        return out

    def encoded(self, data: bytes, chunk: SpeechChunk | None) -> list[ChunkEvent]:
        """Events of encoded bytes made from `chunk` (None: an encoder's final tail), cut to the size limit.

        A codec may hold a chunk's audio back until it has a whole frame, so a sentence's text goes with the first
        bytes that come after its first chunk.
        """
        if chunk is not None and self._sentence_start:
            self._pending_text = chunk.text[:MAX_EVENT_TEXT]
        out: list[ChunkEvent] = self._words_event(chunk, self.seq) if chunk is not None else []
        for start in range(0, len(data), self.max_audio_bytes):
            out.append(
                AudioEvent(seq=self.seq, pcm=data[start : start + self.max_audio_bytes], text=self._pending_text)
            )
            self._pending_text = ""
            self.seq += 1
        if chunk is not None:
            self.sample_rate = chunk.sample_rate
            self.samples += chunk.pcm.size
            self._sentence_start = chunk.sentence_end
        return out
