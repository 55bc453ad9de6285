"""Loudness targets (ITU-R BS.1770) and the true-peak limiter."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest
import soxr
from fastapi.testclient import TestClient

from tests.support.audio import parse_wav
from tts_service.engine import Engine, SpeechOptions
from tts_service.engine.audio import FloatArray
from tts_service.engine.loudness import integrated_lufs, limit

TEXT = "The morning train was late again. Passengers waited on the cold platform with their coffee."


def _lufs(pcm: np.ndarray) -> float:
    return integrated_lufs(cast(FloatArray, pcm.astype(np.float32) / 32767), 22050)


def _true_peak_db(pcm: np.ndarray) -> float:
    over = soxr.resample(pcm.astype(np.float32) / 32767, 22050, 88200, quality="HQ")
    return float(20 * np.log10(np.max(np.abs(over))))


@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_tts_meets_its_loudness_target_under_the_true_peak_ceiling(client: TestClient, target: float) -> None:
    response = client.post("/tts", json={"text": TEXT, "loudness": target}, headers={"Accept": "audio/wav"})
    assert response.status_code == 200
    pcm = parse_wav(response.content).samples
    assert abs(_lufs(pcm) - target) < 1.0  # EBU R128's tolerance for live programmes
    assert _true_peak_db(pcm) <= -0.9


def test_voices_differ_less_with_a_target_than_without(engine: Engine) -> None:
    quiet = "hmm, well, perhaps."
    loud = "STOP! Right there! Do not move!"
    plain = [_lufs(engine.synthesize_blocking(engine.request(t)).pcm) for t in (quiet, loud)]
    aimed = [
        _lufs(engine.synthesize_blocking(engine.request(t, SpeechOptions(loudness=-20))).pcm) for t in (quiet, loud)
    ]
    assert abs(aimed[0] - aimed[1]) < 1.0 <= abs(plain[0] - plain[1]) + 1.0
    assert all(abs(a + 20) < 1.0 for a in aimed)


def test_streams_take_one_gain_and_never_clip(engine: Engine) -> None:
    req = engine.request(TEXT + " Then the doors opened!", SpeechOptions(loudness=-18))
    pcm = np.concatenate([c.pcm for c in engine.iter_stream_chunks(req)])
    assert abs(_lufs(pcm) + 18) < 2.0  # one gain from the voice's reference, not a measurement of this text
    assert _true_peak_db(pcm) <= -0.9
    plain = np.concatenate([c.pcm for c in engine.iter_stream_chunks(engine.request(TEXT))])
    assert int(np.max(np.abs(plain))) < 32767  # the fixed stream gain is limited, never clipped


def test_the_limiter_only_touches_what_is_over() -> None:
    t = np.arange(22050) / 22050
    quiet = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert np.array_equal(limit(quiet, 22050), quiet)
    hot = quiet * 3.0
    limited = limit(hot, 22050)
    over = soxr.resample(limited, 22050, 88200, quality="HQ")
    assert float(np.max(np.abs(over))) <= 10 ** (-1 / 20) * 1.02


def test_loudness_out_of_range_is_refused(client: TestClient) -> None:
    response = client.post("/tts", json={"text": "Hi.", "loudness": -80})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
