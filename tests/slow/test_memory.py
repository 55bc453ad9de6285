"""Memory stays bounded whatever the text: 5000 characters without punctuation under 1 GB extra RSS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh process so the peak RSS belongs to this synthesis alone.
PROBE = r"""
import json, random, resource
from tts_service.config import Settings
from tts_service.engine import Engine

def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20

engine = Engine(Settings())
engine.warm_blocking()
baseline = rss_mb()
words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
rng = random.Random(7)
text = ""
while len(text) < 5000:
    text += rng.choice(words) + " "
text = text[:5000]
speech = engine.synthesize_blocking(engine.request(text))
print(json.dumps({
    "baseline_mb": baseline,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "after_mb": rss_mb(),
    "audio_seconds": speech.pcm.size / speech.sample_rate,
    "chunks": speech.chunks,
    "chars": len(text),
}))
"""


@pytest.mark.slow
def test_long_unpunctuated_text_stays_under_a_gigabyte() -> None:
    # GIVEN 5000 characters with no punctuation at all (one "sentence" for Piper)
    env = {"MODELS_DIR": str(REPO / "models"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=600, env=env, check=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    # THEN it is synthesized whole, in many bounded pieces, with under 1 GB of extra resident memory
    assert result["chars"] == 5000
    assert result["audio_seconds"] > 5000 / 6 * 0.18  # ~830 words of speech
    assert result["chunks"] >= 10
    assert result["peak_mb"] - result["baseline_mb"] < 1024, result
    # and the arena does not keep the peak afterwards
    assert result["after_mb"] - result["baseline_mb"] < 400, result
