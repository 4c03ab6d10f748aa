"""A ``livetrack serve`` process for a benchmark: start it, feed it at a rate, drain it, stop it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livetrack.wire import protocol as wire
from livetrack.wire.client import (
    ControlClient,
    FramePublisher,
    ResultSubscriber,
    free_loopback_addresses,
)


@dataclass
class Served:
    """A running service and this process's three clients of it."""

    proc: subprocess.Popen[bytes]
    frames: str  # the service's frame address
    control: ControlClient
    results: ResultSubscriber
    publisher: FramePublisher

    def stats(self) -> dict[str, Any]:
        """The service's accounting now."""
        status: dict[str, Any] = self.control.request("stats")["status"]
        return status

    def drained(self, received: int, timeout_s: float = 30.0) -> dict[str, Any]:
        """The service's stats once ``received`` frames came in and each was dealt with."""
        end = time.monotonic() + timeout_s
        while True:
            st = self.stats()
            done = st["processed"] + st["skipped"] + st["rejected_total"]
            if (st["received"] >= received and done >= st["received"]) or time.monotonic() > end:
                return st
            time.sleep(0.2)

    def publish_paced(
        self,
        frames: np.ndarray,
        n: int,
        rate_hz: float,
        first_seq: int,
        before_frame: Callable[[int], None] | None = None,
    ) -> None:
        """Publish ``n`` frames (cycling) at ``rate_hz``, numbered from ``first_seq``."""
        t0 = time.perf_counter()
        for k in range(n):
            if before_frame is not None:
                before_frame(k)
            while (dt := t0 + k / rate_hz - time.perf_counter()) > 0:
                time.sleep(min(dt, 0.002))
            self.publisher.publish(frames[k % len(frames)], seq=first_seq + k)

    def stop(self) -> None:
        """Ask the service to shut down and wait for it."""
        self.control.request("shutdown")
        self.proc.wait(20)


@contextmanager
def served(policy: str, *serve_args: str, queue: int = 8) -> Iterator[Served]:
    """``livetrack serve`` in its own process on free loopback ports; killed if still running."""
    a_frames, a_results, a_control = free_loopback_addresses(3)
    cmd = [
        sys.executable, "-m", "livetrack.cli", "serve", "--policy", policy,
        "--frames", a_frames, "--results", a_results, "--control", a_control, *serve_args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    clients = (
        ControlClient(a_control, timeout_ms=60000, retries=1),
        ResultSubscriber(a_results, topics=(wire.TOPIC_TRACKS,)),
        FramePublisher(a_frames, queue=queue),
    )
    try:
        yield Served(proc, a_frames, *clients)
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in clients:
            c.close()


class Collector:
    """Latency (ms, receive − ``t_acq_ns``) of every result from ``min_seq`` on, in a thread."""

    def __init__(self, results: ResultSubscriber, min_seq: int) -> None:
        self.latency_ms: dict[int, float] = {}
        self.seqs: list[int] = []  # in the order they arrived
        self._results = results
        self._min_seq = min_seq
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            r = self._results.recv(100)
            if r is not None and r.seq >= self._min_seq:
                self.latency_ms[r.seq] = (wire.now_ns() - r.t_acq_ns) / 1e6
                self.seqs.append(r.seq)

    def close(self) -> None:
        """Stop collecting."""
        self._stop.set()
        self._thread.join(2)


def percentiles(values: Any) -> dict[str, float]:
    """p50 and p99 of ``values`` (empty when there are none)."""
    a = np.asarray(list(values), float)
    if not len(a):
        return {}
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}


def proc_memory_mb(pid: int) -> dict[str, float]:
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
