"""Detection: the trained network, its read-out and the maximum-likelihood spot fit.

:class:`Detector` runs a model artifact on a frame; :class:`TrackpyDetector` is the
classical baseline behind the same interface. Both load on first use (the CLI
reads :mod:`.precision` without them); TensorFlow is imported only with a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Detections", "Detector", "TrackpyDetector"]

if TYPE_CHECKING:
    from livetrack.detection.classical import TrackpyDetector
    from livetrack.detection.detector import Detections, Detector


def __getattr__(name: str) -> Any:
    if name == "TrackpyDetector":
        from livetrack.detection.classical import TrackpyDetector

        return TrackpyDetector
    if name in ("Detections", "Detector"):
        from livetrack.detection import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'livetrack.detection' has no attribute {name!r}")
