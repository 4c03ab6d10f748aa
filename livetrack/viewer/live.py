"""What the live viewer shows, kept apart from drawing it (no Qt here).

A subscriber thread feeds every result message into :class:`LiveView`; the viewer's
timer takes a :meth:`LiveView.snapshot` when it is ready to draw. Feeding never waits
for drawing: the view keeps the latest frame's detections, a bounded window of track
points (``tail_frames`` frames, at most ``max_points``), and the latest status map.
A snapshot taken while nothing new arrived is None; frames that arrived between two
snapshots and were never drawn are counted (``undrawn``): the display's drop policy
is *latest wins*. With the service's preview on (``prv``), the snapshot carries the
newest picture and the detections *of that frame* (the service publishes a frame's
picture after its results), so what is drawn over the image was found in it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.wire import protocol as wire

#: pictures a second a viewer asks of the service by default: a display's 60, the
#: wire's MAX_PREVIEW_HZ. A viewer draws what it can of them (latest wins): ≥ 30 on
#: one core painting in software, where at 30 offered a draw that runs late loses one
#: (28.6–29.8 drawn); the service on its own core pays −0.2 to +0.7 ms of p99 for them
#: (docs/benchmarks.md)
PREVIEW_HZ = 60

#: track points kept across frames (bounds memory whatever the frame rate)
MAX_POINTS = 200_000
#: recent frames' detections kept to match a picture that arrives after them
RECENT = 16


@dataclass(frozen=True)
class Snapshot:
    """One drawable state: the newest frame's detections, the track tails, the status."""

    seq: int
    points: NDArray[np.float64]  # (N, 2): y, x of the newest frame's detections
    point_ids: NDArray[np.int64]  # (N,): their track ids (-1: not linked yet)
    tracks: NDArray[np.float64]  # (M, 4): id, seq, y, x over the tail
    status: dict[str, Any]
    undrawn: int  # frames received but never drawn, since the start
    image: NDArray[Any] | None = None  # the picture of frame ``seq``, if one came since
    image_step: int = 1  # its pixel (i, j) is the frame's (i·step, j·step)


@dataclass
class LiveView:
    """Bounded, thread-safe state of a result stream (see the module docstring)."""

    tail_frames: int = 30
    max_points: int = MAX_POINTS
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tails: deque[NDArray[np.float64]] = field(default_factory=deque, repr=False)
    _seq: int = -1
    _drawn_seq: int = -1
    _frames_since: int = 0
    _undrawn: int = 0
    _status: dict[str, Any] = field(default_factory=dict)
    _fresh: bool = False
    _recent: deque[tuple[int, NDArray[np.float64], NDArray[np.int64]]] = field(
        default_factory=lambda: deque(maxlen=RECENT), repr=False
    )
    _image: tuple[int, NDArray[Any], int] | None = None  # seq, picture, step
    #: pictures received, and those replaced before they were drawn
    images: int = 0
    images_undrawn: int = 0
    last_image_at: float = -1e9  # monotonic s

    def feed(self, result: wire.Result) -> None:
        """Take one result message (any topic); never blocks on drawing."""
        if result.topic == wire.TOPIC_STATUS:
            status = dict(result.fields)
            with self._lock:
                before = self._status
                dt = (status.get("t_pub_ns", 0) - before.get("t_pub_ns", 0)) / 1e9
                if before and dt > 0:  # frames processed per second, between two statuses
                    status["fps"] = (status.get("processed", 0) - before.get("processed", 0)) / dt
                self._status = status
                self._fresh = True
            return
        if result.topic == wire.TOPIC_PREVIEW:
            self._feed_image(result)
            return
        if result.topic != wire.TOPIC_TRACKS:
            return  # det carries the same positions; trk adds the ids
        c = result.columns
        x = np.asarray(c.get("x", ()), np.float64)
        y = np.asarray(c.get("y", ()), np.float64)
        ids = np.asarray(c.get("particle", np.full(len(x), -1)), np.int64)
        rows = np.column_stack([ids, np.full(len(x), result.seq), y, x]).astype(np.float64)
        with self._lock:
            if result.seq < self._seq:  # a restarted sender: the old tails are another run
                self._tails.clear()
            self._seq = result.seq
            self._recent.append((result.seq, np.column_stack([y, x]), ids))
            self._tails.append(rows)
            while len(self._tails) > self.tail_frames or (
                sum(len(t) for t in self._tails) > self.max_points and len(self._tails) > 1
            ):
                self._tails.popleft()
            self._frames_since += 1
            self._fresh = True

    def _feed_image(self, result: wire.Result) -> None:
        try:
            image = wire.preview_image(result)
        except wire.ProtocolError:
            return
        with self._lock:
            if self._image is not None:
                self.images_undrawn += 1
            self._image = (result.seq, image, int(result.fields["step"]))
            self.images += 1
            self.last_image_at = time.monotonic()
            self._fresh = True

    @property
    def image_waiting(self) -> bool:
        """A picture arrived that is not drawn yet."""
        return self._image is not None

    def status(self) -> tuple[dict[str, Any], int]:
        """The latest status map and the frames left undrawn so far."""
        with self._lock:
            return dict(self._status), self._undrawn + max(0, self._frames_since - 1)

    def _of_frame(self, seq: int) -> tuple[NDArray[np.float64], NDArray[np.int64]] | None:
        return next(((p, i) for s, p, i in reversed(self._recent) if s == seq), None)

    def snapshot(self) -> Snapshot | None:
        """The state to draw now, or None if nothing arrived since the last one."""
        with self._lock:
            if not self._fresh:
                return None
            self._fresh = False
            if self._frames_since > 1:
                self._undrawn += self._frames_since - 1
            self._frames_since = 0
            tracks = np.concatenate(list(self._tails)) if self._tails else np.zeros((0, 4))
            linked = tracks[tracks[:, 0] >= 0]
            order = np.lexsort((linked[:, 1], linked[:, 0]))  # napari: by id, then time
            none = (np.zeros((0, 2)), np.zeros(0, np.int64))
            seq, (points, ids) = self._seq, (self._recent[-1][1:] if self._recent else none)
            image, step = None, 1
            if self._image is not None:
                seq, image, step = self._image
                self._image = None
                points, ids = self._of_frame(seq) or (np.zeros((0, 2)), np.zeros(0, np.int64))
            return Snapshot(
                seq, points.copy(), ids.copy(), linked[order], dict(self._status),
                self._undrawn, image, step,
            )  # fmt: skip


def status_line(status: dict[str, Any], undrawn: int) -> str:
    """The status panel's text: rates, latency and the accounting of every frame."""
    if not status:
        return "waiting for the service's status (once a second)…"
    lat = status.get("latency_ms", {}).get("end_to_end", {})
    rejected = status.get("rejected_total", 0)
    return (
        f"model {status.get('detector', '?')} · policy {status.get('policy', '?')}\n"
        f"{status.get('fps', float('nan')):.1f} frames/s · "
        f"received {status.get('received', 0)} · processed {status.get('processed', 0)} · "
        f"skipped {status.get('skipped', 0)} · rejected {rejected}\n"
        f"latency end to end p50 {lat.get('p50', float('nan')):.1f} ms · "
        f"p99 {lat.get('p99', float('nan')):.1f} ms · tracks {status.get('active_tracks', 0)}\n"
        f"display: {undrawn} frames not drawn (latest wins)"
    )
