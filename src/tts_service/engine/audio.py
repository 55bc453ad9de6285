"""PCM and WAV encoding, and the mel spectrogram offered for visualisation."""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

SAMPLE_WIDTH: Final = 2
CHANNELS: Final = 1
# A data size that tells streaming players "length unknown, read until the end" (what ffmpeg/sox write).
STREAMING_DATA_SIZE: Final = 0xFFFFFFFF - 36

N_MELS: Final = 80
N_FFT: Final = 1024
HOP_LENGTH: Final = 256

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float32]


def float_to_int16(audio: FloatArray) -> Int16Array:
    """[-1, 1] float samples to 16-bit PCM, clipped."""
    pcm: Int16Array = np.clip(audio * 32767.0, -32767.0, 32767.0).astype(np.int16)
    return pcm


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte RIFF/WAVE header for 16-bit mono PCM; `data_bytes=None` for a stream of unknown length."""
    size = STREAMING_DATA_SIZE if data_bytes is None else data_bytes
    byte_rate = sample_rate * CHANNELS * SAMPLE_WIDTH
    return b"".join(
        [
            b"RIFF",
            struct.pack("<I", min(0xFFFFFFFF, 36 + size)),
            b"WAVE",
            b"fmt ",
            struct.pack("<IHHIIHH", 16, 1, CHANNELS, sample_rate, byte_rate, CHANNELS * SAMPLE_WIDTH, 16),
            b"data",
            struct.pack("<I", size),
        ]
    )


def encode_wav(pcm: Int16Array, sample_rate: int) -> bytes:
    """A complete WAV file of 16-bit mono PCM."""
    data = pcm.astype("<i2", copy=False).tobytes()
    return wav_header(sample_rate, len(data)) + data


def silence(seconds: float, sample_rate: int) -> Int16Array:
    return np.zeros(round(seconds * sample_rate), dtype=np.int16)


@lru_cache(maxsize=8)
def _mel_filterbank(sample_rate: int) -> npt.NDArray[np.float64]:
    """Slaney-style mel filterbank (librosa's default, htk=False, norm='slaney')."""

    def hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        f_sp = 200.0 / 3
        mels = hz / f_sp
        min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
        return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mels)

    def mel_to_hz(mels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        f_sp = 200.0 / 3
        freqs = mels * f_sp
        min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
        return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)

    fft_freqs = np.linspace(0, sample_rate / 2, N_FFT // 2 + 1)
    mel_points = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(sample_rate / 2)), N_MELS + 2))
    fdiff = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights


def mel_spectrogram(pcm: Int16Array, sample_rate: int) -> dict[str, Any]:
    """Log-mel spectrogram for display: 80 mels, n_fft 1024, hop 256, periodic Hann window, centred frames.

    Values are log10 of mel power, scaled as Whisper does (`(max(x, x.max() - 8) + 4) / 4`), so they sit
    roughly in [-1, 1.5]; `frames[t][m]` is frame t (hop 256 samples), mel band m (low to high).
    """
    audio = pcm.astype(np.float64) / 32768.0
    if audio.size == 0:
        frames: npt.NDArray[np.float64] = np.zeros((0, N_MELS))
    else:
        padded = np.pad(audio, N_FFT // 2, mode="reflect" if audio.size > N_FFT // 2 else "constant")
        n_frames = 1 + (padded.size - N_FFT) // HOP_LENGTH
        idx = np.arange(N_FFT)[None, :] + HOP_LENGTH * np.arange(n_frames)[:, None]
        window = np.hanning(N_FFT + 1)[:-1]
        power = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2
        mel = power @ _mel_filterbank(sample_rate).T
        log_mel = np.log10(np.maximum(mel, 1e-10))
        log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
        frames = (log_mel + 4.0) / 4.0
    return {
        "n_mels": N_MELS,
        "n_fft": N_FFT,
        "hop_length": HOP_LENGTH,
        "sample_rate": sample_rate,
        "frames": np.round(frames, 3).tolist(),
    }
