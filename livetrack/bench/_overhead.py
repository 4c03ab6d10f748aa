"""Benchmark section ``overhead``: the service's own cost per frame, without a model.

The issue's definition: receive + decode, normalise, pack + publish of a 512²
uint16 frame (linking has its own goal). The real :class:`Service` runs in a
thread with a detector that normalises the frame exactly as the network's input
path does and returns 100 fixed detections instead of running a network, so the
numbers are the service's, not the model's, and no model thread competes for the
cores. Frames arrive over loopback TCP at a rate the service easily keeps up with.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.detection.detector import Detections
from livetrack.detection.normalise import robust_normalise
from livetrack.service import Service, ServiceConfig
from livetrack.wire.client import FramePublisher, ResultSubscriber


class NormaliseOnly:
    """The network's input path, then 100 fixed detections (no network)."""

    def __init__(self, particles: int, size: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self._xy = rng.uniform(5, size - 5, (2, particles))
        self.normalised = 0

    def detect(self, frame: NDArray[np.generic], threshold: float | None = None) -> Detections:
        t0 = time.perf_counter()
        img = robust_normalise(frame)[None, ..., None]
        self.normalised += int(img.shape[0])
        n = self._xy.shape[1]
        ones = np.ones(n)
        return Detections(
            self._xy[0].copy(),
            self._xy[1].copy(),
            ones,
            ones * 1000.0,
            ones * 10.0,
            ones * 2.0,
            {"normalise": (time.perf_counter() - t0) * 1e3},
        )


def bench_overhead(quick: bool) -> list[dict[str, Any]]:
    """Receive, decode, normalise, pack and publish: p50/p99 per 512² uint16 frame."""
    size, particles = 512, 100
    n = 200 if quick else 2000
    rng = np.random.default_rng(1)
    frames = [(rng.poisson(100, (size, size)) + 100).astype(np.uint16) for _ in range(8)]
    local = "tcp://127.0.0.1:0"
    det = NormaliseOnly(particles, size)
    service = Service(det, ServiceConfig(local, local, local, policy="lossless"))
    th = threading.Thread(target=service.run, daemon=True)
    th.start()
    assert service.ready.wait(10)
    pub = FramePublisher(service.endpoints["frames"], queue=64)
    sub = ResultSubscriber(service.endpoints["results"])  # someone listens, as in use
    time.sleep(0.3)
    try:
        for k in range(n):
            pub.publish(frames[k % len(frames)], seq=k)
            time.sleep(0.004)  # ~250 frames/s: no backlog, so no batching
        end = time.monotonic() + 10
        while service.stats.processed < n and time.monotonic() < end:
            time.sleep(0.05)
        lat = {k: np.asarray(v) for k, v in service.stats.latency_ms.items()}
    finally:
        service.stop()
        th.join(5)
        pub.close()
        sub.close()
    parts = ("receive", "normalise", "pack_publish")
    per_frame = sum(lat[k] for k in parts)  # same frames, same order in every window
    return [
        {
            "frame": f"{size}x{size} uint16",
            "particles": particles,
            "frames": int(service.stats.processed),
            **{f"{k}_p50_ms": float(np.median(lat[k])) for k in (*parts, "link")},
            "overhead_p50_ms": float(np.median(per_frame)),
            "overhead_p99_ms": float(np.percentile(per_frame, 99)),
        }
    ]
