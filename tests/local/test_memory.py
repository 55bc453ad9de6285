"""Memory stays bounded whatever the text and speed, measured on the whole shim process."""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest

from tests.support.shim import running_shim

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def unpunctuated(chars: int, seed: int) -> str:
    rng = random.Random(seed)
    text = ""
    while len(text) < chars:
        text += rng.choice(WORDS) + " "
    return text[:chars].strip()


def status_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident since start) of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def rss_within(pid: int, below_mb: float, secs: float) -> float:
    """The process's VmRSS once it is under `below_mb`, or at the end of `secs` if it never gets there.

    The 3 s of the memory budget ("under 700 MB three seconds after") is a bound of the spec, not a
    synchronisation: the workers hand their arenas back when they fall idle, so the condition is polled and the
    test goes on as soon as it holds; only a process still over budget waits the whole bound.
    """
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if (rss := status_mb(pid)["VmRSS"]) < below_mb:
            return rss
        time.sleep(0.05)
    return status_mb(pid)["VmRSS"]


def synthesize(base: str, text: str, speed: float) -> float:
    """POST /tts as raw WAV; the audio's duration in seconds."""
    response = httpx.post(f"{base}/tts?format=wav", json={"text": text, "speed": speed}, timeout=600)
    assert response.status_code == 200, response.text[:200]
    return (len(response.content) - 44) / 2 / 22050


@pytest.mark.slow
def test_slow_unpunctuated_text_keeps_the_shim_bounded() -> None:
    # GIVEN the shim with the audio cache off, so nothing but synthesis holds memory, whose sessions have all
    # already decoded full windows (a long sentence alone on an idle machine): their peaks must not add up below
    with running_shim({"TTS_CACHE_MB": "0"}) as shim:
        pid = shim.proc.pid
        idle = status_mb(pid)["VmRSS"]
        assert synthesize(shim.base, unpunctuated(300, seed=11), speed=0.5) > 300 / 6 * 0.35
        # WHEN 2,000 characters with no punctuation at all are spoken at half speed, twice (two texts: what the idle
        # trim cannot give back depends on where the text's runs left their buffers)
        for seed in (3, 6):
            seconds = synthesize(shim.base, unpunctuated(2000, seed=seed), speed=0.5)
            # THEN the audio is all there, the whole process peaked under 1.2 GB, and 3 s later holds under 700 MB
            assert seconds > 2000 / 6 * 0.35
            peak = status_mb(pid)["VmHWM"]
            assert peak < 1200, {"seed": seed, "idle_mb": idle, "peak_mb": peak}
            after = rss_within(pid, below_mb=700, secs=3.0)
            assert after < 700, {"seed": seed, "idle_mb": idle, "peak_mb": peak, "after_mb": after}


@pytest.mark.slow
def test_five_thousand_unpunctuated_characters_stay_under_a_gigabyte_extra() -> None:
    with running_shim({"TTS_CACHE_MB": "0"}) as shim:
        pid = shim.proc.pid
        idle = status_mb(pid)["VmRSS"]
        started = time.perf_counter()
        seconds = synthesize(shim.base, unpunctuated(5000, seed=7), speed=1.0)
        assert seconds > 5000 / 6 * 0.18, time.perf_counter() - started  # ~830 words of speech
        peak = status_mb(pid)["VmHWM"]
        assert peak - idle < 1024, {"idle_mb": idle, "peak_mb": peak}
