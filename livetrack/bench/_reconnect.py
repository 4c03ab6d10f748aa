"""Benchmark section ``reconnect`` (on request): ``kill -9`` the service mid-stream.

The simulated microscope (a real ``UniMMCore``) streams 50 frames/s through the
frame pump to ``livetrack serve`` (trackpy's detector: the model is not what is
measured). Each trial kills the service with SIGKILL, checks that the camera kept
acquiring and that its drops are counted, restarts the service, and measures the
time from the new service answering its control socket to its first received
frame — the frame publisher reconnecting by itself.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from livetrack.wire.client import FramePublisher, free_loopback_addresses


def bench_reconnect(quick: bool) -> list[dict[str, Any]]:
    """Reconnection time after ``kill -9`` and restart, over several trials."""
    from livetrack.acquisition.devices import simulated_core
    from livetrack.acquisition.publisher import CoreFramePump
    from livetrack.config import load_simulation_config, presets_dir
    from livetrack.demo.processes import start_service

    sim = load_simulation_config(presets_dir() / "fluorescent_beads.toml")
    cam = sim.camera.model_copy(update={"width": 128, "height": 128})
    sim = sim.model_copy(update={"camera": cam})
    addr = dict(zip(("frames", "results", "control"), free_loopback_addresses(3), strict=True))
    core, _ = simulated_core(sim, seed=1)
    pump = CoreFramePump(core, FramePublisher(addr["frames"], queue=4))
    log = Path(tempfile.mkdtemp(prefix="livetrack-reconnect-")) / "serve.log"
    trials = 3 if quick else 10
    reconnect_s: list[float] = []
    acquired_while_down: list[int] = []
    dropped_while_down: list[int] = []
    serve, control = start_service(addr, log, "--classical")
    pump.start_continuous()
    try:
        for _ in range(trials):
            time.sleep(1.0)  # streaming
            serve.proc.kill()  # SIGKILL: no goodbye
            serve.proc.wait(10)
            serve.stop()  # already dead: closes its log
            control.close()
            before = pump.counts()
            time.sleep(1.0)  # the service is gone
            after = pump.counts()
            acquired_while_down.append(after.acquired - before.acquired)
            dropped_while_down.append(after.dropped - before.dropped)
            serve, control = start_service(addr, log, "--classical")
            t_up = time.monotonic()
            while control.request("stats")["status"]["received"] == 0:
                if time.monotonic() - t_up > 30:
                    break
                time.sleep(0.005)
            reconnect_s.append(time.monotonic() - t_up)
    finally:
        pump.stop()
        pump.publisher.close()
        control.close()
        serve.stop()
    r = np.asarray(reconnect_s)
    c = pump.counts()
    return [
        {
            "trials": trials,
            "reconnect_s": {
                "median": float(np.median(r)),
                "max": float(r.max()),
                "all": [round(float(v), 3) for v in r],
            },
            "camera_frames_while_down_per_s": float(np.median(acquired_while_down)),
            "dropped_while_down_per_s": float(np.median(dropped_while_down)),
            "accounted": c.acquired == c.sent + c.dropped,
            "acquired": c.acquired,
            "sent": c.sent,
            "dropped": c.dropped,
        }
    ]
