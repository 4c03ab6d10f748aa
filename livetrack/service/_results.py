"""Results out on the PUB socket: each frame's det / trk / evt, the preview, the status.

The preview (topic ``prv``) is off until a client asks for it (``set_preview``): a
frame becomes due on a fixed schedule of ``hz`` a second (so a 30 Hz preview of a
100 frames/s stream is 30 pictures a second, not every fourth frame); its received pixels
are kept (a reference, not a copy) until its results are published, then sent right
after them, so a viewer's picture and its detections are always of the same frame. A
due frame the service skips is replaced by the next one; at most :data:`HELD` wait.

A ``follow`` request (click-to-follow) rides on the next ``trk``: the controller that
reads it switches on that very frame.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import zmq
from numpy.typing import NDArray

from livetrack.detection.detector import Detections
from livetrack.linking import LinkStep
from livetrack.service._stats import ServiceStats
from livetrack.wire import protocol as wire

log = logging.getLogger("livetrack.service")
#: frames held for the preview while their results are being computed
HELD = 4


class ResultsOut:
    """What the service publishes, and the two requests that shape it (preview, follow)."""

    def __init__(self, pub: zmq.Socket[Any], stats: ServiceStats) -> None:
        self.pub = pub
        self.stats = stats
        self.preview_hz = 0.0
        self.preview_max_side = 1024
        self._next_preview = 0.0  # monotonic s: when the next frame is due
        self._held: dict[int, NDArray[Any]] = {}
        self.follow: int | None = None  # asked for, not yet published

    def set_preview(self, hz: float, max_side: int) -> None:
        """Preview at most ``hz`` frames a second (0: off), subsampled to ``max_side`` px."""
        self.preview_hz = hz
        self.preview_max_side = max_side
        self._next_preview = 0.0
        if hz == 0:
            self._held.clear()

    def hold_for_preview(self, seq: int, frame: NDArray[Any]) -> None:
        """Keep this received frame if a preview is due (its results are not out yet)."""
        if self.preview_hz <= 0 or time.monotonic() < self._next_preview:
            return
        self._held[seq] = frame
        while len(self._held) > HELD:
            del self._held[min(self._held)]

    def frame(
        self,
        header: wire.FrameHeader,
        det: Detections,
        step: LinkStep,
        timings_ms: dict[str, float],
        ended: tuple[list[int], list[int]],
    ) -> None:
        """Publish one processed frame's results: det, trk, evt (if a track started or ended)."""
        det_cols = {k: v.astype(np.float32) for k, v in det.as_dict().items()}
        self._send(wire.TOPIC_DETECTIONS, header, det_cols, timings_ms=timings_ms)
        follow = {} if self.follow is None else {"follow": self.follow}
        self.follow = None
        trk_cols = {
            "particle": step.particle,
            "x": det.x.astype(np.float32),
            "y": det.y.astype(np.float32),
            # lets a controller tell its particle from a neighbour after they met
            "photons": det.photons.astype(np.float32),
        }
        self._send(wire.TOPIC_TRACKS, header, trk_cols, **follow)
        ended_ids = ended[0] + step.ended.tolist()
        if len(step.started) or ended_ids:
            self._send(
                wire.TOPIC_EVENTS,
                header,
                {},
                started=step.started.tolist(),
                ended=ended_ids,
                ended_last_seq=ended[1] + step.ended_last_seq.tolist(),
            )

    def preview(self, header: wire.FrameHeader) -> None:
        """Publish this frame's picture if it was held for the preview (after its results)."""
        frame = self._held.pop(header.seq, None)
        for seq in [s for s in self._held if s < header.seq]:  # skipped: never published
            del self._held[seq]
        if frame is None:
            return
        step = -(-max(frame.shape) // self.preview_max_side)  # ceil: longest side ≤ max
        try:
            body = wire.encode_preview(header.seq, header.t_acq_ns, frame, step)
        except ValueError as exc:  # a picture the wire cannot carry: the results went out
            log.warning("no preview of frame %d: %s", header.seq, exc)
            return
        self.pub.send_multipart([wire.TOPIC_PREVIEW, body], copy=False)
        self.stats.published[wire.TOPIC_PREVIEW.decode()] += 1
        period, now = 1.0 / self.preview_hz, time.monotonic()
        # on schedule while frames keep coming; after a pause, a fresh start (no burst)
        late = now - self._next_preview >= period
        self._next_preview = now + period if late else self._next_preview + period

    def _send(
        self, topic: bytes, header: wire.FrameHeader, cols: dict[str, Any], **extra: Any
    ) -> None:
        if topic != wire.TOPIC_EVENTS:  # controllers need the frame's stage and scale
            if header.stage_um is not None:
                extra["stage_um"] = list(header.stage_um)
            if header.pixel_size_um is not None:
                extra["pixel_size_um"] = header.pixel_size_um
        body = wire.encode_body(header.seq, header.t_acq_ns, cols, **extra)
        self.pub.send_multipart([topic, body], copy=False)
        self.stats.published[topic.decode()] += 1

    def status(self, status: dict[str, Any]) -> None:
        """Publish the status map."""
        self.pub.send_multipart([wire.TOPIC_STATUS, wire.packb(status)])
        self.stats.published[wire.TOPIC_STATUS.decode()] += 1
