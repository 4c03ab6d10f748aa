"""The particle's own image as the model: a template built from its first frames.

Radial symmetry assumes a particle that looks the same in every direction; a bead
with a bacterium attached, a dimer or an astigmatic image does not. The mean of the
first frames, each shifted to a common centre, is what this particle looks like;
every frame is then fitted with that template moved by a sub-pixel shift, scaled and
offset (least squares, Gauss–Newton on the cubic-spline template). The whole
particle informs the fit, rings and tails included, as a matched filter does: what a
careful user does by cross-correlating against a reference image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: Gauss–Newton steps per frame (the first guess is within a pixel or two)
STEPS = 6
#: a step below this (px) ends the fit early
TOLERANCE_PX = 1e-4


@dataclass(frozen=True)
class ParticleTemplate:
    """The mean image of a particle around ``centre`` (frame coordinates x, y)."""

    image: NDArray[np.float64]  # (2h+1, 2h+1), cubic-spline coefficients
    gy: NDArray[np.float64]  # its derivatives, as spline coefficients too
    gx: NDArray[np.float64]
    centre: tuple[float, float]
    half: int

    @classmethod
    def build(
        cls, frames: Sequence[NDArray[np.generic]], xy: NDArray[np.float64], half: int
    ) -> ParticleTemplate:
        """Average ``frames`` shifted so that each particle position ``xy[i]`` meets their mean."""
        cx, cy = (float(v) for v in np.mean(xy, axis=0))
        acc = np.zeros((2 * half + 1, 2 * half + 1))
        ix, iy = round(cx), round(cy)
        for f, (x, y) in zip(frames, xy, strict=True):
            moved = ndimage.shift(
                np.asarray(f, np.float64), (cy - y, cx - x), order=3, mode="nearest"
            )
            acc += _window(moved, ix, iy, half)
        mean = acc / len(frames)
        gy, gx = np.gradient(mean)
        coef = [ndimage.spline_filter(a, order=3) for a in (mean, gy, gx)]
        # the template's own centre: where (ix, iy) + offset lands is (cx, cy)
        return cls(coef[0], coef[1], coef[2], (cx - ix, cy - iy), half)

    def fit(self, frame: NDArray[np.generic], x0: float, y0: float) -> tuple[float, float]:
        """The particle's centre in ``frame`` (x, y), starting from ``(x0, y0)``.

        NaN where the window leaves the frame or the fit does not converge.
        """
        f = np.asarray(frame, np.float64)
        h = self.half
        ix, iy = round(x0), round(y0)
        if iy - h < 0 or ix - h < 0 or iy + h >= f.shape[0] or ix + h >= f.shape[1]:
            return float("nan"), float("nan")
        win = _window(f, ix, iy, h).ravel()
        grid_y, grid_x = np.mgrid[0 : 2 * h + 1, 0 : 2 * h + 1].astype(np.float64)
        # the particle at (ix + u, iy + v) + template centre offset: t(p − (u, v))
        u, v = x0 - ix - self.centre[0], y0 - iy - self.centre[1]
        for _ in range(STEPS):
            at = [grid_y - v, grid_x - u]
            t, ty, tx = (
                ndimage.map_coordinates(c, at, order=3, prefilter=False, mode="nearest").ravel()
                for c in (self.image, self.gy, self.gx)
            )
            design = np.column_stack([t, np.ones_like(t)])
            (a, b), *_ = np.linalg.lstsq(design, win, rcond=None)
            r = win - (a * t + b)
            # d(model)/du = −a·tx, d/dv = −a·ty
            jac = np.column_stack([-a * tx, -a * ty])
            step, *_ = np.linalg.lstsq(jac, r, rcond=None)
            u, v = u + float(step[0]), v + float(step[1])
            if not (abs(u) < h / 2 and abs(v) < h / 2) or not np.isfinite(u + v):
                return float("nan"), float("nan")
            if abs(step[0]) + abs(step[1]) < TOLERANCE_PX:
                break
        return ix + u + self.centre[0], iy + v + self.centre[1]


def _window(f: NDArray[np.float64], ix: int, iy: int, half: int) -> NDArray[np.float64]:
    """``f`` around (ix, iy), ``2 half + 1`` square, padded by its edge values."""
    padded = np.pad(f, half, mode="edge")
    return padded[iy : iy + 2 * half + 1, ix : ix + 2 * half + 1]
