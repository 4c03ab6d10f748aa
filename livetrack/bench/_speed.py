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
import threading
import time
import warnings
from typing import Any

import numpy as np

from livetrack.bench._served import Collector, Served, percentiles, proc_memory_mb, served
from livetrack.detection.precision import native_bfloat16
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


class _MemorySampler:
    """The service's resident memory every 0.25 s, in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss_mb: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.rss_mb.append(proc_memory_mb(self.pid).get("VmRSS", float("nan")))

    def close(self) -> dict[str, float | None]:
        """Stop; RSS at the start and end of the load, and the peak (MB)."""
        self._stop.set()
        self._thread.join(2)
        rss = self.rss_mb
        peak = proc_memory_mb(self.pid).get("VmHWM", float("nan"))
        return {"start": rss[0] if rss else None, "end": rss[-1] if rss else None, "peak": peak}


def _warm_up(svc: Served, frames: np.ndarray, rate_hz: float) -> dict[str, Any]:
    """Ten frames not counted; the service's stats once they are done."""
    svc.stats()  # the service is up (model loaded)
    time.sleep(0.3)
    svc.publish_paced(frames, 10, rate_hz, 0)
    # wait until the warm-up frames are done (a slow service, e.g. at 2048², still
    # holds one after 0.5 s, and would count it in the measured window)
    settle = time.monotonic() + 30
    while True:
        time.sleep(0.5)
        before = svc.stats()
        done = before["processed"] + before["skipped"] + before["rejected_total"]
        if done >= before["received"] >= svc.publisher.stats.sent or time.monotonic() > settle:
            return before


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
    with served(policy, *serve_args) as svc:
        pub = svc.publisher
        before = _warm_up(svc, frames, rate_hz)
        pub0 = (pub.stats.offered, pub.stats.sent, pub.stats.dropped)
        got = Collector(svc.results, 10)  # the warm-up's results would add ~0.7 s
        memory = _MemorySampler(svc.proc.pid)
        svc.publish_paced(frames, int(seconds * rate_hz), rate_hz, 10)
        # let the service drain what it accepted (lossless: a full queue takes a while)
        svc.drained(before["received"] + pub.stats.sent - pub0[1])
        time.sleep(0.5)  # the last results reach the subscriber
        got.close()
        rss = memory.close()
        after = svc.stats()
        svc.stop()
    sender = {
        "offered": pub.stats.offered - pub0[0],
        "sent": pub.stats.sent - pub0[1],
        "dropped": pub.stats.dropped - pub0[2],
    }
    service = {k: after[k] - before[k] for k in ("received", "processed", "skipped")}
    service["rejected"] = after["rejected_total"] - before["rejected_total"]
    stages = {k: v["p50"] for k, v in after["latency_ms"].items()}
    lat = np.array(list(got.latency_ms.values())) if got.latency_ms else np.array([np.nan])
    return {
        "frame": f"{size}x{size}",
        "particles": particles,
        "policy": policy,
        "pipeline": "--no-pipeline" not in serve_args,
        "precision": after.get("precision"),
        "rate_hz": rate_hz,
        "fps": service["processed"] / seconds,
        "latency_ms": percentiles(lat),
        "stages_p50_ms": stages,
        # the definition: receive + decode, normalise, pack + publish (linking is
        # its own stage with its own goal, and the model is the model)
        "service_overhead_ms": sum(
            stages.get(k, 0.0) for k in ("receive", "normalise", "pack_publish")
        ),
        "sent": sender["sent"],
        "dropped_at_sender": sender["dropped"],
        **{k: service[k] for k in ("skipped", "rejected", "received", "processed")},
        "offered": sender["offered"],
        # offered = sent + dropped at the sender; sent = received = processed + skipped + rejected
        "accounted": sender["offered"] == sender["sent"] + sender["dropped"]
        and service["received"] == sender["sent"]
        and service["processed"] + service["skipped"] + service["rejected"] == sender["sent"],
        "results_in_order": all(b > a for a, b in itertools.pairwise(got.seqs)),
        "results_received": len(got.seqs),
        "rss_mb": rss,
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
