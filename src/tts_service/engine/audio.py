"""PCM and WAV encoding, and the mel spectrogram offered for visualisation."""

from __future__ import annotations

import math
import struct
from functools import lru_cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt

SAMPLE_WIDTH: Final = 2
WAV_HEADER_BYTES: Final = 44
CHANNELS: Final = 1
# A data size that tells streaming players "length unknown, read until the end" (what ffmpeg/sox write).
STREAMING_DATA_SIZE: Final = 0xFFFFFFFF - 36

N_MELS: Final = 80
N_FFT: Final = 1024
HOP_LENGTH: Final = 256
MAX_SPECTROGRAM_FRAMES: Final = 2048
"""Most spectrogram frames one answer carries (~24 s at hop 256 and 22050 Hz; longer audio gets a longer hop)."""

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


def mel_spectrogram(pcm: Int16Array, sample_rate: int, max_frames: int = MAX_SPECTROGRAM_FRAMES) -> dict[str, Any]:
    """Log-mel spectrogram for display: 80 mels, n_fft 1024, periodic Hann window, centred frames.

    Values are log10 of mel power, scaled as Whisper does (`(max(x, x.max() - 8) + 4) / 4`), so they sit
    roughly in [-1, 1.5]; `frames[t][m]` is frame t, mel band m (low to high). Frames are every 256 samples,
    or, when that would make more than `max_frames`, every multiple of 256 that keeps them within it (the
    answer's `hop_length` says which): a display needs no more columns, and the work and memory stay bounded
    (float32, about 8 KB per frame) however long the audio. CPU-bound: call it off the event loop.
    """
    hop = HOP_LENGTH
    if pcm.size == 0:
        frames: npt.NDArray[np.float32] = np.zeros((0, N_MELS), dtype=np.float32)
    else:
        natural = 1 + pcm.size // HOP_LENGTH
        hop = HOP_LENGTH * max(1, math.ceil(natural / max(1, max_frames)))
        # Padded as int16 and converted frame by frame: no float copy of the whole audio.
        padded = np.pad(pcm, N_FFT // 2, mode="reflect" if pcm.size > N_FFT // 2 else "constant")
        n_frames = 1 + (padded.size - N_FFT) // hop
        idx = np.arange(N_FFT)[None, :] + hop * np.arange(n_frames)[:, None]
        window = (np.hanning(N_FFT + 1)[:-1] / 32768.0).astype(np.float32)
        spectrum = np.fft.rfft(padded[idx].astype(np.float32) * window, axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        mel = power @ _mel_filterbank(sample_rate).T.astype(np.float32)
        log_mel = np.log10(np.maximum(mel, np.float32(1e-10)))
        log_mel = np.maximum(log_mel, log_mel.max() - np.float32(8.0))
        frames = (log_mel + np.float32(4.0)) / np.float32(4.0)
    return {
        "n_mels": N_MELS,
        "n_fft": N_FFT,
        "hop_length": hop,
        "sample_rate": sample_rate,
        # Rounded in float64: float32 values would print with all their binary digits (0.86100000143...).
        "frames": np.round(frames.astype(np.float64), 3).tolist(),
    }
