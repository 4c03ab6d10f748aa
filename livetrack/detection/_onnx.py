"""The stride-4 networks as ONNX graphs (NCHW), and a float32 ONNX Runtime session.

Both the detector and LodeSTAR models are the same trunk (a 4×4 fold, then three
3×3 convolutions, the last dilated; ``training/_model.py``) under a 1×1 head. The
detector's fold is a learned linear space-to-depth: written as ``SpaceToDepth``
with its kernel multiplied into the first convolution, so the graph has one
convolution fewer. LodeSTAR's is rectified, and stays a strided convolution.
Both are quantised by :mod:`._int8`: the detector's on fixed synthetic frames,
LodeSTAR's on its own movie's frames (without them it runs here in float32).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.runtime import spare_cores

Network = Callable[[NDArray[np.float32]], NDArray[np.float32]]
TRUNK = ("fold", "conv1", "conv2", "conv3")
DETECTOR_HEAD = ("logit", "offset_raw", "offset", "detections")
LODESTAR_HEAD = ("votes",)


def network_threads() -> int:
    """The network's thread count as ``set_network_threads`` left it."""
    env = os.environ.get("TF_NUM_INTRAOP_THREADS")
    if env:
        return int(env)
    import tensorflow as tf

    return int(tf.config.threading.get_intra_op_parallelism_threads()) or spare_cores()


class _Graph:
    """Nodes and initialisers being written."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, name: str, value: NDArray[Any]) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def conv(self, name: str, src: str, w: NDArray[Any], b: NDArray[Any], dilation: int = 1) -> str:
        """A 'same' convolution; ``w`` in Keras order (kh, kw, in, out)."""
        from onnx import helper

        w = np.asarray(w)
        pad = dilation * (w.shape[0] // 2)
        self.nodes.append(helper.make_node(
            "Conv", [src, self.const(f"{name}_w", w.transpose(3, 2, 0, 1)),
                     self.const(f"{name}_b", b)],
            [name], name, pads=[pad] * 4, dilations=[dilation, dilation],
        ))  # fmt: skip
        return name

    def model(self, name: str, out: str) -> Any:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "h", "w"])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 3, "gh", "gw"])],
            self.inits,
        )  # fmt: skip
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def _trunk(g: _Graph, model: Any, head: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """Write the trunk into ``g``; its output's name, and the model's layers by name."""
    from onnx import helper

    layers = {layer.name: layer for layer in model.layers}
    if any(name not in layers for name in TRUNK + head):
        raise ValueError(
            f"this ONNX writer knows the layers {TRUNK + head}; "
            f"this model has {[layer.name for layer in model.layers]}"
        )
    fold = layers["fold"]
    k = int(fold.get_config()["kernel_size"][0])
    rectified = fold.get_config()["activation"] == "relu" and fold.get_config()["use_bias"]
    linear = fold.get_config()["activation"] == "linear" and not fold.get_config()["use_bias"]
    conf = {n: layers[n].get_config() for n in TRUNK[1:]}
    if not (rectified or linear) or any(
        c["padding"] != "same" or c["strides"] != (1, 1) for c in conf.values()
    ):
        raise ValueError("unexpected fold or convolution settings for the ONNX writer")
    w1, b1 = layers["conv1"].get_weights()
    if rectified:  # its own strided convolution
        fw, fb = fold.get_weights()
        g.nodes.append(helper.make_node(
            "Conv", ["x", g.const("fold_w", np.asarray(fw).transpose(3, 2, 0, 1)),
                     g.const("fold_b", fb)],
            ["fold"], "fold", strides=[k, k],
        ))  # fmt: skip
        g.nodes.append(helper.make_node("Relu", ["fold"], ["s2d"], "fold_relu"))
    else:
        fold_w = np.asarray(fold.get_weights()[0], np.float64).reshape(k * k, -1)
        # space_to_depth puts block offset (i, j) in channel i·k + j: the fold's order
        w1 = np.einsum("sc,yxco->yxso", fold_w, np.asarray(w1, np.float64))
        g.nodes.append(helper.make_node("SpaceToDepth", ["x"], ["s2d"], "s2d", blocksize=k))
    prev = "s2d"
    for i, (name, w, b) in enumerate(
        [("conv1", w1, b1), ("conv2", *layers["conv2"].get_weights()),
         ("conv3", *layers["conv3"].get_weights())]
    ):  # fmt: skip
        prev = g.conv(f"c{i}", prev, w, b, int(conf[name]["dilation_rate"][0]))
        g.nodes.append(helper.make_node("Relu", [prev], [f"r{i}"], f"r{i}"))
        prev = f"r{i}"
    return prev, layers


def detector_graph(model: Any) -> Any:
    """The float32 ONNX graph of the default detector architecture: (logit, offsets)."""
    from onnx import helper

    g = _Graph()
    prev, layers = _trunk(g, model, DETECTOR_HEAD)
    wl, bl = layers["logit"].get_weights()
    wo, bo = layers["offset_raw"].get_weights()
    scale = float(layers["offset"].get_config()["scale"])
    g.conv("logit", prev, wl, bl)
    g.conv("oraw", prev, wo, bo)
    g.nodes += [
        helper.make_node("Tanh", ["oraw"], ["otanh"], "otanh"),
        helper.make_node("Mul", ["otanh", g.const("scale", np.array(scale))], ["offset"], "offset"),
        helper.make_node("Concat", ["logit", "offset"], ["y"], "y", axis=1),
    ]
    return g.model("livetrack_detector", "y")


def lodestar_graph(model: Any) -> Any:
    """The float32 ONNX graph of a LodeSTAR model: (dx, dy, weight logit) per cell."""
    g = _Graph()
    prev, layers = _trunk(g, model, LODESTAR_HEAD)
    g.conv("y", prev, *layers["votes"].get_weights())
    return g.model("livetrack_lodestar", "y")


def session_network(blob: bytes, threads: int) -> Network:
    """A callable (B, H, W, 1) → (B, H/4, W/4, 3) over an ONNX Runtime CPU session."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])

    def call(a: NDArray[np.float32]) -> NDArray[np.float32]:
        # frame by frame: a frame's numbers do not depend on its stack
        outs = [session.run(None, {"x": a[i : i + 1, :, :, 0][:, None]})[0] for i in range(len(a))]
        out: NDArray[np.float32] = np.concatenate(outs).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(out, np.float32)

    return call
