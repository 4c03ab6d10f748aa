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


def lone_spots(detector: Detector, frames: NDArray[np.generic]) -> LoneSpots:
    """The lone spots of ``frames`` (in the model's camera) as the split sees them.

    Each frame is read as :meth:`Detector.detect` reads it, without the split, as a
    stream of its own (the detector is reset before and after).
    """
    e = detector.card.expects
    read, scale = e.read_noise_photons, e.adu_per_photon
    split_z, detector.split_z = detector.split_z, None
    z, el, ph = [], [], []
    detector.reset()
    try:
        for k, frame in enumerate(frames):
            d = detector.detect(frame, index=k)
            if len(d.x) == 0:
                continue
            s0 = float(np.median(d.sigma))
            xy = np.column_stack([d.x, d.y])
            gap = cKDTree(xy).query(xy, k=2)[0][:, 1] if len(d.x) > 1 else np.full(1, np.inf)
            lone = np.flatnonzero(gap > APART_SIGMAS * s0)
            lobes = residual_lobes(
                np.asarray(frame), d.x, d.y, d.photons, d.background, s0, read**2,
                offset=e.camera_offset_adu, scale=scale,
            )  # fmt: skip
            z.append(lobes.z[lone])
            el.append(lobes.elongation[lone])
            ph.append(np.asarray(d.photons, np.float64)[lone])
    finally:
        detector.split_z = split_z
        detector.reset()
    if not z:
        return LoneSpots(np.zeros(0), np.zeros(0), np.zeros(0))
    return LoneSpots(np.concatenate(z), np.concatenate(el), np.concatenate(ph))
