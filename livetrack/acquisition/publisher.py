"""Stream frames from a pymmcore-plus core to the service, never blocking the camera.

Two sources, one publisher:

- continuous sequence acquisition: a thread takes frames from the core's
  circular buffer as they arrive and sends them;
- MDA runs: ``core.mda.events.frameReady`` sends each frame of a useq sequence.

Frames the service cannot take now are dropped at the socket (counted by
:class:`~livetrack.wire.client.FramePublisher`); frames the camera overwrote in the
circular buffer before we took them show up as gaps in the camera's image
numbers and are counted too. ``seq`` on the wire is the camera's image number,
so every loss is visible downstream as a gap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pymmcore_plus import CMMCorePlus

from livetrack.wire import protocol as wire
from livetrack.wire.client import FramePublisher

log = logging.getLogger(__name__)
POLL_S = 0.0003  # buffer polling period while a frame is due
POLL_EARLY = 0.6  # after a frame, sleep this fraction of the frame interval before polling


@dataclass
class PumpStats:
    """Frames seen from the camera, sent, and dropped (socket or buffer overwrite)."""

    acquired: int = 0
    sent: int = 0
    dropped_socket: int = 0
    dropped_buffer: int = 0

    @property
    def dropped(self) -> int:
        """All frames lost before they left this process."""
        return self.dropped_socket + self.dropped_buffer


def _split_floats(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        return None


class CoreFramePump:
    """Send every frame a core produces to the service.

    Parameters
    ----------
    core
        A ``CMMCorePlus`` (a real rig) or ``UniMMCore`` (the simulated microscope).
    publisher
        Where frames go (non-blocking).
    source
        Name written into each frame header.
    """

    def __init__(self, core: CMMCorePlus, publisher: FramePublisher, source: str = "") -> None:
        self.core = core
        self.publisher = publisher
        self.source = source or f"pymmcore-plus:{core.getCameraDevice()}"
        self.stats = PumpStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_image: int | None = None
        self._mda_seq = 0
        self._xy: tuple[float, ...] | None = None
        #: the newest frame handed to the publisher (for pictures)
        self.last_frame: np.ndarray | None = None
        if core.getXYStageDevice():
            self._xy = tuple(core.getXYPosition())
            core.events.XYStagePositionChanged.connect(self._on_xy)

    def counts(self) -> PumpStats:
        """A consistent copy of :attr:`stats` (``acquired == sent + dropped``), any time."""
        with self._lock:
            return replace(self.stats)

    def _on_xy(self, _label: str, x: float, y: float) -> None:
        self._xy = (float(x), float(y))

    def _send(self, img: np.ndarray, seq: int, md: dict[str, Any]) -> None:
        t_acq = md.get("t_acq_ns")
        stage = _split_floats(md.get("livetrack_stage_um")) or md.get("stage_um") or self._xy
        exposure = md.get("Exposure-ms") or md.get("exposure_ms")
        with self._lock:
            self.last_frame = img
            self.stats.acquired += 1
            ok = self.publisher.publish(
                np.ascontiguousarray(img),
                seq=seq,
                t_acq_ns=int(t_acq) if t_acq else wire.now_ns(),
                pixel_size_um=self.core.getPixelSizeUm() or None,
                exposure_ms=float(exposure) if exposure else self.core.getExposure(),
                stage_um=stage,
                source=self.source,
            )
            if ok:
                self.stats.sent += 1
            else:
                self.stats.dropped_socket += 1

    # -- continuous sequence acquisition -----------------------------------------------

    def start_continuous(self) -> None:
        """Start the camera's continuous acquisition and send frames as they come."""
        self.core.startContinuousSequenceAcquisition(0)
        self.start_draining()

    def start_draining(self) -> None:
        """Send the frames of a sequence acquisition someone else started (a GUI's live mode)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._last_image = None
        self._thread = threading.Thread(target=self._drain, name="frame-pump", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        core = self.core
        gaps: deque[float] = deque(maxlen=9)  # recent frame intervals, s
        last: float | None = None
        due = 0.0  # when the next frame may be there (monotonic s)
        while not self._stop.is_set():
            if core.getRemainingImageCount() == 0:
                # A core has no per-frame callback, so the buffer is polled: finely (≤ 0.3 ms
                # added latency) only once a frame is due. Polling every 0.3 ms all the time
                # cost ~15 % of a core, taken from the camera and the service beside it.
                time.sleep(min(max(POLL_S, due - time.monotonic()), 0.05))
                continue
            t = time.monotonic()
            if last is not None and t - last > 2 * POLL_S:  # not a frame of a burst
                gaps.append(t - last)
            if gaps:
                due = t + POLL_EARLY * float(np.median(gaps))
            last = t
            img, md = core.popNextImageAndMD()
            meta = dict(md)
            n = int(meta.get("ImageNumber", self.stats.acquired))
            if self._last_image is not None and n > self._last_image + 1:
                # the camera overwrote frames in the circular buffer before we took them
                with self._lock:
                    self.stats.dropped_buffer += n - self._last_image - 1
                    self.stats.acquired += n - self._last_image - 1
            self._last_image = n
            self._send(img, n, meta)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the camera, then send what is left in the buffer."""
        if self.core.isSequenceRunning():
            self.core.stopSequenceAcquisition()
        deadline = time.monotonic() + timeout_s
        while self.core.getRemainingImageCount() and time.monotonic() < deadline:
            time.sleep(0.001)
        self.stop_draining(timeout_s)

    def stop_draining(self, timeout_s: float = 2.0) -> None:
        """Stop sending live frames; the camera (perhaps someone else's) is left as it is."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    # -- MDA ---------------------------------------------------------------------------

    def attach_mda(self) -> None:
        """Send every frame of every MDA run on this core (``frameReady``)."""
        self.core.mda.events.frameReady.connect(self._on_frame_ready)

    def detach_mda(self) -> None:
        """Stop sending MDA frames."""
        self.core.mda.events.frameReady.disconnect(self._on_frame_ready)

    def _on_frame_ready(self, img: np.ndarray, event: Any, meta: Any) -> None:
        md = dict(meta.get("camera_metadata", {}) or {})
        pos = meta.get("position", {}) or {}
        if "livetrack_stage_um" not in md and pos.get("x") is not None:
            md["stage_um"] = (float(pos["x"]), float(pos["y"]))
        if meta.get("exposure_ms") is not None:
            md["exposure_ms"] = meta["exposure_ms"]
        seq = self._mda_seq
        self._mda_seq += 1
        self._send(img, seq, md)
