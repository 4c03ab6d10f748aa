"""Benchmark section ``storm`` (on request): 10 000 bad messages amid good frames.

``livetrack serve`` in its own process gets good frames at a steady rate; in the
middle of the run a second sender fires bad messages of every kind at it as fast
as it can. Reported: the counts (every bad message rejected under a reason, every
good frame processed), and the latency of good frames before and after the storm.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import Any

import msgpack
import numpy as np
import zmq

from livetrack.bench._served import Collector, Served, percentiles, proc_memory_mb, served
from livetrack.simulation.scenarios import Scenario
from livetrack.wire import conformance


def bad_messages(n: int, seed: int = 0) -> tuple[list[tuple[bytes, ...]], Counter[str]]:
    """``n`` protocol-breaking frames drawn reproducibly from the conformance suite's kinds.

    Returns the messages and how many the service must reject under each reason.
    """
    kinds = conformance.bad_frames(0)
    rng = np.random.default_rng(seed)
    drawn = [kinds[int(i)] for i in rng.integers(len(kinds), size=n)]
    return [c.parts for c in drawn], Counter(str(c.reason) for c in drawn)


def bad_requests(n: int, seed: int = 1) -> tuple[list[tuple[bytes, ...]], Counter[str]]:
    """``n`` bad control requests of every kind, and the reply reasons they must get."""
    kinds = [c for c in conformance.control_cases() if c.reason is not None]
    rng = np.random.default_rng(seed)
    drawn = [kinds[int(i)] for i in rng.integers(len(kinds), size=n)]
    return [c.parts for c in drawn], Counter(str(c.reason) for c in drawn)


def _raw(kind: int, address: str) -> zmq.Socket[Any]:
    """A bare socket for messages the livetrack clients would refuse to send."""
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(address)
    return sock


class _Storm:
    """Bad frames as fast as the service takes them, and bad control requests, in threads."""

    def __init__(self, svc: Served, n_bad: int, n_requests: int) -> None:
        self.frames, self.want = bad_messages(n_bad)
        self.requests, self.want_control = bad_requests(n_requests)
        self.push = _raw(zmq.PUSH, svc.frames)
        self.control = svc.control.address
        self.got_control: Counter[str] = Counter()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._fire, self._ask)]

    def _fire(self) -> None:
        for parts in self.frames:
            self.push.send_multipart(list(parts))  # blocks when the queue is full: none lost

    def _ask(self) -> None:
        req = _raw(zmq.REQ, self.control)
        try:
            for parts in self.requests:
                req.send_multipart(list(parts))
                reply = msgpack.unpackb(req.recv(), raw=False)
                self.got_control[str(reply.get("reason"))] += 1
        finally:
            req.close(0)

    def start(self) -> None:
        for th in self.threads:
            th.start()

    def join(self) -> None:
        for th in self.threads:
            th.join(120)
        self.push.close(0)


def run_storm(n_bad: int = 10_000, rate_hz: float = 20.0, phase_s: float = 10.0) -> dict[str, Any]:
    """Good frames at ``rate_hz`` for 3 phases (before, storm, after); bad ones in phase 2."""
    frames, _ = Scenario("storm", 100, 7.0, 10, size=512, seed=3).render()
    m, n = int(phase_s * rate_hz), int(3 * phase_s * rate_hz)
    with served("lossless", queue=64) as svc:
        storm = _Storm(svc, n_bad, max(10, n_bad // 200))
        pub = svc.publisher
        svc.stats()
        time.sleep(0.3)
        svc.publish_paced(frames, 10, rate_hz, 0)  # warm-up (first network calls)
        time.sleep(1.0)
        before = svc.stats()
        offered0, sent0, dropped0 = pub.stats.offered, pub.stats.sent, pub.stats.dropped
        got = Collector(svc.results, 10)
        rss: dict[str, float] = {}

        def at(k: int) -> None:
            if k == m:  # the storm starts; the service's memory just before it
                rss["before"] = proc_memory_mb(svc.proc.pid).get("VmRSS", math.nan)
                storm.start()

        svc.publish_paced(frames, n, rate_hz, 10, at)
        storm.join()
        after = svc.drained(before["received"] + pub.stats.sent - sent0 + n_bad, timeout_s=60)
        rss["after"] = proc_memory_mb(svc.proc.pid).get("VmRSS", math.nan)
        time.sleep(0.5)
        got.close()
        svc.stop()
    return _row(storm, before, after, got.latency_ms, m, rss, pub.stats.offered - offered0,
                pub.stats.dropped - dropped0)  # fmt: skip


def _row(
    storm: _Storm,
    before: dict[str, Any],
    after: dict[str, Any],
    lat: dict[int, float],
    m: int,
    rss: dict[str, float],
    offered: int,
    dropped: int,
) -> dict[str, Any]:
    """The storm's figures: exact accounting, rejections per reason, latency, memory."""
    d = {k: after[k] - before[k] for k in ("received", "processed", "skipped", "rejected_total")}
    rejected = {k: v - before["rejected"].get(k, 0) for k, v in after["rejected"].items()}
    sent = offered + len(storm.frames)  # every message sent, good and bad
    return {
        "bad_sent": len(storm.frames),
        "bad_kinds": len(conformance.bad_frames(0)),
        "good_offered": offered,
        "good_sent": offered - dropped,
        "good_dropped_at_sender": dropped,
        **d,
        "rejected": {k: v for k, v in rejected.items() if v},
        "rejected_as_expected": {k: v for k, v in rejected.items() if v} == dict(storm.want),
        "control_requests_bad": len(storm.requests),
        "control_replies_as_expected": storm.got_control == storm.want_control,
        # sent = processed + skipped + dropped at the sender + rejected
        "accounted": sent == d["processed"] + d["skipped"] + dropped + d["rejected_total"],
        "good_results": len(lat),
        "latency_before_ms": percentiles(lat[s] for s in range(10, 10 + m) if s in lat),
        "latency_during_ms": percentiles(lat[s] for s in range(10 + m, 10 + 2 * m) if s in lat),
        "latency_after_ms": percentiles(lat[s] for s in range(10 + 2 * m, 10 + 3 * m) if s in lat),
        "rss_mb": rss,
        "rss_growth_percent": 100.0 * (rss["after"] / rss["before"] - 1.0),
    }


def bench_storm(quick: bool) -> list[dict[str, Any]]:
    """One storm: 10 000 bad messages (1 000 with ``--quick``).

    The full run's phases are 30 s (600 good frames each): a p99 over 200 frames is their
    second-largest value, too few to compare before and after to 10 %.
    """
    return [run_storm(1000 if quick else 10_000, phase_s=3.0 if quick else 30.0)]
