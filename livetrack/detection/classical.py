"""A classical detector behind the same interface as the trained one (trackpy ``locate``)."""

from __future__ import annotations

import time
import warnings

import numpy as np
from numpy.typing import NDArray

from livetrack.detection.detector import Detections


class TrackpyDetector:
    """trackpy's centroid finder as a :class:`~livetrack.service.service.Detector`.

    Useful as the baseline, and where no trained model fits the data yet.
    """

    name = "trackpy.locate"

    def __init__(self, diameter: int = 9, minmass: float = 100.0, invert: bool = False) -> None:
        self.diameter = diameter
        self.minmass = minmass
        self.invert = invert  # dark particles on a bright background

    def warm_up(self, shape: tuple[int, int] = (64, 64)) -> None:
        """Locate one spot now, so the first live frame is not late.

        trackpy refines with Numba where it is installed (livetrack depends on it),
        compiling on the first frame that has a feature: seconds, not cached. A
        blank frame finds nothing and compiles nothing, hence a spot.
        """
        h, w = shape
        yy, xx = np.mgrid[:h, :w]
        spot = 5000.0 * np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (2 * 2.0**2))
        frame = (100.0 + spot).astype(np.uint16)
        self.detect(frame)

    def detect(self, frame: NDArray[np.generic], threshold: float | None = None) -> Detections:
        """Locate features in one frame."""
        import trackpy

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = trackpy.locate(
                np.asarray(frame), self.diameter, minmass=self.minmass, invert=self.invert
            )
        n = len(f)
        x = f["x"].to_numpy(np.float64)
        y = f["y"].to_numpy(np.float64)
        mass = f["mass"].to_numpy(np.float64)
        nan = np.full(n, np.nan)
        ms = (time.perf_counter() - t0) * 1e3
        return Detections(x, y, np.ones(n), mass, nan, nan, {"model": ms})
