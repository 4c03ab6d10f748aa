"""The service's configuration and what it needs from a detector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from livetrack.detection.detector import Detections
from livetrack.linking import LinkingConfig
from livetrack.wire import protocol as wire

Policy = Literal["realtime", "lossless"]


class FrameDetector(Protocol):
    """What the service needs from a detector."""

    def detect(self, frame: NDArray[np.generic], threshold: float | None = None) -> Detections:
        """Detections of one frame."""
        ...


@dataclass(frozen=True)
class ServiceConfig:
    """Addresses, policy and limits of one service."""

    frames: str = "tcp://127.0.0.1:5555"
    results: str = "tcp://127.0.0.1:5556"
    control: str = "tcp://127.0.0.1:5557"
    policy: Policy = "realtime"
    queue: int = 64  # frames waiting in the PULL socket (RCVHWM)
    # real-time: overlap the next frame's network with this frame's read-out
    pipeline: bool = True
    batch: int = 8  # lossless: at most this many queued frames go through the network at once
    max_frame_bytes: int = wire.MAX_FRAME_BYTES
    status_interval_s: float = 1.0
    linking: LinkingConfig = field(default_factory=LinkingConfig)
    # link in stage-corrected coordinates (stage axes assumed along the camera's x, y)
    stage_compensation: bool = True
    force_model: bool = False
    insecure: bool = False
    keys: str | None = None  # key directory: CURVE encryption + client allow-list
    linger_ms: int = 500
    # Prometheus /metrics over plain HTTP (None: off); off-loopback needs --insecure
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # the camera of frames that do not state theirs (None: the model card's)
    camera_offset_adu: float | None = None
    camera_gain_adu_per_e: float | None = None
    # dark particles on a bright background: inverted before the network sees them
    invert: bool = False
    # a model's detections scoring less are dropped before linking (None: none)
    min_score: float | None = None
    # a fitted spot's photon floor, kept across model swaps (None: each card's own)
    min_photons: float | None = None
