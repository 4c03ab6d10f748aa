"""Accounting for the service: counters, rejections by reason, latency windows."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WINDOW = 2000  # latency samples kept per stage (bounded)


@dataclass
class ServiceStats:
    """Everything the service counts. ``received = processed + skipped + rejected + queued``."""

    received: int = 0
    processed: int = 0
    skipped: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    published: Counter[str] = field(default_factory=Counter)
    control_requests: int = 0
    control_rejected: Counter[str] = field(default_factory=Counter)
    latency_ms: dict[str, deque[float]] = field(default_factory=dict)

    def add_latency(self, stage: str, ms: float) -> None:
        """Record one latency sample for a stage (bounded window)."""
        self.latency_ms.setdefault(stage, deque(maxlen=WINDOW)).append(ms)

    def percentiles(self) -> dict[str, dict[str, float]]:
        """p50 / p99 per stage over the recent window (``np.percentile``'s values)."""
        out = {}
        for stage, values in self.latency_ms.items():
            if values:
                p50, p99 = _p50_p99(np.fromiter(values, float, count=len(values)))
                out[stage] = {"p50": p50, "p99": p99, "n": len(values)}
        return out

    def snapshot(self) -> dict[str, Any]:
        """A plain-dict snapshot for the status topic and the control socket."""
        return {
            "received": self.received,
            "processed": self.processed,
            "skipped": self.skipped,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            "published": dict(self.published),
            "control_requests": self.control_requests,
            "control_rejected": dict(self.control_rejected),
            "latency_ms": self.percentiles(),
        }


_QUANTILES = np.array([0.50, 0.99])


def _p50_p99(a: np.ndarray) -> tuple[float, float]:
    """``np.percentile(a, [50, 99])`` (linear interpolation) from one partition.

    The status is computed in the serving loop once a second; two ``np.percentile``
    calls per stage made that ~0.9 ms (nine stages of 2000 samples), a stall on
    ~1 frame in 100 at 100 frames/s — the frames a p99 counts; now ~0.4 ms.
    """
    n = len(a)
    r = _QUANTILES * (n - 1)
    lo = r.astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    a.partition(np.unique(np.concatenate([lo, hi])))  # in place: ``a`` is ours
    v = a[lo] + (r - lo) * (a[hi] - a[lo])
    return float(v[0]), float(v[1])
