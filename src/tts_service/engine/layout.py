"""Rewrite a split decoder so onnxruntime runs its convolutions with its blocked (NCHWc) x86 kernels.

Piper's decoder (flow + HiFi-GAN) is a 1-D convolutional net over (N, C, T) tensors. onnxruntime's NCHWc
transformer, which swaps convolutions for blocked-layout kernels on x86 at `ORT_ENABLE_ALL`, only takes 2-D
convolutions (4-D weights), so as exported every Conv runs as im2col + GEMM. The rewrite below makes the same
net 2-D over (N, C, 1, T), which onnxruntime then runs blocked:

- every Conv / ConvTranspose with constant 3-D weights becomes its 2-D twin (kernel 1 x k), and the elementwise
  ops between them follow in 4-D, so the blocked layout flows from one convolution to the next;
- a LeakyRelu gets a depthwise identity convolution in front (x * 1.0, exact), which onnxruntime fuses with the
  LeakyRelu into one blocked convolution: its transformer keeps Relu, Tanh and Sigmoid blocked, not LeakyRelu;
- a ConvTranspose's output goes through a depthwise identity convolution too, so the residual sums that start
  from it are blocked and fold into the convolutions that produce them;
- the 4-D tensors get their shapes written into the graph (time as a symbol of the input's frames), because the
  transformer only folds a sum into a convolution when it can prove both sides have one shape, and its own
  inference loses track after a dilated convolution.

Measured (`bench/bench_layout.py`): a 1-thread decoder run takes 0.77-0.81x the time of the exported graph, at
any window size. Every rewrite is checked against the exported graph on probe inputs before it is kept, and is
kept only where the transformer exists (x86-64); elsewhere the exported graph runs as it was.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

if TYPE_CHECKING:
    import onnx

Feed = dict[str, npt.NDArray[np.generic]]
FeedFor = Callable[[int], Feed]
"""The decoder's inputs for a window of that many frames."""

_UNARY = frozenset({"LeakyRelu", "Relu", "Tanh", "Sigmoid"})
_BINARY = frozenset({"Add", "Mul", "Div", "Sub"})
_AXIS = "layout_axis_h"
# onnxruntime's NCHWc block is 8 channels (AVX2) or 16 (AVX-512); a convolution whose channels are not a
# multiple of the block stays unblocked, so an identity convolution there would only add work.
_BLOCK = 16
# Two probe lengths with no common factor tell a tensor whose time is `k x frames` from a fixed one.
_PROBES = (16, 23)
_CHECK_FRAMES = (1, 24, 57, 150)
TOLERANCE = 1e-4
"""Largest sample difference to the exported graph a rewrite may show, relative to the exported output's peak
(-80 dB, ~3 int16 steps once peak-normalised). Measured on en_US-joe-medium: 1e-5 on probe inputs, 3e-6 to 4e-5
on real sentences: float rounding of the reordered sums, the size of changing the number of threads."""


def supported() -> bool:
    """Whether onnxruntime has blocked convolution kernels here (x86-64 only)."""
    return platform.machine().lower() in {"x86_64", "amd64"}


def rewrite(decoder: bytes, feed: FeedFor) -> bytes | None:
    """The decoder rewritten for blocked kernels, or None when it cannot be, or would not match the exported one
    (within `TOLERANCE` of its peak at every checked length)."""
    import onnx  # noqa: PLC0415 only when a voice is first split

    if not supported():
        return None
    original = onnx.load_from_string(decoder)
    model = _to_2d(original)
    if not any(node.op_type in ("Conv", "ConvTranspose") for node in model.graph.node):
        return None
    shapes = _probe(model, feed)
    model = _blocked_friendly(model, shapes)
    _write_shapes(model, _probe(model, feed))
    rewritten: bytes = model.SerializeToString()
    if _max_difference(decoder, rewritten, feed) > TOLERANCE:
        return None
    return rewritten


def _session(model: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # the transformer's notes about unused value_info are not ours to show
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def _max_difference(original: bytes, rewritten: bytes, feed: FeedFor) -> float:
    """The largest difference between the two graphs' outputs relative to the original's peak, over the checks."""
    before, after = _session(original), _session(rewritten)
    worst = 0.0
    for frames in _CHECK_FRAMES:
        inputs = feed(frames)
        a = np.asarray(before.run(None, inputs)[0], dtype=np.float32)
        b = np.asarray(after.run(None, inputs)[0], dtype=np.float32)
        if a.shape != b.shape or not np.all(np.isfinite(b)):
            return float("inf")
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(a))), 1e-3))
    return worst


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    from onnx import helper  # noqa: PLC0415

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _scalars(model: onnx.ModelProto) -> set[str]:
    """Names of constants with one element: they broadcast against a 4-D tensor as they did against 3-D."""
    out = {init.name for init in model.graph.initializer if int(np.prod(init.dims)) == 1}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None and int(np.prod(value.dims)) == 1:
                out.add(node.output[0])
    return out


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    from onnx import shape_inference  # noqa: PLC0415

    inferred = shape_inference.infer_shapes(model)
    graph = inferred.graph
    ranks = {init.name: len(init.dims) for init in graph.initializer}
    for info in (*graph.value_info, *graph.input, *graph.output):
        if info.type.tensor_type.HasField("shape"):
            ranks[info.name] = len(info.type.tensor_type.shape.dim)
    return ranks


def _conv_2d(node: onnx.NodeProto, source: str, weight: str) -> onnx.NodeProto | None:
    """The 2-D twin of a 1-D Conv / ConvTranspose over (N, C, 1, T), or None for options it cannot carry."""
    from onnx import helper  # noqa: PLC0415

    attrs = _attrs(node)
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or "output_shape" in attrs:
        return None
    lifted: dict[str, Any] = {}
    for key, value in attrs.items():
        if key in ("kernel_shape", "strides", "dilations"):
            lifted[key] = [1, *cast("list[int]", value)]
        elif key == "output_padding":
            lifted[key] = [0, *cast("list[int]", value)]
        elif key == "pads":
            begin, end = cast("list[int]", value)
            lifted[key] = [0, begin, 0, end]
        else:
            lifted[key] = value
    return helper.make_node(node.op_type, [source, weight, *node.input[2:]], [node.output[0] + "__2d"], **lifted)


def _to_2d(model: onnx.ModelProto) -> onnx.ModelProto:
    """1-D convolutions with constant weights as 2-D ones, and the elementwise ops between them in 4-D.

    4-D tensors are made on demand (Unsqueeze of the 3-D one) and the 3-D form only where a node that stays 3-D
    reads one (Squeeze), so a chain of convolutions and elementwise ops never leaves 4-D.
    """
    import onnx  # noqa: PLC0415
    from onnx import helper, numpy_helper  # noqa: PLC0415

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    ranks, scalars = _ranks(model), _scalars(model)
    graph.initializer.append(numpy_helper.from_array(np.array([2], dtype=np.int64), _AXIS))
    four: dict[str, str] = {}  # 3-D name -> its 4-D twin
    three = {i.name for i in graph.input} | set(inits)
    nodes: list[onnx.NodeProto] = []

    def as_4d(name: str) -> str:
        if name not in four:
            four[name] = name + "__2d"
            nodes.append(helper.make_node("Unsqueeze", [name, _AXIS], [four[name]]))
        return four[name]

    def as_3d(name: str) -> None:
        if name not in three and name in four:
            nodes.append(helper.make_node("Squeeze", [four[name], _AXIS], [name]))
            three.add(name)

    for node in graph.node:
        lifted: onnx.NodeProto | None = None
        if node.op_type in ("Conv", "ConvTranspose") and node.input[1] in inits and len(inits[node.input[1]].dims) == 3:
            weight = node.input[1] + "__2d"
            if weight not in inits:
                array = numpy_helper.to_array(inits[node.input[1]])
                inits[weight] = numpy_helper.from_array(np.ascontiguousarray(array[:, :, None, :]), weight)
                graph.initializer.append(inits[weight])
            lifted = _conv_2d(node, node.input[0], weight)
            if lifted is not None:
                lifted.input[0] = as_4d(node.input[0])
        elif node.op_type in _UNARY and node.input[0] in four:
            lifted = helper.make_node(node.op_type, [four[node.input[0]]], [node.output[0] + "__2d"])
            lifted.attribute.extend(node.attribute)
        elif (
            node.op_type in _BINARY
            and any(i in four for i in node.input)
            and all(i in four or i in scalars or ranks.get(i) == 3 for i in node.input)
        ):
            inputs = [i if i in scalars else as_4d(i) for i in node.input]
            lifted = helper.make_node(node.op_type, inputs, [node.output[0] + "__2d"])
        if lifted is not None:
            nodes.append(lifted)
            four[node.output[0]] = lifted.output[0]
            continue
        for name in node.input:
            as_3d(name)
        nodes.append(node)
        three.update(node.output)
    for output in graph.output:
        as_3d(output.name)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    return model


Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...]]]


def _probe(model: onnx.ModelProto, feed: FeedFor) -> Shapes:
    """The shape of every 4-D tensor at each probe length, read from real runs of the graph."""
    import onnx  # noqa: PLC0415
    from onnx import helper  # noqa: PLC0415

    probe = onnx.ModelProto.FromString(model.SerializeToString())
    outputs = {o.name for o in probe.graph.output}
    names = [out for node in probe.graph.node for out in node.output if out.endswith("__2d") and out not in outputs]
    for name in names:
        probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    session = _session(probe.SerializeToString())
    wanted = [o.name for o in session.get_outputs()]
    runs = [dict(zip(wanted, session.run(None, feed(frames)), strict=True)) for frames in _PROBES]
    return {
        name: (tuple(np.shape(runs[0][name])), tuple(np.shape(runs[1][name])))
        for name in names
        if np.ndim(runs[0][name]) == 4
    }


def _identity(channels: int, source: str, target: str, inits: dict[str, onnx.TensorProto]) -> onnx.NodeProto:
    from onnx import helper, numpy_helper  # noqa: PLC0415

    weight = f"layout_identity_{channels}"
    if weight not in inits:
        inits[weight] = numpy_helper.from_array(np.ones((channels, 1, 1, 1), dtype=np.float32), weight)
    return helper.make_node("Conv", [source, weight], [target], kernel_shape=[1, 1], group=channels)


def _blocked_friendly(model: onnx.ModelProto, shapes: Shapes) -> onnx.ModelProto:
    """Identity depthwise convolutions where they keep the blocked layout flowing (see the module docstring)."""
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    added = dict(inits)
    nodes = []

    def channels(name: str) -> int:
        shape = shapes.get(name)
        return shape[0][1] if shape is not None else 0

    for node in graph.node:
        if node.op_type == "LeakyRelu" and channels(node.input[0]) % _BLOCK == 0 and node.input[0] in shapes:
            blocked = node.input[0] + "_blocked__2d"
            nodes.append(_identity(channels(node.input[0]), node.input[0], blocked, added))
            node.input[0] = blocked
            nodes.append(node)
        elif node.op_type == "ConvTranspose" and node.output[0] in shapes and channels(node.output[0]) % _BLOCK == 0:
            result = node.output[0]
            node.output[0] = result + "_raw__2d"
            nodes.append(node)
            nodes.append(_identity(channels(result), node.output[0], result, added))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(init for name, init in added.items() if name not in inits)
    return model


def _time(lengths: Iterable[int]) -> int | str | None:
    """A probed time length as a fixed size, a multiple of the input's frames, or None when it is neither."""
    first, second = lengths
    if first == second:
        return first
    factor, rest = divmod(first, _PROBES[0])
    if rest == 0 and factor > 0 and second == factor * _PROBES[1]:
        return f"frames_x{factor}"
    return None


def _write_shapes(model: onnx.ModelProto, shapes: Shapes) -> None:
    """Record each 4-D tensor's shape; onnxruntime then proves the two sides of a residual sum equal."""
    import onnx  # noqa: PLC0415
    from onnx import helper  # noqa: PLC0415

    del model.graph.value_info[:]
    for name, (first, second) in shapes.items():
        if first[:3] != second[:3]:
            continue
        time = _time((first[3], second[3]))
        if time is None:
            continue
        dims: list[int | str] = [*first[:3], time]
        model.graph.value_info.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims))
