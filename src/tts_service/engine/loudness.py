"""Loudness: a target in LUFS (ITU-R BS.1770, measured with pyloudnorm) and a true-peak limiter.

Piper's output is peak-normalised per piece, so two voices (or two sentences) with the same peak can differ by
several dB in how loud they sound. With a `loudness` target, a whole answer is measured and brought to it; a
stream cannot wait for its whole audio, so it takes one gain from the voice's measured reference loudness and
limits each chunk's true peaks instead. The limiter keeps peaks under -1 dBTP (the usual streaming ceiling),
measured on a 4x oversampled signal as BS.1770 asks, with gains that change smoothly from block to block.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

from tts_service.engine.audio import FloatArray

CEILING_DBTP = -1.0
_CEILING = 10 ** (CEILING_DBTP / 20)
_BLOCK_SECONDS = 0.01
_INTERSAMPLE_MARGIN = 10 ** (-3 / 20)
LUFS_MIN, LUFS_MAX = -40.0, -5.0


def integrated_lufs(audio: FloatArray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness; -inf for silence or audio shorter than one 400 ms block."""
    import pyloudnorm  # noqa: PLC0415 scipy with it: loaded only when a loudness target is asked for

    if audio.size < int(0.4 * sample_rate):
        return -math.inf
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio.astype(np.float64)))


def gain_for(measured_lufs: float, target_lufs: float) -> float:
    """The linear gain that moves `measured_lufs` to `target_lufs` (1 when nothing could be measured)."""
    if not math.isfinite(measured_lufs):
        return 1.0
    return float(10 ** ((target_lufs - measured_lufs) / 20))


def limit(audio: FloatArray, sample_rate: int) -> FloatArray:
    """The audio with its true peaks held under -1 dBTP; untouched where it is already under."""
    # True peaks exceed sample peaks by well under 3 dB in speech: most chunks need no oversampling at all.
    if audio.size == 0 or float(np.max(np.abs(audio))) < _CEILING * _INTERSAMPLE_MARGIN:
        return audio
    oversampled = soxr.resample(audio.astype(np.float32), sample_rate, sample_rate * 4, quality="HQ")
    if float(np.max(np.abs(oversampled))) <= _CEILING:
        return audio
    block = max(1, int(sample_rate * _BLOCK_SECONDS))
    blocks = -(-audio.size // block)
    peaks = np.zeros(blocks, dtype=np.float32)
    over = np.abs(oversampled)
    for i in range(blocks):
        lo, hi = i * block * 4, min(over.size, (i + 1) * block * 4)
        peaks[i] = float(np.max(over[lo:hi])) if hi > lo else 0.0
    gains = np.minimum(1.0, _CEILING / np.maximum(peaks, 1e-9))
    # A block's neighbours share its reduction (look-ahead and release of one block), so gain never jumps.
    smoothed = np.minimum(gains, np.minimum(np.roll(gains, 1), np.roll(gains, -1)))
    smoothed[0], smoothed[-1] = min(gains[0], gains[min(1, blocks - 1)]), min(gains[-1], gains[max(0, blocks - 2)])
    centres = (np.arange(blocks) + 0.5) * block
    envelope = np.interp(np.arange(audio.size), centres, smoothed).astype(np.float32)
    limited: FloatArray = (audio * envelope).astype(np.float32)
    return limited


def to_loudness(audio: FloatArray, sample_rate: int, target_lufs: float) -> FloatArray:
    """A whole answer brought to `target_lufs`, its true peaks limited.

    Limiting loud peaks lowers the loudness a little (1.5 dB at -16 LUFS on joe-medium), so the gain is corrected
    once more after a first limiting pass.
    """
    out: FloatArray = audio
    for _ in range(2):
        gain = gain_for(integrated_lufs(out, sample_rate), target_lufs)
        if abs(gain - 1.0) < 0.01:
            break
        out = limit((out * gain).astype(np.float32), sample_rate)
    return out
