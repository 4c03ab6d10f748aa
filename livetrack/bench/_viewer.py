"""Benchmark section ``viewer``: what a live viewer costs the service.

The service (its loop, the network replaced by the input path and 100 fixed
detections, as in ``overhead``) takes 512² frames at 100 frames/s. In alternate
phases a viewer is attached or not: a separate process (as napari is) subscribing
to every result and drawing the newest state at 30 Hz through
:class:`~livetrack.viewer.live.LiveView` (no Qt: the drawing cost is the viewer's
own, on its own cores). Compared: the service's p99 per frame (receive to publish)
and end to end, and how many frames the viewer drew and left undrawn.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from typing import Any

import numpy as np

from livetrack.bench._overhead import NormaliseOnly
from livetrack.service import Service, ServiceConfig
from livetrack.wire.client import FramePublisher, ResultSubscriber

RATE_HZ = 100.0
DRAW_HZ = 30.0


def _viewer(address: str, seconds: float, out: Any) -> None:
    """A viewer's loop without Qt: subscribe, feed, snapshot at 30 Hz; report counts."""
    from livetrack.viewer.live import LiveView

    sub = ResultSubscriber(address, queue=1000)
    view = LiveView()
    draws, seq, undrawn = 0, -1, 0
    next_draw = time.monotonic()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = sub.recv(timeout_ms=5)
        if r is not None:
            view.feed(r)
        if time.monotonic() >= next_draw:
            snap = view.snapshot()
            if snap is not None:
                draws += 1
                seq, undrawn = snap.seq, snap.undrawn
            next_draw += 1 / DRAW_HZ
    sub.close()
    out.put({"draws": draws, "undrawn": undrawn, "last_seq": seq})


def _phase(service: Service, pub: FramePublisher, frames: list[Any], n: int, first: int) -> None:
    t0 = time.perf_counter()
    for k in range(n):
        pub.publish(frames[k % len(frames)], seq=first + k)
        wait = t0 + (k + 1) / RATE_HZ - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    end = time.monotonic() + 10
    while service.stats.processed < first + n and time.monotonic() < end:
        time.sleep(0.02)


def bench_viewer(quick: bool) -> list[dict[str, Any]]:
    """Rows: each phase's service p99 with and without the viewer (see module docstring)."""
    n = 300 if quick else 1500  # frames per phase (3 s or 15 s at 100 frames/s)
    rng = np.random.default_rng(2)
    frames = [(rng.poisson(100, (512, 512)) + 100).astype(np.uint16) for _ in range(8)]
    local = "tcp://127.0.0.1:0"
    service = Service(
        NormaliseOnly(100, 512), ServiceConfig(local, local, local, policy="lossless")
    )
    th = threading.Thread(target=service.run, daemon=True)
    th.start()
    assert service.ready.wait(10)
    pub = FramePublisher(service.endpoints["frames"], queue=64)
    sub = ResultSubscriber(service.endpoints["results"])  # the controller, as in use
    ctx = mp.get_context("spawn")
    rows: list[dict[str, Any]] = []
    time.sleep(0.3)
    try:
        for k, attached in enumerate((False, True, False, True)):
            out: Any = ctx.Queue()
            viewer = None
            if attached:
                viewer = ctx.Process(
                    target=_viewer, args=(service.endpoints["results"], n / RATE_HZ + 3, out)
                )
                viewer.start()
                time.sleep(2.0)  # the process starts and subscribes
            service.stats.latency_ms.clear()
            _phase(service, pub, frames, n, k * n)
            lat = {s: np.asarray(v) for s, v in service.stats.latency_ms.items()}
            row: dict[str, Any] = {
                "phase": k + 1,
                "viewer": attached,
                "frames": n,
                "service_p50_ms": float(np.percentile(lat["service"], 50)),
                "service_p99_ms": float(np.percentile(lat["service"], 99)),
                "end_to_end_p99_ms": float(np.percentile(lat["end_to_end"], 99)),
            }
            if viewer is not None:
                viewer.join(30)
                row.update(out.get(timeout=10))
            rows.append(row)
    finally:
        service.stop()
        th.join(5)
        pub.close()
        sub.close()
    return rows
