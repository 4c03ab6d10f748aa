"""The stride-4 networks in int8 through ONNX Runtime (``auto`` on a CPU, or ``"int8"``).

The Keras model is written out as an ONNX graph by :mod:`._onnx` (the detector's
space-to-depth layer folded into the next convolution, as in :mod:`._folded`) and
quantised statically:
per-channel int8 weights, uint8 activations whose ranges come from a fixed set of
synthetic calibration frames, so every process quantises the same way; the heads
stay float. One 512² frame: 3.0 ms on one AVX-512 core, against 6.0 ms for the
bfloat16 graph and 10.1 ms for float32 under XLA. The raw outputs move (logits by
up to ~0.4), but the read-out refines every position by MLE on the raw frame:
detections and their errors match float32 (docs/training.md).

A LodeSTAR model is calibrated on its own movie's frames, kept beside it by
``adapt --self-supervised``: its votes move by up to ~0.3 px, and the detections
on the real movies match float32's (docs/adapt.md).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.detection._onnx import Network, detector_graph, network_threads, session_network
from livetrack.detection.normalise import robust_normalise

#: the heads stay float (+0.5 ms at 512²): quantised, the offsets shared the logits'
#: scale (0.07 cell steps, 0.28 px) and a logit moved by up to 0.9 at the threshold
_FLOAT_NODES = ("logit", "oraw", "otanh", "offset", "y")

_CACHE: dict[tuple[str, int, int], Network] = {}


def cached_int8_network(model: Any, model_file: Path, sigma_px: float) -> Network:
    """:func:`int8_network` for a model file, quantised once per process and thread count."""
    return _cached(model_file, lambda threads: int8_network(model, sigma_px, threads))


def cached_lodestar_int8(model: Any, model_file: Path, calibration: Path) -> Network:
    """A LodeSTAR model in int8, calibrated on its own movie's normalised frames.

    ``calibration``: the ``.npy`` stack of them, read only when the model is quantised
    (once per process). Its 1×1 head stays float: the votes are the positions.
    """
    from livetrack.detection._onnx import lodestar_graph

    def make(threads: int) -> Network:
        frames = list(np.load(calibration).astype(np.float32))
        return session_network(quantise(lodestar_graph(model), frames, ("y",)), threads)

    return _cached(model_file, make)


def _cached(model_file: Path, make: Callable[[int], Network]) -> Network:
    threads = network_threads()
    key = (str(model_file.resolve()), model_file.stat().st_mtime_ns, threads)
    if key not in _CACHE:
        _CACHE[key] = make(threads)
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
    blob = quantise(detector_graph(model), _calibration_frames(sigma_px), _FLOAT_NODES)
    return session_network(blob, threads)


def quantise(graph: Any, frames: list[NDArray[np.float32]], float_nodes: tuple[str, ...]) -> bytes:
    """``graph`` quantised statically on ``frames`` (normalised (H, W)); the model's bytes."""
    try:
        import onnxruntime  # noqa: F401  (the session's; the quantizer may be imported already)
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

    class _Frames(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter([{"x": np.asarray(f, np.float32)[None, None]} for f in frames])

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
                nodes_to_exclude=list(float_nodes),
            )
            return dst.read_bytes()
        finally:
            logging.disable(logging.NOTSET)


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
