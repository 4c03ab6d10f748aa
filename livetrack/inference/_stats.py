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
    latency_ms: dict[str, deque[float]] = field(default_factory=dict)

    def add_latency(self, stage: str, ms: float) -> None:
        """Record one latency sample for a stage (bounded window)."""
        self.latency_ms.setdefault(stage, deque(maxlen=WINDOW)).append(ms)

    def percentiles(self) -> dict[str, dict[str, float]]:
        """p50 / p99 per stage over the recent window."""
        out = {}
        for stage, values in self.latency_ms.items():
            if values:
                a = np.fromiter(values, float)
                out[stage] = {
                    "p50": float(np.percentile(a, 50)),
                    "p99": float(np.percentile(a, 99)),
                    "n": len(a),
                }
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
            "latency_ms": self.percentiles(),
        }
