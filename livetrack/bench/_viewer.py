"""Benchmark section ``viewer``: what a live viewer draws, and what it costs the service.

The service (its loop, the network replaced by the input path and 100 fixed
detections, as in ``overhead``) takes 512² frames at 100 frames/s. In alternate
phases a viewer is attached or not: a separate process, as napari is. With a display
and napari installed it is napari with the live widget (``livetrack.viewer.measure``:
the service's preview on at the rate the widget asks (60 Hz), frames, detections and tracks
drawn by napari's own event loop on a canvas that shows the frame at 1:1); without,
a Qt-free loop subscribing to every result and taking a
:class:`~livetrack.viewer.live.LiveView` snapshot at 30 Hz (``viewer`` says which).
Compared: the service's p99 per frame (receive to publish) and end to end; and the
pictures the viewer drew per second. Phases 1–2 share every core; in phases 3–4 this
process (service and sender) keeps core 0 and the viewer gets core 1 (``cores``), as
on a workstation where the display does not run on the service's core.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from livetrack.bench._overhead import NormaliseOnly
from livetrack.service import Service, ServiceConfig
from livetrack.viewer import live
from livetrack.wire.client import FramePublisher, ResultSubscriber

RATE_HZ = 100.0
DRAW_HZ = 30.0
#: the preview's rate: the widget's default, or ``LIVETRACK_PREVIEW_HZ`` (up to 60)
PREVIEW_HZ = int(os.environ.get("LIVETRACK_PREVIEW_HZ", str(live.PREVIEW_HZ)))


def _viewer(endpoints: dict[str, str], seconds: float, out: Any) -> None:
    """A viewer's loop without Qt: preview on, subscribe, snapshot at 30 Hz; report counts."""
    from livetrack.viewer.live import LiveView
    from livetrack.wire import protocol as wire
    from livetrack.wire.client import ControlClient

    control = ControlClient(endpoints["control"])
    control.request("set_preview", hz=PREVIEW_HZ)
    sub = ResultSubscriber(
        endpoints["results"], topics=(*wire.TOPICS, wire.TOPIC_PREVIEW), queue=1000
    )
    view = LiveView()
    draws = 0
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
            next_draw += 1 / DRAW_HZ
    sub.close()
    control.request("set_preview", hz=0)
    control.close()
    out.put({
        "viewer": "LiveView (no Qt)", "draws_per_s": draws / seconds,
        "pictures_received": view.images, "pictures_undrawn": view.images_undrawn,
    })  # fmt: skip


class _Viewer:
    """The viewer process of one phase: napari if it can draw here, else the Qt-free loop."""

    def __init__(
        self, endpoints: dict[str, str], seconds: float, cpus: set[int] | None = None
    ) -> None:
        self.proc: Any = None
        if os.environ.get("DISPLAY") and importlib.util.find_spec("napari") is not None:
            args = [endpoints["results"], endpoints["control"], str(seconds), str(PREVIEW_HZ)]
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "livetrack.viewer.measure", *args],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            if cpus is not None:
                os.sched_setaffinity(self.proc.pid, cpus)
            assert self.proc.stdout is not None
            self.proc.stdout.readline()  # "ready": napari is up, the widget subscribed
            time.sleep(1.0)  # its warm-up: the first pictures and layers
        else:
            ctx = mp.get_context("spawn")
            self.out: Any = ctx.Queue()
            self.loop = ctx.Process(target=_viewer, args=(endpoints, seconds, self.out))
            self.loop.start()
            time.sleep(2.0)  # the process starts and subscribes

    def result(self) -> dict[str, Any]:
        if self.proc is not None:
            out, err = self.proc.communicate(timeout=60)
            if self.proc.returncode != 0:
                raise RuntimeError(f"the napari viewer failed: {err[-2000:]}")
            got: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
            return got
        self.loop.join(30)
        got = self.out.get(timeout=10)
        return got


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


def _pin_this_process(cpus: set[int]) -> None:
    """Every thread of this process (the service's loop included) onto ``cpus``."""
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), cpus)


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
    rows: list[dict[str, Any]] = []
    time.sleep(0.3)
    everywhere = os.sched_getaffinity(0)
    apart = len(everywhere) >= 2
    try:
        for k, attached in enumerate((False, True, False, True)):
            own = apart and k >= 2
            if own:
                _pin_this_process({min(everywhere)})
            cpus = everywhere - {min(everywhere)} if own else None
            viewer = _Viewer(service.endpoints, n / RATE_HZ, cpus) if attached else None
            service.stats.latency_ms.clear()
            _phase(service, pub, frames, n, k * n)
            lat = {s: np.asarray(v) for s, v in service.stats.latency_ms.items()}
            row: dict[str, Any] = {
                "phase": k + 1,
                "viewer": attached,
                "cores": "service 0, viewer the others" if own else "shared",
                "frames": n,
                "service_p50_ms": float(np.percentile(lat["service"], 50)),
                "service_p99_ms": float(np.percentile(lat["service"], 99)),
                "end_to_end_p99_ms": float(np.percentile(lat["end_to_end"], 99)),
            }
            if viewer is not None:
                row.update(viewer.result())
            rows.append(row)
    finally:
        _pin_this_process(everywhere)
        service.stop()
        th.join(5)
        pub.close()
        sub.close()
    return rows
