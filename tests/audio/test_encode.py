"""Encoders on real speech: every format decodes (independently) to the same speech, whole or chunk by chunk."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soxr

from tests.support.decode import assert_same_speech, decode
from tts_service.audio import FORMATS, AudioFormat, encode_whole, format_from_accept, new_encoder, output_rate
from tts_service.engine import Engine, SpeechChunk, SpeechOptions
from tts_service.errors import ValidationFailed

TEXT = (
    "The lighthouse keeper climbed the stairs every evening. "
    "He polished the great lens until it shone, then lit the lamp and watched the ships."
)
EXPECTED_RATE = {"mp3": 22050, "opus": 24000, "aac": 22050, "flac": 22050, "wav": 22050, "pcm": 22050}
EXPECTED_RATE |= {"mulaw": 8000, "alaw": 8000}


@pytest.fixture(scope="module")
def chunks(engine: Engine) -> list[SpeechChunk]:
    """The engine's streamed chunks of TEXT (a small first chunk, then the rest), as a stream encodes them."""

    async def collect() -> list[SpeechChunk]:
        req = engine.request(TEXT, SpeechOptions(noise_scale=0, noise_w=0))
        return [chunk async for chunk in engine.stream(req)]

    return asyncio.run(collect())


@pytest.fixture(scope="module")
def pcm(chunks: list[SpeechChunk]) -> np.ndarray:
    return np.concatenate([c.pcm for c in chunks])


@pytest.mark.parametrize("fmt", FORMATS)
def test_whole_file_decodes_to_the_same_speech(pcm: np.ndarray, fmt: AudioFormat) -> None:
    data, encoder = encode_whole(pcm, 22050, fmt)
    assert encoder.sample_rate == EXPECTED_RATE[fmt]
    decoded = decode(fmt, data, encoder.sample_rate)
    assert decoded.sample_rate == encoder.sample_rate
    # Codec padding (encoder delay, last frame) is tens of milliseconds on ~7 s of speech.
    assert_same_speech(decoded, pcm.size / 22050, tolerance=0.02)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "flac"])
def test_chunk_by_chunk_bytes_come_with_each_chunk_and_decode_whole(
    chunks: list[SpeechChunk], fmt: AudioFormat
) -> None:
    encoder = new_encoder(fmt, 22050)
    pieces = [encoder.encode(c.pcm) for c in chunks]
    tail = encoder.finish()
    # The first chunk (~0.3 s) already yields bytes a player can start on: nothing waits for the end.
    assert pieces[0], f"{fmt}: no bytes after the first chunk"
    assert sum(len(p) for p in pieces) > 0.8 * (sum(len(p) for p in pieces) + len(tail))
    decoded = decode(fmt, b"".join([*pieces, tail]), encoder.sample_rate)
    assert_same_speech(decoded, sum(c.pcm.size for c in chunks) / 22050, tolerance=0.02)


def test_streamed_flac_has_an_unknown_length_and_whole_flac_the_real_one(pcm: np.ndarray) -> None:
    streamed = new_encoder("flac", 22050)
    data = streamed.encode(pcm) + streamed.finish()
    whole, _ = encode_whole(pcm, 22050, "flac")
    # STREAMINFO's 36-bit total-samples field: 0 ("unknown") when streamed, the real count when whole.
    total = int.from_bytes(whole[8 + 13 : 8 + 18], "big") & ((1 << 36) - 1)
    assert total == pcm.size
    assert int.from_bytes(data[8 + 13 : 8 + 18], "big") & ((1 << 36) - 1) == 0


def test_resampling_is_filtered_not_dropped() -> None:
    # A 6 kHz tone is above 8 kHz audio's Nyquist frequency: a proper filter removes it, dropping samples
    # would fold it down to 2 kHz at full strength.
    t = np.arange(22050) / 22050
    high = (8000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16)
    low = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    for tone, kept in ((high, False), (low, True)):
        encoder = new_encoder("pcm", 22050, 8000)
        out = np.frombuffer(encoder.encode(tone) + encoder.finish(), dtype="<i2").astype(np.float64)
        assert out.size == pytest.approx(8000, abs=2)
        ratio = np.sqrt(np.mean(out[200:-200] ** 2)) / np.sqrt(np.mean(tone.astype(np.float64) ** 2))
        assert (ratio > 0.95) if kept else (ratio < 0.01), f"RMS ratio {ratio:.4f}"


def test_chunked_resampling_matches_one_pass(chunks: list[SpeechChunk], pcm: np.ndarray) -> None:
    encoder = new_encoder("pcm", 22050, 16000)
    streamed = np.frombuffer(b"".join([encoder.encode(c.pcm) for c in chunks]) + encoder.finish(), dtype="<i2")
    once = soxr.resample(pcm, 22050, 16000, quality="HQ")
    assert abs(streamed.size - once.size) <= 1
    n = min(streamed.size, once.size)
    assert np.max(np.abs(streamed[:n].astype(np.int32) - once[:n].astype(np.int32))) <= 2


@pytest.mark.parametrize("fmt", ["mulaw", "alaw"])
def test_g711_is_the_resampled_speech_companded(pcm: np.ndarray, fmt: AudioFormat) -> None:
    data, encoder = encode_whole(pcm, 22050, fmt)
    assert len(data) == pytest.approx(pcm.size * 8000 / 22050, abs=2)  # one byte per 8 kHz sample
    decoded = decode(fmt, data, 8000).samples.astype(np.float64)
    linear = soxr.resample(pcm, 22050, 8000, quality="HQ").astype(np.float64)
    n = min(decoded.size, linear.size)
    snr = 10 * np.log10(np.sum(linear[:n] ** 2) / np.sum((linear[:n] - decoded[:n]) ** 2))
    assert snr > 30, f"G.711 SNR {snr:.1f} dB"  # companding costs ~38 dB on speech; anything broken costs far more


def test_rates_each_format_takes() -> None:
    assert output_rate("pcm", 22050, pcm_rate=24000) == 24000
    assert output_rate("pcm", 22050) == 22050
    assert output_rate("wav", 22050, 16000) == 16000
    assert output_rate("mulaw", 22050) == 8000
    assert output_rate("opus", 16000) == 16000
    assert output_rate("mp3", 44100) == 44100
    assert output_rate("mp3", 11000) == 24000
    refused: tuple[tuple[AudioFormat, int], ...] = (("mp3", 8000), ("mulaw", 16000), ("wav", 12345), ("opus", 48000))
    for fmt, rate in refused:
        with pytest.raises(ValidationFailed) as err:
            output_rate(fmt, 22050, rate)
        assert err.value.details["fields"] == ["sample_rate"]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("audio/mpeg", "mp3"),
        ("audio/ogg; codecs=opus", "opus"),
        ("text/html, audio/flac;q=0.9", "flac"),
        ("application/json, audio/wav", "json"),
        ("audio/*", "wav"),
        ("audio/basic", "mulaw"),
        ("audio/PCMA", "alaw"),
        ("audio/L16;rate=16000", "pcm"),
        ("text/html", None),
        (None, None),
    ],
)
def test_accept_header_names_a_format(accept: str | None, expected: str | None) -> None:
    assert format_from_accept(accept) == expected
