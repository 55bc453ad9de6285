"""Run inside a replayed image: encode three seconds of a test signal in every format with the image's packages.

Usage: python -I encode_formats.py OUT_DIR
Writes OUT_DIR/<format> (the bytes) and OUT_DIR/result.json (each format's rate, and where the codec libraries
were imported from), for the test to decode on the host with its own decoders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import lameenc
import numpy as np
import soxr

from tts_service.audio import FORMATS, encode_whole


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    t = np.arange(3 * 22050) / 22050
    # A 440 Hz tone, amplitude-modulated at 3 Hz: nothing silent, nothing a codec could skip.
    signal = (8000 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)
    rates = {}
    for fmt in FORMATS:
        data, encoder = encode_whole(signal, 22050, fmt)
        (out / fmt).write_bytes(data)
        rates[fmt] = encoder.sample_rate
    modules = {m.__name__: str(m.__file__) for m in (av, lameenc, soxr)}
    (out / "result.json").write_text(json.dumps({"rates": rates, "modules": modules}))


if __name__ == "__main__":
    main()
