"""The network's arithmetic: float32, bfloat16 or int8, XLA or not, and its threads.

Choosing these needs no model; loading one is :mod:`.detector`'s job. TensorFlow is
imported only where a question needs it.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Literal, get_args

from livetrack.runtime import quiet_tensorflow_start, spare_cores

PrecisionName = Literal["auto", "float32", "bfloat16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(PrecisionName)


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def int8_available() -> bool:
    """Whether ONNX Runtime and onnx, which the int8 network needs, are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def requested_precision(precision: str = "auto") -> str:
    """``precision`` with the ``LIVETRACK_PRECISION`` variable applied to ``"auto"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    if precision == "auto":
        precision = os.environ.get("LIVETRACK_PRECISION", "auto")
        if precision not in PRECISIONS:
            raise ValueError(f"LIVETRACK_PRECISION={precision!r}: expected one of {PRECISIONS}")
    return precision


def resolve_precision(precision: str = "auto", int8: bool = True) -> str:
    """The arithmetic a detector will use: float32, bfloat16 or int8.

    ``auto`` on a CPU: int8 through ONNX Runtime (:mod:`._int8`, ~2× faster than
    bfloat16; ``int8=False`` leaves it out, for models it cannot convert), else
    bfloat16 where the CPU has it natively (~1.4× faster than float32; emulated it
    is slower), else float32. On a GPU: float32. The read-out refines positions on
    the raw frame in float64, so the network's arithmetic moves its scores slightly,
    not the positions (docs/training.md gives the numbers).
    """
    precision = requested_precision(precision)
    if precision != "auto":
        return precision
    if not _cpu_only():
        return "float32"
    if int8 and int8_available():
        return "int8"
    return "bfloat16" if native_bfloat16() else "float32"


def set_network_threads(threads: int | None = None) -> int:
    """Threads for the network's operations (TensorFlow intra-op); call before loading.

    ``None``: the ``TF_NUM_INTRAOP_THREADS`` variable if set, else one fewer than
    the cores this process may use (at least 1). The serving loop's read-out needs
    a core of its own; and a parallel convolution split over cores that other
    processes (the camera) also use waits for its slowest thread, which is what
    makes the latency tail (see docs/hardening.md). Returns the number in force.
    """
    env = os.environ.get("TF_NUM_INTRAOP_THREADS")
    if threads is None and env:
        return int(env)  # TensorFlow reads it itself
    if threads is None:
        threads = spare_cores()
    quiet_tensorflow_start()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised in this process: keep what is there
        return int(tf.config.threading.get_intra_op_parallelism_threads()) or threads
    return threads


def resolve_xla(xla: bool | None, precision: str) -> bool:
    """Whether single frames run through an XLA-compiled network.

    ``None`` (auto): yes on the TensorFlow backend in float32 on a CPU, unless
    ``LIVETRACK_XLA=0``. XLA fuses the layers into one compiled program: 12.4 vs
    13.6 ms per 512² frame on one AVX2 core, frames alternating between the two in
    one process. Compilation takes ~0.6 s per frame shape, so a stack of frames
    (a backlog, a movie chunk) runs frame by frame through the one program (on a
    CPU, batching gains little) — and every frame gives the same numbers however
    it arrives. On a GPU, where batching pays, the traced graph stays. The compiled
    program folds the network's space-to-depth layer into the next convolution
    (:mod:`._folded`; ~1 ms less per 512² frame, the same outputs to 1e-5).
    """
    if xla is None:
        env = os.environ.get("LIVETRACK_XLA", "auto")
        if env not in ("auto", "0", "1"):
            raise ValueError(f"LIVETRACK_XLA={env!r}: expected auto, 0 or 1")
        xla = {"auto": None, "0": False, "1": True}[env]
    if xla is None:
        import keras

        xla = keras.backend.backend() == "tensorflow" and precision == "float32" and _cpu_only()
    return bool(xla)


def _cpu_only() -> bool:
    import keras

    if keras.backend.backend() != "tensorflow":
        return False  # other backends: keep what the model was trained in
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


def _in_bfloat16(model: Any) -> Any:
    """The same network computing in bfloat16 (variables, hence weights, stay float32)."""
    import keras

    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = "mixed_bfloat16"
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone
