"""``livetrack soak``: the live pipeline for a long time, watched for memory and latency.

Demo-like wiring (``serve`` + simulated ``acquire`` + centring ``control``, each a
process on ipc sockets) at a fixed frame rate; every ``sample_s`` the resident
memory of each process (``/proc/PID/status``) and the service's counters and
latency percentiles are recorded. Growth is judged after a warm-up (the first
10 % of the run): memory at the end vs after warm-up, and p99 latency of the
last samples vs the first ones.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from livetrack.bench._served import proc_memory_mb
from livetrack.demo.processes import Child, start_service
from livetrack.wire.client import ServiceUnavailableError


def run_soak(seconds: float, fps: float, out: Path, sample_s: float = 10.0) -> dict[str, Any]:
    """Run the soak and return its figures (also written to ``out/soak.json`` and a PNG)."""
    out.mkdir(parents=True, exist_ok=True)
    sock = Path(tempfile.mkdtemp(prefix="livetrack-soak-"))
    addr = {n: f"ipc://{sock / n}" for n in ("frames", "results", "control", "actuation")}
    serve, control = start_service(addr, out / "serve.log")
    children = [serve]
    samples: list[dict[str, Any]] = []
    try:
        ctl = Child(
            "control",
            ["control", "demo", "--results", addr["results"], "--actuation", addr["actuation"]],
            out / "control.log",
        )
        children.append(ctl)
        ctl.wait_for_line("controller listening", 60)
        acq = Child(
            "acquire",
            [
                "acquire",
                "--simulate",
                "demo",
                "--frames",
                addr["frames"],
                "--actuation",
                addr["actuation"],
                "--seconds",
                str(seconds),
                "--interval-ms",
                str(1000.0 / fps),
                "--stats-json",
                str(out / "acquire.json"),
            ],
            out / "acquire.log",
        )
        children.append(acq)
        t0 = time.monotonic()
        while acq.running():
            time.sleep(sample_s)
            if not acq.running():  # the run is over: its memory is gone
                break
            st = control.request("stats")["status"]
            lat = st["latency_ms"].get("end_to_end", {})
            samples.append(
                {
                    "t_s": round(time.monotonic() - t0, 1),
                    "rss_mb": {c.name: proc_memory_mb(c.proc.pid).get("VmRSS") for c in children},
                    "received": st["received"],
                    "processed": st["processed"],
                    "skipped": st["skipped"],
                    "rejected": st["rejected_total"],
                    "p50_ms": lat.get("p50"),
                    "p99_ms": lat.get("p99"),
                }
            )
        with contextlib.suppress(ServiceUnavailableError):
            control.request("shutdown")
    finally:
        control.close()
        for c in reversed(children):
            c.stop()
        shutil.rmtree(sock, ignore_errors=True)
    figures = _judge(samples, seconds, fps)
    figures["acquisition"] = json.loads((out / "acquire.json").read_text())["frames"]
    (out / "soak.json").write_text(json.dumps({**figures, "samples": samples}, indent=2))
    _plot(samples, out / "soak.png")
    return figures


def _judge(samples: list[dict[str, Any]], seconds: float, fps: float) -> dict[str, Any]:
    """Memory growth and latency creep after the warm-up (first 10 % of samples)."""
    n = len(samples)
    if n < 4:
        return {"seconds": seconds, "fps": fps, "samples": n}
    w = max(1, n // 10)
    growth = {}
    for name in samples[0]["rss_mb"]:
        values = [s["rss_mb"][name] for s in samples if s["rss_mb"][name] is not None]
        first = float(np.median(values[w : 2 * w]))
        last = float(np.median(values[-w:]))
        growth[name] = {"after_warmup_mb": first, "end_mb": last, "growth": last / first - 1.0}
    p99 = [s["p99_ms"] for s in samples if s["p99_ms"] is not None]
    k = max(1, len(p99) // 10)
    return {
        "seconds": seconds,
        "fps_offered": fps,
        "processed_per_s": samples[-1]["processed"] / samples[-1]["t_s"],
        "memory": growth,
        "latency_p99_ms": {
            "early": float(np.mean(p99[w : w + k])),
            "late": float(np.mean(p99[-k:])),
        },
    }


def _plot(samples: list[dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
    for name in samples[0]["rss_mb"] if samples else []:
        ax[0].plot(t, [s["rss_mb"][name] for s in samples], label=name)
    ax[0].set_xlabel("minutes")
    ax[0].set_ylabel("resident memory (MB)")
    ax[0].legend()
    ax[1].plot(t, [s["p50_ms"] for s in samples], label="p50")
    ax[1].plot(t, [s["p99_ms"] for s in samples], label="p99")
    ax[1].set_xlabel("minutes")
    ax[1].set_ylabel("acquisition → published (ms)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
