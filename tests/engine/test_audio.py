"""WAV encoding and the mel spectrogram."""

from __future__ import annotations

import struct

import numpy as np

from tests.support.audio import parse_wav
from tts_service.engine.audio import HOP_LENGTH, N_MELS, encode_wav, mel_spectrogram, wav_header


def test_encode_wav_round_trips() -> None:
    pcm = (np.sin(np.linspace(0, 200 * np.pi, 22050)) * 10000).astype(np.int16)
    wav = parse_wav(encode_wav(pcm, 22050))
    assert wav.sample_rate == 22050
    assert np.array_equal(wav.samples, pcm)


def test_streaming_header_declares_unknown_length() -> None:
    header = wav_header(16000, None)
    assert len(header) == 44
    assert header[:4] == b"RIFF"
    assert header[36:40] == b"data"
    assert struct.unpack("<I", header[40:44])[0] >= 0xFFFF0000
    assert struct.unpack("<I", header[24:28])[0] == 16000


def test_mel_spectrogram_shape_and_tone_position() -> None:
    sr = 22050
    t = np.arange(sr) / sr
    low = (np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16)
    high = (np.sin(2 * np.pi * 5000 * t) * 8000).astype(np.int16)
    spec_low, spec_high = mel_spectrogram(low, sr), mel_spectrogram(high, sr)
    frames = np.array(spec_low["frames"])
    assert frames.shape == (1 + sr // HOP_LENGTH, N_MELS)
    assert spec_low["n_fft"] == 1024
    assert spec_low["hop_length"] == 256
    # The louder band follows the tone's pitch.
    assert np.argmax(frames.mean(axis=0)) < np.argmax(np.array(spec_high["frames"]).mean(axis=0))


def test_mel_spectrogram_of_nothing() -> None:
    assert mel_spectrogram(np.zeros(0, dtype=np.int16), 22050)["frames"] == []
