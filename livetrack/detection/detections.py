"""One frame's detections: per-particle columns, the same for every detector."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from livetrack.simulation.camera import gaussian_peak_fraction


def fit_snr(
    photons: NDArray[np.float64], background: NDArray[np.float64], sigma: float, read: float
) -> NDArray[np.float64]:
    """Each fitted spot's significance: its peak over that peak's noise (ISBI SNR).

    ``photons`` and ``background`` (per pixel) in photons, the spots' ``sigma`` in px,
    the camera's ``read`` noise in photons.
    """
    peak = np.asarray(photons, np.float64) * gaussian_peak_fraction(sigma)
    out: NDArray[np.float64] = peak / np.sqrt(peak + background + read * read)
    return out


@dataclass(frozen=True, slots=True)
class Detections:
    """Per-particle columns for one frame (pixels, trackpy convention)."""

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    score: NDArray[np.float64]
    photons: NDArray[np.float64]
    background: NDArray[np.float64]
    sigma: NDArray[np.float64]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    def as_dict(self) -> dict[str, NDArray[np.float64]]:
        """Columns by name."""
        return {k: getattr(self, k) for k in ("x", "y", "score", "photons", "background", "sigma")}

    def take(self, rows: NDArray[np.bool_] | NDArray[np.intp]) -> Detections:
        """These rows only (a mask or indices, in that order); the timings kept."""
        return Detections(self.x[rows], self.y[rows], self.score[rows], self.photons[rows],
                          self.background[rows], self.sigma[rows], self.timings_ms)  # fmt: skip
