"""What the demo sees on the wire: results and status, collected in a thread, shown live."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np
from rich.table import Table

from livetrack.wire import protocol as wire
from livetrack.wire.client import ResultSubscriber


class Watcher:
    """Subscribe to ``trk`` and ``sta``; keep bounded recent history for the view and plots."""

    def __init__(self, results: str, frame_shape: tuple[int, int], keep_frames: int = 3000) -> None:
        self.sub = ResultSubscriber(results, topics=(wire.TOPIC_TRACKS, wire.TOPIC_STATUS))
        self.centre = np.array([(frame_shape[1] - 1) / 2.0, (frame_shape[0] - 1) / 2.0])
        self.latency_ms: deque[float] = deque(maxlen=100_000)
        # (seq, ids, x, y) with x, y in the sample's frame (stage-corrected, px)
        self.tracks: deque[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = deque(
            maxlen=keep_frames
        )
        self.last_stage_px = np.zeros(2)
        self.arrivals: deque[float] = deque(maxlen=500)
        self.status: dict[str, Any] = {}
        self.nearest_px = float("nan")
        # the thread appends while the view and the report read: iterating a deque
        # that grows underneath raises ("deque mutated during iteration")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            r = self.sub.recv(100)
            if r is None:
                continue
            if r.topic == wire.TOPIC_STATUS:
                self.status = r.fields
                continue
            now = time.monotonic()
            x, y = r.columns["x"], r.columns["y"]
            stage, px = r.fields.get("stage_um"), r.fields.get("pixel_size_um")
            off = np.asarray(stage[:2], float) / px if stage and px else np.zeros(2)
            with self._lock:
                self.latency_ms.append((wire.now_ns() - r.t_acq_ns) / 1e6)
                self.arrivals.append(now)
                self.last_stage_px = off
                self.tracks.append((r.seq, r.columns["particle"], x + off[0], y + off[1]))
            if len(x):  # in the image: the controller's view
                self.nearest_px = float(np.min(np.hypot(x - self.centre[0], y - self.centre[1])))

    def clear(self) -> None:
        """Forget the history (a new phase)."""
        with self._lock:
            self.latency_ms.clear()
            self.tracks.clear()
            self.arrivals.clear()

    def history(
        self,
    ) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray, np.ndarray]], np.ndarray]:
        """Copies of (latencies ms, tracks, last stage offset px), taken consistently."""
        with self._lock:
            return np.asarray(self.latency_ms), list(self.tracks), self.last_stage_px.copy()

    def fps(self) -> float:
        """Results per second over the last few seconds."""
        with self._lock:
            arrivals = list(self.arrivals)
        a = [t for t in arrivals if t > time.monotonic() - 2.0]
        return (len(a) - 1) / (a[-1] - a[0]) if len(a) > 2 else 0.0

    def table(self, phase: str, elapsed_s: float, total_s: float) -> Table:
        """The live view."""
        with self._lock:
            lat = np.asarray(self.latency_ms)[-500:]
            n = len(self.tracks[-1][1]) if self.tracks else 0
        p50, p99 = np.percentile(lat, [50, 99]) if len(lat) else (np.nan, np.nan)
        t = Table(title=f"livetrack demo — {phase}  {elapsed_s:4.1f}/{total_s:.0f} s")
        for col in (
            "fps",
            "latency p50/p99 ms",
            "particles",
            "active tracks",
            "skipped",
            "nearest to centre px",
        ):
            t.add_column(col, justify="right")
        t.add_row(
            f"{self.fps():.1f}",
            f"{p50:.1f} / {p99:.1f}",
            str(n),
            str(self.status.get("active_tracks", "")),
            str(self.status.get("skipped", "")),
            f"{self.nearest_px:.1f}",
        )
        return t

    def close(self) -> None:
        """Stop the thread and close the socket."""
        self._stop.set()
        self._thread.join(2)
        self.sub.close()
