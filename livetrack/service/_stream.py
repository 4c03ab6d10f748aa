"""What the service knows of the frame stream: its last seq, stage, and tracks to announce."""

from __future__ import annotations

from typing import Any

from numpy.typing import NDArray

from livetrack.detection.camera import in_model_camera
from livetrack.linking import OnlineLinker
from livetrack.wire import protocol as wire


class Stream:
    """Sequence rules and stage position of the incoming frames (docs/protocol.md §1).

    Seqs must increase: a repeat or a decrease is refused (``seq_order``), except
    seq 0 after others, which is a restarted sender: every track ends. A frame
    without a stage position keeps the stream's last one; one that does not state its
    camera has ``camera`` (offset ADU, gain ADU/e; None: the model card's). ``invert``:
    dark particles on a bright background, turned bright for the model.
    """

    def __init__(
        self,
        linker: OnlineLinker,
        camera: tuple[float | None, float | None] = (None, None),
        invert: bool = False,
    ) -> None:
        self.linker = linker
        self.camera = camera
        self.invert = invert
        self.last_seq: int | None = None  # of the last frame accepted
        self.restarts = 0
        self.stage_px = (0.0, 0.0)
        # tracks ended by a restart or a reset, told with the next frame's events
        self._ended: list[int] = []
        self._ended_last: list[int] = []

    def accept(self, seq: int) -> None:
        """Take ``seq`` as the next frame's, or raise a ``seq_order`` ProtocolError."""
        last = self.last_seq
        if last is not None and seq <= last:
            if seq != 0:
                raise wire.ProtocolError(
                    "seq_order", f"seq {seq} after {last}: seqs must increase (0 restarts)"
                )
            self.restarts += 1
            self.end_tracks()
        self.last_seq = seq

    def end_tracks(self) -> list[int]:
        """End every track (announced with the next frame's events); returns their ids."""
        ids, last = self.linker.flush()
        self.linker.reset()
        ended = [int(i) for i in ids]
        self._ended += ended
        self._ended_last += [int(s) for s in last]
        return ended

    def reset(self) -> list[int]:
        """End every track and forget the last seq: the next frame may have any seq."""
        self.last_seq = None
        return self.end_tracks()

    def stage_offset(self, header: wire.FrameHeader) -> tuple[float, float]:
        """The frame's stage position in pixels (or the stream's last one, if it has none)."""
        if header.stage_um and header.pixel_size_um:
            px = header.pixel_size_um
            self.stage_px = (header.stage_um[0] / px, header.stage_um[1] / px)
        return self.stage_px

    def in_model_camera(
        self, header: wire.FrameHeader, frame: NDArray[Any], card: Any
    ) -> NDArray[Any]:
        """The frame as the model's camera counts: its header's camera, else the default."""
        offset, gain = header.camera_offset_adu, header.camera_gain_adu_per_e
        offset = self.camera[0] if offset is None else offset
        return in_model_camera(frame, offset, gain or self.camera[1], card, self.invert)

    def take_ended(self) -> tuple[list[int], list[int]]:
        """Tracks ended outside the linker since the last call, and their last seqs."""
        out = (self._ended, self._ended_last)
        self._ended, self._ended_last = [], []
        return out
