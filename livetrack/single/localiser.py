"""The single-particle localiser network (DeepTrack 1.0 style) on a crop around a particle.

Runs a localiser artifact (``livetrack train config/trapped_colloid.toml``): a
CNN that reads a crop (the card's ``crop_px``) normalised like the detector's
input and predicts the particle's offset from the crop's centre, with σ. The
crop is re-centred on the first estimate and read again, so the particle sits
near the centre, where the training put it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.artifact import model_dir
from livetrack.detection.normalise import robust_normalise
from livetrack.holography.characterise import decode, load_crop_model, traced_call
from livetrack.single.size import particle_extent

#: how far outside its trained radii a localiser still takes a particle (×, ÷)
SIZE_SLACK = 1.25


def size_problem(card: Any, frame: NDArray[np.generic]) -> str | None:
    """Why a localiser cannot take the particle in ``frame`` (None: it can).

    The particle's visible radius (:func:`~livetrack.single.size.particle_extent` on
    the normalised frame) against the radii the card says it was trained on.
    """
    trained = card.outputs.particle_radius_px
    if trained is None:
        return None
    _, _, radius = particle_extent(robust_normalise(frame))
    lo, hi = trained
    if lo / SIZE_SLACK <= radius <= hi * SIZE_SLACK:
        return None
    return (
        f"the particle looks {radius:.0f} px in radius, outside the {lo:.0f}–{hi:.0f} px "
        f"the localiser '{card.name}' was trained on: use --single auto without "
        "--model (the particle's own template), or train a localiser for this size"
    )


class CropLocaliser:
    """A localiser artifact ready to run.

    Parameters
    ----------
    artifact
        Artifact directory whose card says ``outputs.kind = "localiser"``.
    passes
        Reads of the crop; each after re-centring it on the previous estimate.
    """

    def __init__(self, artifact: str | Path, passes: int = 2) -> None:
        if passes < 1:
            raise ValueError(f"passes must be at least 1, got {passes}")
        self.path = model_dir(artifact)
        self.card, self.model = load_crop_model(
            self.path, "localiser", "a single-particle localiser"
        )
        out = self.card.outputs
        self.crop = int(out.crop_px or 0)
        self.passes = passes
        self.target_centre = np.asarray(out.target_centre, np.float64)
        self.target_half_width = np.asarray(out.target_half_width, np.float64)
        self.sigma_scale = np.asarray(out.sigma_scale, np.float64)
        self._call = traced_call(self.model, self.crop)

    def predict(
        self, images: NDArray[np.float32]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Offsets from the crops' centres and their σ (N, 2) each, for normalised crops."""
        raw = np.asarray(self._call(np.asarray(images, np.float32)), np.float64)
        return decode(raw, self.target_centre, self.target_half_width, self.sigma_scale)

    def check_size(self, frame: NDArray[np.generic]) -> None:
        """Refuse a particle far outside the sizes the network was trained on (ValueError)."""
        problem = size_problem(self.card, frame)
        if problem:
            raise ValueError(problem)

    @property
    def reach_px(self) -> float:
        """How far from the crop's centre the network was trained to find the particle."""
        return float(self.target_half_width.max())

    def _window(
        self, padded: NDArray[np.generic], pad: int, x: float, y: float
    ) -> tuple[NDArray[np.generic], int, int]:
        c = self.crop
        c0 = round(x - (c - 1) / 2.0)
        r0 = round(y - (c - 1) / 2.0)
        return padded[r0 + pad : r0 + pad + c, c0 + pad : c0 + pad + c], c0, r0

    def locate(
        self, frame: NDArray[np.generic], x: float, y: float
    ) -> tuple[float, float, float, float]:
        """The particle near (x, y): its centre (x, y) and σ (x, y), in pixels."""
        f = np.asarray(frame)
        c = self.crop
        pad = c  # the crop may hang over the frame's edge: reflected there
        padded = np.pad(f, pad, mode="reflect")
        h, w = f.shape
        sx = sy = float("nan")
        for _ in range(self.passes):
            x = float(np.clip(x, 0, w - 1))
            y = float(np.clip(y, 0, h - 1))
            window, c0, r0 = self._window(padded, pad, x, y)
            mean, sigma = self.predict(robust_normalise(window)[None, ..., None])
            x = c0 + (c - 1) / 2.0 + float(mean[0, 0])
            y = r0 + (c - 1) / 2.0 + float(mean[0, 1])
            sx, sy = float(sigma[0, 0]), float(sigma[0, 1])
        return x, y, sx, sy
