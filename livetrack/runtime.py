"""Process-level runtime settings: the allocator, versions, cores, a quiet TensorFlow.

Frame-sized numpy temporaries (1–8 MB) are above glibc's default mmap threshold,
so each one is mapped and unmapped per frame and every page faults on first touch.
On virtual machines that costs more than the arithmetic: rendering a 512² frame
took 6.0 ms instead of 0.96 ms here. Raising the mmap and trim thresholds keeps
those buffers in the heap and reuses them. Applied only by the CLI (a process-wide
choice), never on library import; ``LIVETRACK_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_applied: bool | None = None


def tune_allocator(threshold_bytes: int = 64 * 1024 * 1024) -> bool:
    """Keep frame-sized buffers in the heap (glibc only). Returns whether it applied."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("LIVETRACK_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, threshold_bytes),
            (_M_TRIM_THRESHOLD, 2 * threshold_bytes),
            (_M_TOP_PAD, threshold_bytes),
        )
    )
    _applied = ok
    return ok


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions of ``names`` (None where a package is missing)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for pkg in names:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def allocator_tuned() -> bool:
    """Whether :func:`tune_allocator` has been applied in this process."""
    return bool(_applied)


def spare_cores() -> int:
    """One fewer than the cores this process may use (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


# TensorFlow's native start-up lines on a machine without a GPU: absl's pre-init
# notice, I/W lines (oneDNN, CPU features, "could not find cuda drivers") and the
# cuInit error. They come before absl reads any setting, so only the fd can hold them.
_TF_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} "
    r"|E\d{4} .*(cuInit|cuda_platform|cudart|cuda_dnn|cuda_fft|cuda_blas)"
    r"|To enable the following instructions:)"
)


@contextmanager
def _native_stderr_filtered(noise: re.Pattern[str]) -> Iterator[None]:
    """Hold what native code writes to fd 2, then pass on every line ``noise`` does not match."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [
                line
                for line in held.read().decode(errors="replace").splitlines(keepends=True)
                if not noise.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_tensorflow_start() -> None:
    """Start TensorFlow (once) without its native start-up noise; errors still show.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` and ``KERAS_BACKEND=tensorflow`` unless the user
    set them. Call before the first ``import keras`` or ``import tensorflow`` of a
    code path; with another Keras backend (JAX on a GPU machine) it imports nothing.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules or os.environ["KERAS_BACKEND"] != "tensorflow":
        return
    with _native_stderr_filtered(_TF_NOISE):
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA start, where cuInit complains
