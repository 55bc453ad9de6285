"""Decoders independent of the service's encoders, for checking what each audio format really holds.

libsndfile (soundfile: mpg123 for mp3, libopus for Ogg Opus, libFLAC, its own WAV and G.711 code) decodes every
format but AAC; AAC goes through FFmpeg's native decoder (PyAV), a different code path from the encoder.
"""

from __future__ import annotations

import io

import av
import numpy as np
import soundfile as sf

from tests.support.audio import MIN_RMS, Wav


def decode(fmt: str, data: bytes, sample_rate: int | None = None) -> Wav:
    """Decode `data` of `fmt` to 16-bit mono samples; headerless formats (pcm, mulaw, alaw) need `sample_rate`."""
    assert data, f"no {fmt} bytes to decode"
    if fmt == "pcm":
        assert sample_rate is not None
        assert len(data) % 2 == 0
        return Wav(sample_rate, 1, 2, np.frombuffer(data, dtype="<i2"))
    if fmt == "aac":
        assert data[0] == 0xFF, "not an ADTS stream"
        assert data[1] & 0xF0 == 0xF0, "not an ADTS stream"
        with av.open(io.BytesIO(data), "r", format="aac") as container:
            stream = container.streams.audio[0]
            frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
            rate = stream.codec_context.sample_rate
        samples = np.clip(np.multiply(np.concatenate(frames), 32767.0), -32768, 32767).astype(np.int16)
        return Wav(rate, 1, 2, samples)
    if fmt in ("mulaw", "alaw"):
        assert sample_rate is not None
        subtype = "ULAW" if fmt == "mulaw" else "ALAW"
        raw, rate = sf.read(
            io.BytesIO(data), dtype="int16", format="RAW", subtype=subtype, samplerate=sample_rate, channels=1
        )
        return Wav(rate, 1, 2, raw)
    magic = {"mp3": (b"ID3", b"\xff"), "opus": (b"OggS",), "flac": (b"fLaC",), "wav": (b"RIFF",)}[fmt]
    assert data.startswith(magic), f"{fmt} bytes start with {data[:4]!r}"
    with sf.SoundFile(io.BytesIO(data)) as f:
        assert f.channels == 1
        blocks = list(f.blocks(blocksize=65536, dtype="int16"))
        rate = f.samplerate
    return Wav(rate, 1, 2, np.concatenate(blocks) if blocks else np.zeros(0, np.int16))


def assert_same_speech(decoded: Wav, reference_seconds: float, tolerance: float = 0.05) -> None:
    """As long as the reference within `tolerance`, and clearly not silent."""
    assert abs(decoded.seconds - reference_seconds) <= tolerance * reference_seconds, (
        f"{decoded.seconds:.3f} s decoded vs {reference_seconds:.3f} s of speech"
    )
    assert decoded.rms >= MIN_RMS, f"decoded audio is near-silent (RMS {decoded.rms:.0f})"
