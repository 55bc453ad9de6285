"""The decoder rewrite for blocked kernels: same samples as the exported graph, blocked where onnxruntime can."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from streaming_vits import graph

from tts_service.engine import Engine, layout
from tts_service.engine.graphs import rewrite_decoder
from tts_service.engine.voices import LoadedVoice

SENTENCE = "The old lighthouse keeper walked along the shore, counting the ships that passed in the night."


def _optimized(model: bytes, tmp_path: Path) -> onnx.ModelProto:
    """The graph onnxruntime actually runs after its optimizations (blocked nodes included)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    return onnx.load(str(tmp_path / "optimized.onnx"))


def _run(model: bytes, feed: layout.Feed) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feed)[0])


def _toy_decoder() -> bytes:
    """A small 1-D net with what Piper's decoder has: speaker conditioning broadcast over time, a dilated
    residual convolution, LeakyRelu, an upsampling ConvTranspose, a residual sum after it and a scalar Div."""
    rng = np.random.default_rng(3)

    def weight(name: str, *shape: int) -> TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    nodes = [
        helper.make_node("Mul", ["z", "mask"], ["zm"]),
        helper.make_node("Conv", ["zm", "w_in", "b_in"], ["x0"], pads=[1, 1]),
        helper.make_node("Conv", ["g", "w_g"], ["cond"]),
        helper.make_node("Add", ["x0", "cond"], ["x"]),
        helper.make_node("LeakyRelu", ["x"], ["xa"], alpha=0.1),
        helper.make_node("Conv", ["xa", "w_dil"], ["xd"], dilations=[3], pads=[3, 3]),
        helper.make_node("Add", ["x", "xd"], ["res"]),
        helper.make_node("ConvTranspose", ["res", "w_up"], ["up"], strides=[4], pads=[2, 2]),
        helper.make_node("LeakyRelu", ["up"], ["upa"], alpha=0.1),
        helper.make_node("Conv", ["upa", "w_k5"], ["k5"], pads=[2, 2]),
        helper.make_node("Add", ["up", "k5"], ["sum"]),
        helper.make_node("Div", ["sum", "two"], ["half"]),
        helper.make_node("Conv", ["half", "w_out"], ["pre"], pads=[3, 3]),
        helper.make_node("Tanh", ["pre"], ["audio"]),
    ]
    inits = [
        weight("w_in", 32, 16, 3),
        weight("b_in", 32),
        weight("w_g", 32, 8, 1),
        weight("w_dil", 32, 32, 3),
        weight("w_up", 32, 16, 8),
        weight("w_k5", 16, 16, 5),
        weight("w_out", 1, 16, 7),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "toy",
            [
                helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 16, "t"]),
                helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n", 1, "t"]),
                helper.make_tensor_value_info("g", TensorProto.FLOAT, ["n", 8, 1]),
            ],
            [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["n", 1, "samples"])],
            inits,
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    return bytes(model.SerializeToString())


def _toy_feed(frames: int) -> layout.Feed:
    rng = np.random.default_rng(frames)
    return {
        "z": rng.standard_normal((1, 16, frames)).astype(np.float32),
        "mask": np.ones((1, 1, frames), dtype=np.float32),
        "g": rng.standard_normal((1, 8, 1)).astype(np.float32),
    }


def _blocked_ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node if node.domain == "com.microsoft.nchwc"]


def test_toy_decoder_rewritten_gives_the_same_samples_and_runs_blocked(tmp_path: Path) -> None:
    exported = _toy_decoder()
    rewritten = layout.rewrite(exported, _toy_feed)
    assert rewritten is not None
    for frames in (1, 5, 40, 333):
        feed = _toy_feed(frames)
        before, after = _run(exported, feed), _run(rewritten, feed)
        assert after.shape == before.shape == (1, 1, 4 * frames)
        assert float(np.max(np.abs(after - before))) <= layout.TOLERANCE * float(np.max(np.abs(before)))

    model = onnx.load_from_string(rewritten)
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    inits = {i.name: i for i in model.graph.initializer}
    assert convs
    assert all(len(inits[n.input[1]].dims) == 4 for n in convs)  # every convolution is 2-D now

    # Shapes are written as the probes found them: the speaker term keeps its one step of time, the rest follow
    # the input's frames, times 4 after the upsampling.
    info = model.graph.value_info
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in info}
    assert shapes["cond__2d"] == [1, 32, 1, 1]
    assert shapes["res__2d"] == [1, 32, 1, "frames_x1"]
    assert shapes["up__2d"] == [1, 16, 1, "frames_x4"]

    runs = _optimized(rewritten, tmp_path)
    blocked = _blocked_ops(runs)
    assert blocked.count("Conv") >= 5
    assert not [n for n in runs.graph.node if n.op_type == "LeakyRelu"]  # each fused into a blocked convolution
    # Both residual sums (one after a dilated convolution, one after the upsampling) fold into the convolution
    # that feeds them; only the speaker term, which broadcasts over time, is a sum of its own.
    assert len([n for n in runs.graph.node if n.op_type == "Add"]) == 1
    assert len([n for n in runs.graph.node if n.domain == "com.microsoft.nchwc" and len(n.input) == 4]) == 2
    assert not _blocked_ops(_optimized(exported, tmp_path))  # as exported, nothing ran blocked


def test_a_rewrite_that_changes_the_samples_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    make = layout._identity

    def off_by_a_little(channels: int, source: str, target: str, inits: dict[str, TensorProto]) -> onnx.NodeProto:
        node = make(channels, source, target, inits)
        name = node.input[1]
        inits[name] = numpy_helper.from_array(np.full((channels, 1, 1, 1), 1.001, dtype=np.float32), name)
        return node

    monkeypatch.setattr(layout, "_identity", off_by_a_little)
    assert layout.rewrite(_toy_decoder(), _toy_feed) is None


def test_no_rewrite_where_onnxruntime_has_no_blocked_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert layout.rewrite(_toy_decoder(), _toy_feed) is None


@pytest.fixture(scope="module")
def exported_split(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> tuple[Path, graph.SplitModel]:
    entry = engine.registry.voices[engine.registry.default_voice]
    out = tmp_path_factory.mktemp("exported")
    meta = graph.split(Path(entry.model.path), out, sample_rate=22050, verbose=False)
    return out, meta


def test_default_voice_runs_the_rewritten_decoder(engine: Engine) -> None:
    voice: LoadedVoice = engine.load(engine.registry.voices[engine.registry.default_voice])
    assert voice.graphs is not None
    assert voice.graphs.files.layout == "blocked"


def test_rewritten_voice_decoder_matches_the_exported_one_on_real_speech(
    exported_split: tuple[Path, graph.SplitModel], engine: Engine, tmp_path: Path
) -> None:
    folder, meta = exported_split
    exported = (folder / meta.decoder).read_bytes()
    copy = tmp_path / "decoder.onnx"
    copy.write_bytes(exported)
    assert rewrite_decoder(copy, meta.seam.z_p, meta.seam.mask, meta.seam.g) == "blocked"
    rewritten = copy.read_bytes()
    assert _blocked_ops(_optimized(rewritten, tmp_path)).count("Conv") >= 60

    voice = engine.load(engine.registry.voices[engine.registry.default_voice])
    assert voice.graphs is not None
    ids = voice.piper.phonemes_to_ids(voice.piper.phonemize(SENTENCE)[0])
    z_p, mask, _, _ = voice.graphs.frontend(0, ids, voice.graphs.scales(None, None, None), None)
    for lo, hi in ((0, 24 + 32), (0, z_p.shape[2]), (40, 140)):
        feed: layout.Feed = {meta.seam.z_p: z_p[:, :, lo:hi], meta.seam.mask: mask[:, :, lo:hi]}
        before, after = _run(exported, feed), _run(rewritten, feed)
        assert before.shape == after.shape
        assert float(np.max(np.abs(before))) > 0.05  # speech, not silence
        assert float(np.max(np.abs(after - before))) <= layout.TOLERANCE * float(np.max(np.abs(before)))


def test_a_failing_rewrite_keeps_the_exported_decoder(
    exported_split: tuple[Path, graph.SplitModel], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder, meta = exported_split
    copy = tmp_path / "decoder.onnx"
    copy.write_bytes((folder / meta.decoder).read_bytes())

    def broken(decoder: bytes, feed: layout.FeedFor) -> bytes | None:
        raise RuntimeError("onnx could not load it")

    monkeypatch.setattr(layout, "rewrite", broken)
    assert rewrite_decoder(copy, meta.seam.z_p, meta.seam.mask, meta.seam.g) == "exported"
    assert copy.read_bytes() == (folder / meta.decoder).read_bytes()
