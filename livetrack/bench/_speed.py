"""Benchmark section ``speed``: frames through the real service path, next to trackpy.

``livetrack serve`` runs in its own process (as in production); this process plays
the camera: it sends pre-rendered frames with a ``FramePublisher`` at a fixed rate,
stamping ``t_acq_ns`` at send time, and receives the ``trk`` results with a
``ResultSubscriber`` in a thread. Latency is receive time − ``t_acq_ns`` (same
clock); per-stage times come from the service's own accounting. The baseline is
what a user writes in a pymmcore-plus ``frameReady`` callback: ``trackpy.locate`` +
trackpy's ``Linker.next_level`` per frame, timed on the same frames in this run.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from livetrack import protocol as wire
from livetrack.client import (
    ControlClient,
    FramePublisher,
    ResultSubscriber,
    free_loopback_addresses,
)
from livetrack.inference._precision import native_bfloat16
from livetrack.simulation.scenarios import Scenario


def _trackpy_fps(frames: np.ndarray, diameter: int = 9, minmass: float = 100.0) -> float:
    import trackpy
    from trackpy.linking.linking import Linker

    trackpy.quiet()
    times = []
    linker = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t, f in enumerate(frames):
            t0 = time.perf_counter()
            feats = trackpy.locate(f, diameter, minmass=minmass)
            coords = feats[["y", "x"]].to_numpy()
            if linker is None:
                linker = Linker(8.0, memory=2)
                linker.init_level(coords, t)
            else:
                linker.next_level(coords, t)
            times.append(time.perf_counter() - t0)
    return float(1.0 / np.mean(times[1:]))


def _proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process in MB, from /proc (Linux; empty elsewhere)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = float(value.split()[0]) / 1024.0
    except OSError:
        pass
    return out


def run_service_speed(
    size: int,
    particles: int,
    rate_hz: float,
    seconds: float,
    policy: str = "realtime",
    with_trackpy: bool = True,
    serve_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One measurement: frames of ``size``² with ``particles`` at ``rate_hz`` for ``seconds``.

    ``serve_args``: extra ``livetrack serve`` options (e.g. ``--no-pipeline``).
    """
    frames, _ = Scenario("speed", particles, 7.0, 20, size=size, seed=size).render()
    a_frames, a_results, a_control = free_loopback_addresses(3)
    cmd = [
        sys.executable,
        "-m",
        "livetrack.cli",
        "serve",
        "--policy",
        policy,
        "--frames",
        a_frames,
        "--results",
        a_results,
        "--control",
        a_control,
        *serve_args,
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ctl = ControlClient(a_control, timeout_ms=60000, retries=1)
    sub = ResultSubscriber(a_results, topics=(wire.TOPIC_TRACKS,))
    pub = FramePublisher(a_frames, queue=8)
    latencies: list[float] = []
    seqs: list[int] = []
    rss_mb: list[float] = []
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            r = sub.recv(100)
            # the warm-up frames' results (seq < 10) wait in the socket until this
            # thread starts: counted, they put ~0.7 s into the first latencies
            if r is not None and r.seq >= 10:
                latencies.append((time.time_ns() - r.t_acq_ns) / 1e6)
                seqs.append(r.seq)

    def sample_memory() -> None:
        while not stop.wait(0.25):
            rss_mb.append(_proc_memory_mb(proc.pid).get("VmRSS", float("nan")))

    try:
        ctl.request("status")  # the service is up (model loaded)
        time.sleep(0.3)
        for k in range(10):  # warm-up, not counted
            pub.publish(frames[k % len(frames)], seq=k)
            time.sleep(1.0 / rate_hz)
        # the warm-up frames are done (a slow service, e.g. at 2048², still holds one
        # after 0.5 s, and would count it in the measured window)
        settle = time.monotonic() + 30
        while True:
            time.sleep(0.5)
            before = ctl.request("stats")["status"]
            done = before["processed"] + before["skipped"] + before["rejected_total"]
            idle = done >= before["received"] >= pub.stats.sent
            if idle or time.monotonic() > settle:
                break
        pub0 = (pub.stats.offered, pub.stats.sent, pub.stats.dropped)
        latencies.clear()
        th = threading.Thread(target=collect, daemon=True)
        th.start()
        mem = threading.Thread(target=sample_memory, daemon=True)
        mem.start()
        n = int(seconds * rate_hz)
        t_start = time.perf_counter()
        for k in range(n):
            target = t_start + k / rate_hz
            while (dt := target - time.perf_counter()) > 0:
                time.sleep(min(dt, 0.002))
            pub.publish(frames[k % len(frames)], seq=10 + k)
        # let the service drain what it accepted (lossless: a full queue takes a while)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            after = ctl.request("stats")["status"]
            done = after["processed"] + after["skipped"] + after["rejected_total"]
            sent = pub.stats.sent - pub0[1]
            if after["received"] >= before["received"] + sent and done >= after["received"]:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # the last results reach the subscriber
        stop.set()
        th.join(2)
        mem.join(2)
        peak = _proc_memory_mb(proc.pid).get("VmHWM", float("nan"))
        after = ctl.request("stats")["status"]
        ctl.request("shutdown")
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in (ctl, sub, pub):
            c.close()
    processed = after["processed"] - before["processed"]
    stages = {k: v["p50"] for k, v in after["latency_ms"].items()}
    # the definition: receive + decode, normalise, pack + publish (linking is
    # its own stage with its own goal, and the model is the model)
    overhead = sum(stages.get(k, 0.0) for k in ("receive", "normalise", "pack_publish"))
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "frame": f"{size}x{size}",
        "particles": particles,
        "policy": policy,
        "pipeline": "--no-pipeline" not in serve_args,
        "precision": after.get("precision"),
        "rate_hz": rate_hz,
        "fps": processed / seconds,
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))},
        "stages_p50_ms": stages,
        "service_overhead_ms": overhead,
        "sent": pub.stats.sent - pub0[1],
        "dropped_at_sender": pub.stats.dropped - pub0[2],
        "skipped": after["skipped"] - before["skipped"],
        "rejected": after["rejected_total"] - before["rejected_total"],
        "received": after["received"] - before["received"],
        "processed": processed,
        # offered = sent + dropped at the sender; sent = received = processed + skipped + rejected
        "offered": pub.stats.offered - pub0[0],
        "accounted": (
            pub.stats.offered - pub0[0] == pub.stats.sent - pub0[1] + pub.stats.dropped - pub0[2]
            and after["received"] - before["received"] == pub.stats.sent - pub0[1]
            and processed
            + after["skipped"]
            - before["skipped"]
            + after["rejected_total"]
            - before["rejected_total"]
            == pub.stats.sent - pub0[1]
        ),
        "results_in_order": all(b > a for a, b in itertools.pairwise(seqs)),
        "results_received": len(seqs),
        "rss_mb": {
            "start": rss_mb[0] if rss_mb else None,
            "end": rss_mb[-1] if rss_mb else None,
            "peak": peak,
        },
        "trackpy_fps": _trackpy_fps(frames) if with_trackpy else None,
        # a bounded sample of the latencies, for the histogram in the report
        "latency_samples_ms": [round(float(v), 3) for v in lat[:: max(1, len(lat) // 1000)]],
    }


def bench_speed(quick: bool) -> list[dict[str, Any]]:
    """512² at 100 frames/s (and 2048² at 20 frames/s in the full run), 100 particles."""
    rows = [run_service_speed(512, 100, 100.0, 3.0 if quick else 20.0)]
    if not quick:
        # the same load without the pipeline (ratio in one run), the capacity when
        # offered more than 100 frames/s, and a big frame
        rows.append(run_service_speed(512, 100, 100.0, 20.0, serve_args=("--no-pipeline",)))
        rows.append(run_service_speed(512, 100, 150.0, 20.0, with_trackpy=False))
        # the TensorFlow network beside the default (int8 through ONNX Runtime on a CPU)
        tf_precision = "bfloat16" if native_bfloat16() else "float32"
        rows.append(
            run_service_speed(
                512, 100, 100.0, 20.0, with_trackpy=False, serve_args=("--precision", tf_precision)
            )
        )
        rows.append(run_service_speed(2048, 100, 20.0, 10.0))
    return rows


def bench_overload(quick: bool) -> list[dict[str, Any]]:
    """~10× the service's capacity (512², 100 particles, ~150 frames/s) in both policies.

    Reports exact accounting, order of results (lossless), latency (realtime) and
    the service's memory (RSS at start and end of the load, peak).
    """
    seconds = 4.0 if quick else 60.0
    rows = []
    for policy in ("realtime", "lossless"):
        r = run_service_speed(512, 100, 1500.0, seconds, policy=policy, with_trackpy=False)
        r.pop("latency_samples_ms")
        rows.append(r)
    return rows
