"""Checks that audio is real speech-like audio, not just bytes: header, duration for the words, loudness."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy as np

# Spoken English runs ~2-4 words per second; Piper voices at speed 1.0 sit near 2.5-3.
MIN_SECONDS_PER_WORD = 0.18
MAX_SECONDS_PER_WORD = 0.9
MIN_RMS = 300.0  # int16 units; Piper output is peak-normalised, speech RMS is in the thousands


@dataclass
class Wav:
    sample_rate: int
    channels: int
    sample_width: int
    samples: np.ndarray

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate

    @property
    def rms(self) -> float:
        return float(np.sqrt(np.mean(self.samples.astype(np.float64) ** 2))) if self.samples.size else 0.0


def parse_wav(data: bytes) -> Wav:
    """Parse a WAV file, asserting a RIFF/WAVE header with 16-bit mono PCM."""
    assert data[:4] == b"RIFF", "not a RIFF/WAVE file"
    assert data[8:12] == b"WAVE", "not a RIFF/WAVE file"
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getcomptype() == "NONE"
        frames = wav.readframes(wav.getnframes())
        parsed = Wav(wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), np.frombuffer(frames, dtype="<i2"))
    assert parsed.channels == 1
    assert parsed.sample_width == 2
    return parsed


def assert_speech(wav: Wav, text: str, sample_rate: int = 22050, speed: float = 1.0) -> None:
    """Duration plausible for the number of words at this speed, and clearly not silent."""
    words = len(text.split())
    assert wav.sample_rate == sample_rate
    low = words * MIN_SECONDS_PER_WORD / speed
    high = (words * MAX_SECONDS_PER_WORD + 0.8) / speed
    assert low <= wav.seconds <= high, f"{wav.seconds:.2f}s of audio for {words} words (expected {low:.2f}-{high:.2f})"
    assert wav.rms >= MIN_RMS, f"audio is near-silent (RMS {wav.rms:.0f})"
