"""Benchmark section ``storm`` (on request): 10 000 bad messages amid good frames.

``livetrack serve`` in its own process gets good frames at a steady rate; in the
middle of the run a second sender fires bad messages of every kind at it as fast
as it can. Reported: the counts (every bad message rejected under a reason, every
good frame processed), and the latency of good frames before and after the storm.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import msgpack
import numpy as np
import zmq

from livetrack import protocol as wire
from livetrack.client import (
    ControlClient,
    FramePublisher,
    ResultSubscriber,
    free_loopback_addresses,
)
from livetrack.simulation.scenarios import Scenario


def bad_messages(frame: np.ndarray, n: int, seed: int = 0) -> list[list[bytes]]:
    """``n`` protocol-breaking messages of many kinds, drawn reproducibly."""
    rng = np.random.default_rng(seed)
    good = wire.FrameHeader(seq=1, t_acq_ns=1, shape=frame.shape, dtype="uint16").to_bytes()
    pixels = frame.tobytes()
    h0 = msgpack.unpackb(good)
    out: list[list[bytes]] = []
    for _ in range(n):
        kind = int(rng.integers(8))
        if kind == 0:  # random bytes for a header
            out.append([rng.bytes(int(rng.integers(0, 300))), pixels])
        elif kind == 1:  # wrong part count
            out.append([good] if rng.random() < 0.5 else [good, pixels, b"x"])
        elif kind == 2:  # nesting bomb
            out.append([b"\x91" * int(rng.integers(1000, 60000)) + b"\x00", pixels])
        elif kind == 3:  # declares a huge string / array
            out.append([rng.choice([b"\xdb\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff"]), pixels])
        elif kind == 4:  # wrong version or dtype
            h = dict(h0)
            if rng.random() < 0.5:
                h["version"] = int(rng.integers(2, 100))
            else:
                h["dtype"] = str(rng.choice(["complex64", "object", "U4", ""]))
            out.append([msgpack.packb(h), pixels])
        elif kind == 5:  # shape that disagrees with the buffer, or absurd
            h = dict(h0)
            h["shape"] = [int(v) for v in rng.choice([[0, 5], [-1, 4], [40000, 40000], [7, 9]])]
            out.append([msgpack.packb(h), pixels])
        elif kind == 6:  # NaN / inf pixels
            h = dict(h0)
            h["dtype"] = "float32"
            f = frame.astype("<f4")
            f.flat[int(rng.integers(f.size))] = rng.choice([np.nan, np.inf, -np.inf])
            out.append([msgpack.packb(h), f.tobytes()])
        else:  # truncated pixels
            out.append([good, pixels[: int(rng.integers(1, len(pixels)))]])
    return out


def run_storm(n_bad: int = 10_000, rate_hz: float = 20.0, phase_s: float = 10.0) -> dict[str, Any]:
    """Good frames at ``rate_hz`` for 3 phases (before, storm, after); bad ones in phase 2."""
    frames, _ = Scenario("storm", 100, 7.0, 10, size=512, seed=3).render()
    bad = bad_messages(frames[0], n_bad)
    a_frames, a_results, a_control = free_loopback_addresses(3)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "livetrack.cli",
            "serve",
            "--policy",
            "lossless",
            "--frames",
            a_frames,
            "--results",
            a_results,
            "--control",
            a_control,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ctl = ControlClient(a_control, timeout_ms=60000, retries=1)
    sub = ResultSubscriber(a_results, topics=(wire.TOPIC_TRACKS,))
    pub = FramePublisher(a_frames, queue=64)
    ctx: zmq.Context[Any] = zmq.Context.instance()
    raw = ctx.socket(zmq.PUSH)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.SNDHWM, 1000)
    raw.connect(a_frames)
    lat: dict[int, float] = {}
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            r = sub.recv(100)
            if r is not None:
                lat[r.seq] = (wire.now_ns() - r.t_acq_ns) / 1e6

    def storm() -> None:
        for parts in bad:
            raw.send_multipart(parts)  # blocks when the queue is full: nothing skipped

    try:
        ctl.request("status")
        time.sleep(0.3)
        for k in range(10):  # warm-up (the network's first calls), not measured
            pub.publish(frames[k], seq=k)
            time.sleep(1.0 / rate_hz)
        time.sleep(1.0)
        warm = pub.stats.sent  # warm-up frames that went out (some may drop before connecting)
        pub.stats.sent = 0
        th = threading.Thread(target=collect, daemon=True)
        th.start()
        n = int(3 * phase_s * rate_hz)
        stormer = threading.Thread(target=storm, daemon=True)
        t0 = time.perf_counter()
        for k in range(n):
            if k == int(phase_s * rate_hz):
                stormer.start()
            while (dt := t0 + k / rate_hz - time.perf_counter()) > 0:
                time.sleep(min(dt, 0.002))
            pub.publish(frames[k % len(frames)], seq=10 + k)
        stormer.join(120)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            st = ctl.request("stats")["status"]
            if (
                st["received"] >= warm + n + n_bad
                and st["processed"] + st["rejected_total"] >= st["received"]
            ):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        th.join(2)
        st = ctl.request("stats")["status"]
        ctl.request("shutdown")
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
        raw.close(0)
        for c in (ctl, sub, pub):
            c.close()
    m = int(phase_s * rate_hz)

    def pct(lo: int, hi: int) -> dict[str, float]:
        a = np.array([lat[s] for s in range(10 + lo, 10 + hi) if s in lat])
        if not len(a):
            return {}
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}

    return {
        "bad_sent": n_bad,
        "good_sent": pub.stats.sent,
        "received": st["received"] - warm,
        "processed": st["processed"] - warm,
        "rejected": st["rejected"],
        "rejected_total": st["rejected_total"],
        "good_results": sum(1 for s in lat if s >= 10),
        "latency_before_ms": pct(0, m),
        "latency_during_ms": pct(m, 2 * m),
        "latency_after_ms": pct(2 * m, 3 * m),
    }


def bench_storm(quick: bool) -> list[dict[str, Any]]:
    """One storm: 10 000 bad messages (1 000 with ``--quick``)."""
    return [run_storm(1000 if quick else 10_000, phase_s=3.0 if quick else 10.0)]
