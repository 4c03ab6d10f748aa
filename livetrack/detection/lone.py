"""What a movie's lone spots show the split: their residual lobes and their stretch.

The split (:mod:`._split`) takes a lobe of unexplained light beside a fit, or a spot
stretched along one axis, for a second particle. Both are measured against the
card's round Gaussian: on a microscope whose spots are not round (astigmatism, a
tilted or aberrated PSF, motion during the exposure) a lone spot shows them too.
These are the same numbers for spots with no neighbour near, so ``adapt`` can
compare a movie's lone spots with the simulator's. The split's default thresholds
(:data:`SPLIT_Z`, :data:`ELONGATION_MIN`) are the ones a card may raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from livetrack.detection._lobes import residual_lobes
from livetrack.detection._split import ELONGATION_MIN as ELONGATION_MIN
from livetrack.detection._split import SPLIT_Z as SPLIT_Z

if TYPE_CHECKING:
    from livetrack.detection.detections import Detections
    from livetrack.detection.detector import Detector

FloatArray = NDArray[np.float64]
#: a spot is lone when no other lies within this many PSF widths
APART_SIGMAS = 5.0


@dataclass(frozen=True)
class LoneSpots:
    """Per lone spot: strongest residual lobe (z), elongation, and photons."""

    z: FloatArray
    elongation: FloatArray
    photons: FloatArray

    @staticmethod
    def joined(parts: list[LoneSpots]) -> LoneSpots:
        """Several frames' lone spots as one."""
        if not parts:
            return LoneSpots(np.zeros(0), np.zeros(0), np.zeros(0))
        return LoneSpots(*(np.concatenate([getattr(p, k) for p in parts])
                           for k in ("z", "elongation", "photons")))  # fmt: skip


def lone_in_frame(detector: Detector, frame: NDArray[np.generic], d: Detections) -> LoneSpots:
    """The lone spots among ``d``, the detections of ``frame`` read without the split."""
    if len(d.x) == 0:
        return LoneSpots.joined([])
    e = detector.card.expects
    s0 = float(np.median(d.sigma))
    xy = np.column_stack([d.x, d.y])
    gap = cKDTree(xy).query(xy, k=2)[0][:, 1] if len(d.x) > 1 else np.full(1, np.inf)
    lone = np.flatnonzero(gap > APART_SIGMAS * s0)
    lobes = residual_lobes(
        np.asarray(frame), d.x, d.y, d.photons, d.background, s0, e.read_noise_photons**2,
        offset=e.camera_offset_adu, scale=e.adu_per_photon,
    )  # fmt: skip
    return LoneSpots(lobes.z[lone], lobes.elongation[lone], np.asarray(d.photons, np.float64)[lone])


def lone_spots(detector: Detector, frames: NDArray[np.generic]) -> LoneSpots:
    """The lone spots of ``frames`` (in the model's camera) as the split sees them.

    Each frame is read as :meth:`Detector.detect` reads it, without the split, as a
    stream of its own (the detector is reset before and after).
    """
    split_z, detector.split_z = detector.split_z, None
    detector.reset()
    try:
        parts = [
            lone_in_frame(detector, f, detector.detect(f, index=k)) for k, f in enumerate(frames)
        ]
    finally:
        detector.split_z = split_z
        detector.reset()
    return LoneSpots.joined(parts)
