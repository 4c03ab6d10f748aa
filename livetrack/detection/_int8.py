"""The detector network in int8 through ONNX Runtime (``auto`` on a CPU, or ``"int8"``).

The Keras model is written out as an ONNX graph (its space-to-depth layer folded
into the next convolution, as in :mod:`._folded`) and quantised statically:
per-channel int8 weights, uint8 activations whose ranges come from a fixed set of
synthetic calibration frames, so every process quantises the same way; the heads
stay float. One 512² frame: 3.0 ms on one AVX-512 core, against 6.0 ms for the
bfloat16 graph and 10.1 ms for float32 under XLA. The raw outputs move (logits by
up to ~0.4), but the read-out refines every position by MLE on the raw frame:
detections and their errors match float32 (docs/training.md).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.detection.normalise import robust_normalise
from livetrack.runtime import spare_cores

Network = Callable[[NDArray[np.float32]], NDArray[np.float32]]
_EXPECTED = ("fold", "conv1", "conv2", "conv3", "logit", "offset_raw", "offset", "detections")


#: the heads stay float (+0.5 ms at 512²): quantised, the offsets shared the logits'
#: scale (0.07 cell steps, 0.28 px) and a logit moved by up to 0.9 at the threshold
_FLOAT_NODES = ("logit", "oraw", "otanh", "offset", "y")

_CACHE: dict[tuple[str, int, int], Network] = {}


def network_threads() -> int:
    """The network's thread count as ``set_network_threads`` left it."""
    env = os.environ.get("TF_NUM_INTRAOP_THREADS")
    if env:
        return int(env)
    import tensorflow as tf

    return int(tf.config.threading.get_intra_op_parallelism_threads()) or spare_cores()


def cached_int8_network(model: Any, model_file: Path, sigma_px: float) -> Network:
    """:func:`int8_network` for a model file, quantised once per process and thread count."""
    threads = network_threads()
    key = (str(model_file.resolve()), model_file.stat().st_mtime_ns, threads)
    if key not in _CACHE:
        _CACHE[key] = int8_network(model, sigma_px, threads)
    return _CACHE[key]


def int8_network(model: Any, sigma_px: float, threads: int) -> Network:
    """A callable (B, H, W, 1) → (B, H/4, W/4, 3) running ``model`` in int8.

    Raises
    ------
    RuntimeError
        If ONNX Runtime is not installed.
    ValueError
        If the model is not the detector architecture this writer knows.
    """
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise RuntimeError(
            "precision int8 needs ONNX Runtime and onnx (livetrack's dependencies; "
            "this environment lacks them): pip install onnxruntime onnx, "
            "or use --precision auto"
        ) from None
    import onnx

    graph = _onnx_graph(model)
    frames = _calibration_frames(sigma_px)

    class _Frames(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter([{"x": f[None, None]} for f in frames])

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # the quantiser's advice goes to the root logger
        try:
            src, dst = Path(tmp) / "f32.onnx", Path(tmp) / "int8.onnx"
            onnx.save(graph, src)
            quantize_static(
                str(src),
                str(dst),
                _Frames(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_exclude=list(_FLOAT_NODES),
            )
            blob = dst.read_bytes()
        finally:
            logging.disable(logging.NOTSET)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])

    def call(a: NDArray[np.float32]) -> NDArray[np.float32]:
        # frame by frame, as the XLA path: a frame's numbers do not depend on its stack
        outs = [session.run(None, {"x": a[i : i + 1, :, :, 0][:, None]})[0] for i in range(len(a))]
        out: NDArray[np.float32] = np.concatenate(outs).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(out, np.float32)

    return call


def _onnx_graph(model: Any) -> Any:
    """The float32 ONNX graph of the default detector architecture (NCHW)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers = {layer.name: layer for layer in model.layers}
    if any(name not in layers for name in _EXPECTED):
        raise ValueError(
            f"precision int8 knows the default detector's layers {_EXPECTED}; "
            f"this model has {[layer.name for layer in model.layers]}"
        )
    fold = layers["fold"]
    k = int(fold.get_config()["kernel_size"][0])
    conf = {n: layers[n].get_config() for n in ("conv1", "conv2", "conv3")}
    if fold.get_config()["use_bias"] or any(
        c["padding"] != "same" or c["strides"] != (1, 1) for c in conf.values()
    ):
        raise ValueError("precision int8: unexpected fold or convolution settings")
    inits: list[Any] = []

    def const(name: str, value: NDArray[Any]) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def kernel(w: NDArray[Any]) -> NDArray[Any]:  # Keras (kh, kw, in, out) → ONNX (out, in, kh, kw)
        return np.asarray(w).transpose(3, 2, 0, 1)

    fold_w = np.asarray(fold.get_weights()[0], np.float64).reshape(k * k, -1)
    w1, b1 = layers["conv1"].get_weights()
    # space_to_depth puts block offset (i, j) in channel i·k + j: the fold kernel's order
    w1 = np.einsum("sc,yxco->yxso", fold_w, np.asarray(w1, np.float64))
    nodes = [helper.make_node("SpaceToDepth", ["x"], ["s2d"], "s2d", blocksize=k)]
    prev = "s2d"
    for i, (name, w, b) in enumerate(
        [("conv1", w1, b1), ("conv2", *layers["conv2"].get_weights()),
         ("conv3", *layers["conv3"].get_weights())]
    ):  # fmt: skip
        d = int(conf[name]["dilation_rate"][0])
        pad = d * (np.asarray(w).shape[0] // 2)
        nodes.append(
            helper.make_node(
                "Conv",
                [prev, const(f"w{i}", kernel(w)), const(f"b{i}", b)],
                [f"c{i}"],
                f"c{i}",
                pads=[pad] * 4,
                dilations=[d, d],
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], f"r{i}"))
        prev = f"r{i}"
    wl, bl = layers["logit"].get_weights()
    wo, bo = layers["offset_raw"].get_weights()
    scale = float(layers["offset"].get_config()["scale"])
    nodes += [
        helper.make_node(
            "Conv", [prev, const("wl", kernel(wl)), const("bl", bl)], ["logit"], "logit"
        ),
        helper.make_node(
            "Conv", [prev, const("wo", kernel(wo)), const("bo", bo)], ["oraw"], "oraw"
        ),
        helper.make_node("Tanh", ["oraw"], ["otanh"], "otanh"),
        helper.make_node("Mul", ["otanh", const("scale", np.array(scale))], ["offset"], "offset"),
        helper.make_node("Concat", ["logit", "offset"], ["y"], "y", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "livetrack_detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "gh", "gw"])],
        inits,
    )
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out.ir_version = 8
    onnx.checker.check_model(out)
    return out


#: (PSF width in σ, photons, spots, background photons/px, gradient, kind): the trained
#: case from faint to bright, then what real frames add (other PSF widths, uneven light,
#: absorbing particles darker than the background, brightfield's bright core in a dark
#: ring). An activation beyond its calibrated range clips, so the ranges must cover them.
_CALIBRATION = (
    (1.0, 300.0, 150, 10.0, 0.0, "spot"),
    (1.0, 1000.0, 100, 10.0, 0.0, "spot"),
    (1.0, 3000.0, 60, 10.0, 0.0, "spot"),
    (1.0, 20000.0, 30, 10.0, 0.0, "spot"),
    (0.7, 2000.0, 200, 30.0, 0.5, "spot"),
    (1.5, 5000.0, 60, 10.0, 0.3, "spot"),
    (1.0, 3000.0, 60, 200.0, 0.0, "dark"),
    (1.5, 20000.0, 30, 50.0, 0.0, "ring"),
)


def _calibration_frames(sigma_px: float, size: int = 256) -> list[NDArray[np.float32]]:
    """Normalised synthetic frames (:data:`_CALIBRATION`), fixed seed."""
    rng = np.random.default_rng(20261123)
    frames = []
    for width, photons, count, background, gradient, kind in _CALIBRATION:
        sigma = width * sigma_px
        outer = 2 * sigma if kind == "ring" else sigma
        r = int(np.ceil(6 * outer))  # beyond 6σ a spot adds < 1e-7 of its light
        image = background * (1 + gradient * np.linspace(-1, 1, size))[None, :].repeat(size, 0)
        for x, y in rng.uniform(4, size - 4, (count, 2)):
            y0, y1 = max(int(y) - r, 0), min(int(y) + r + 1, size)
            x0, x1 = max(int(x) - r, 0), min(int(x) + r + 1, size)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            r2 = (xx - x) ** 2 + (yy - y) ** 2
            spot = photons / (2 * np.pi * sigma**2) * np.exp(-r2 / (2 * sigma**2))
            if kind == "ring":
                spot -= 0.6 * photons / (2 * np.pi * outer**2) * np.exp(-r2 / (2 * outer**2))
            if kind == "dark":
                spot = -np.minimum(spot, 0.9 * background)
            image[y0:y1, x0:x1] = np.maximum(image[y0:y1, x0:x1] + spot, 0.0)
        frames.append(robust_normalise(rng.poisson(image).astype(np.uint16) + 100))
    return frames
