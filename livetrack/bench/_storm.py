"""Benchmark section ``storm`` (on request): 10 000 bad messages amid good frames.

``livetrack serve`` in its own process gets good frames at a steady rate; in the
middle of the run a second sender fires bad messages of every kind at it as fast
as it can. Reported: the counts (every bad message rejected under a reason, every
good frame processed), and the latency of good frames before and after the storm.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msgpack
import numpy as np
import zmq

from livetrack.bench._served import Collector, percentiles, served
from livetrack.simulation.scenarios import Scenario
from livetrack.wire import protocol as wire


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


def _raw_push(address: str) -> zmq.Socket[Any]:
    """A bare PUSH socket for the malformed messages (the publisher would refuse them)."""
    raw: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.PUSH)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.SNDHWM, 1000)
    raw.connect(address)
    return raw


def run_storm(n_bad: int = 10_000, rate_hz: float = 20.0, phase_s: float = 10.0) -> dict[str, Any]:
    """Good frames at ``rate_hz`` for 3 phases (before, storm, after); bad ones in phase 2."""
    frames, _ = Scenario("storm", 100, 7.0, 10, size=512, seed=3).render()
    bad = bad_messages(frames[0], n_bad)
    m, n = int(phase_s * rate_hz), int(3 * phase_s * rate_hz)
    with served("lossless", queue=64) as svc:
        raw = _raw_push(svc.frames)
        pub = svc.publisher

        def storm() -> None:
            for parts in bad:
                raw.send_multipart(parts)  # blocks when the queue is full: nothing skipped

        stormer = threading.Thread(target=storm, daemon=True)
        try:
            svc.stats()
            time.sleep(0.3)
            svc.publish_paced(frames, 10, rate_hz, 0)  # warm-up (first network calls)
            time.sleep(1.0)
            warm = pub.stats.sent  # warm-up frames that went out (some drop before connecting)
            pub.stats.sent = 0
            got = Collector(svc.results, 10)
            svc.publish_paced(frames, n, rate_hz, 10, lambda k: stormer.start() if k == m else None)
            stormer.join(120)
            svc.drained(warm + n + n_bad, timeout_s=60)
            time.sleep(0.5)
            got.close()
            st = svc.stats()
            svc.stop()
        finally:
            raw.close(0)
    lat = got.latency_ms

    def pct(lo: int, hi: int) -> dict[str, float]:
        return percentiles(lat[s] for s in range(10 + lo, 10 + hi) if s in lat)

    return {
        "bad_sent": n_bad,
        "good_sent": pub.stats.sent,
        "received": st["received"] - warm,
        "processed": st["processed"] - warm,
        "rejected": st["rejected"],
        "rejected_total": st["rejected_total"],
        "good_results": len(lat),
        "latency_before_ms": pct(0, m),
        "latency_during_ms": pct(m, 2 * m),
        "latency_after_ms": pct(2 * m, 3 * m),
    }


def bench_storm(quick: bool) -> list[dict[str, Any]]:
    """One storm: 10 000 bad messages (1 000 with ``--quick``)."""
    return [run_storm(1000 if quick else 10_000, phase_s=3.0 if quick else 10.0)]
