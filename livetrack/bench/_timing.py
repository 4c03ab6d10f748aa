"""Small timing helpers shared by the benchmark sections."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_call(fn: Callable[[], object], repeat: int, warmup: int = 1) -> dict[str, float]:
    """Run ``fn`` and return p50 / p99 / mean wall time in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = np.empty(repeat)
    for i in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t0
    ms = samples * 1e3
    return {
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "n": float(repeat),
    }
