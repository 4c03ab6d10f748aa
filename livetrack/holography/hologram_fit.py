"""Maximum-likelihood fit of one sphere's Lorenz–Mie hologram to a crop's raw pixels.

The characterisation network is fast but ~100× above the Cramér–Rao bound; a fit
of the physical model reaches the bound, but only from a start in the right
basin (the fringes ripple the likelihood). So the fit starts from the network's
estimate and searches around it, within its stated σ:

1. a coarse grid over radius, index and height (± 2.5 σ, 7 × 7 × 5 points) on
   every other pixel, the brightness solved linearly at each point;
2. Levenberg–Marquardt (scipy ``least_squares``) on all pixels over radius, index,
   height and position (brightness profiled out), from the network's estimate and
   the three best grid points; the best is fitted again with the noise taken from
   its model, not from the data (data weights bias the fit by ~1σ);
3. if that fit is poor (reduced χ² > 1.1: a neighbouring minimum, or a network
   estimate far off, as on a crop cut by the frame's edge), a grid over the whole
   range the network was trained on, steps 1 and 2 around its two best points,
   and the best of all fits is kept.

Saturated and zero pixels are censored, not dropped: they say the value was at
least (at most) the camera's limit. The σ are the inverse Fisher information at
the fit, inflated by the reduced χ² when it is above 1 (model mismatch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.simulation.lorenzmie import sphere_hologram

# radius (µm), index, height (µm), x, y (px): the fit's box around the crop
_LOWER = (0.05, 1.0, 0.5)
_UPPER = (5.0, 3.0, 200.0)
_POSITION_BOX_PX = 8.0
# the search's least step: a network may state a σ too small to search with
_MIN_SIGMA = (0.005, 0.002, 0.05)


@dataclass(frozen=True, slots=True)
class HologramOptics:
    """What the hologram's model needs of the microscope."""

    pixel_um: float
    wavelength_um: float
    medium_index: float


@dataclass(frozen=True, slots=True)
class HologramCamera:
    """The camera's conversion and noise; ``full_scale_adu``: its saturated value."""

    offset_adu: float
    gain_adu_per_e: float
    read_noise_e: float
    full_scale_adu: float


@dataclass(frozen=True, slots=True)
class SphereFit:
    """One sphere's fitted parameters, σ and goodness of fit.

    ``x, y`` are in the crop's pixels; ``brightness_e``: the illumination in
    electrons per pixel; ``reduced_chi2`` ≈ 1 for a fit that explains the pixels
    to their noise; ``widened``: the first search gave a poor fit and a wider one ran.
    """

    radius_um: float
    refractive_index: float
    z_um: float
    x: float
    y: float
    sigma: tuple[float, float, float]
    brightness_e: float
    reduced_chi2: float
    widened: bool


class _Pixels:
    """One crop's pixels in electrons, their noise, and the residuals of a model."""

    def __init__(
        self,
        window: NDArray[np.generic],
        optics: HologramOptics,
        camera: HologramCamera,
        stride: int = 1,
        step_px: float = 0.1,
    ) -> None:
        raw = np.asarray(window, np.float64)[::stride, ::stride]
        rows, cols = np.mgrid[0 : window.shape[0] : stride, 0 : window.shape[1] : stride]
        self.optics = optics
        gain = camera.gain_adu_per_e
        self.extra_var = camera.read_noise_e**2 + 1.0 / (12.0 * gain**2)  # read, rounding
        electrons = (raw - camera.offset_adu) / gain
        high = raw >= camera.full_scale_adu
        low = raw <= 0.0
        ok = ~(high | low)
        self.step_px = step_px
        # all pixels in one list, uncensored first, so one model evaluation serves all
        order = [ok, high, low]
        self.cols = np.concatenate([cols[k] for k in order]).astype(float)
        self.rows = np.concatenate([rows[k] for k in order]).astype(float)
        self.n_ok = int(ok.sum())
        self.e = electrons[ok]
        self.sigma = np.sqrt(np.maximum(self.e, 1.0) + self.extra_var)
        # censored pixels: the value's edge in electrons (half a count inside the limit),
        # and the side the value lies on (+1: at least, saturated; −1: at most, zero)
        n_high, n_low = int(high.sum()), int(low.sum())
        self.edge = np.concatenate(
            [
                np.full(n_high, (camera.full_scale_adu - 0.5 - camera.offset_adu) / gain),
                np.full(n_low, (0.5 - camera.offset_adu) / gain),
            ]
        )
        self.side = np.concatenate([np.ones(n_high), -np.ones(n_low)])

    @property
    def count(self) -> int:
        return len(self.cols)

    def model(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """The normalised hologram at every pixel (uncensored, saturated, zero)."""
        a, m, z, x, y = theta
        o = self.optics
        return sphere_hologram(
            self.cols - x,
            self.rows - y,
            z / o.pixel_um,
            float(a),
            float(m),
            pixel_um=o.pixel_um,
            n_medium=o.medium_index,
            wavelength_um=o.wavelength_um,
            step_px=self.step_px,
        )

    def brightness(self, shape: NDArray[np.float64]) -> float:
        """The illumination (electrons) that best scales ``shape`` to the pixels."""
        w = shape / self.sigma**2
        return float(max(np.dot(w, self.e) / max(np.dot(w, shape), 1e-30), 1e-6))

    def residuals(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        model = self.model(theta)
        shape = model[: self.n_ok]
        b = self.brightness(shape)
        parts = [(b * shape - self.e) / self.sigma]
        if len(self.edge):
            mu = b * model[self.n_ok :]
            t = self.side * (mu - self.edge) / np.sqrt(np.maximum(mu, 1.0) + self.extra_var)
            parts.append(np.sqrt(-2.0 * _log_ndtr(t)))
        return np.concatenate(parts)

    def weigh_by_model(self, theta: NDArray[np.float64]) -> None:
        """Take the noise from the model at ``theta``, not from the data."""
        shape = self.model(theta)[: self.n_ok]
        self.sigma = np.sqrt(np.maximum(self.brightness(shape) * shape, 1.0) + self.extra_var)


def _log_ndtr(t: NDArray[np.float64]) -> NDArray[np.float64]:
    from scipy.special import log_ndtr

    out: NDArray[np.float64] = log_ndtr(t)
    return out


def _grid(
    pixels: _Pixels,
    centre: NDArray[np.float64],
    reach: NDArray[np.float64],
    counts: tuple[int, int, int],
    box: tuple[NDArray[np.float64], NDArray[np.float64]],
) -> list[NDArray[np.float64]]:
    """Points of a grid over radius, index and height (± ``reach``), lowest χ² first."""
    axes = [centre[k] + reach[k] * np.linspace(-1.0, 1.0, counts[k]) for k in range(3)]
    out = []
    for a in axes[0]:
        for m in axes[1]:
            for z in axes[2]:
                theta = np.clip(np.array([a, m, z, centre[3], centre[4]]), *box)
                r = pixels.residuals(theta)
                out.append((float(r @ r), theta))
    out.sort(key=lambda g: g[0])
    return [theta for _, theta in out]


def _local(pixels: _Pixels, theta: NDArray[np.float64], box: Any) -> Any:
    from scipy.optimize import least_squares

    return least_squares(
        pixels.residuals,
        theta,
        bounds=box,
        x_scale="jac",
        diff_step=1e-5,
        xtol=1e-8,
        ftol=1e-10,
        gtol=1e-10,
        max_nfev=100,
    )


def _wide_starts(
    coarse: _Pixels,
    centre: NDArray[np.float64],
    steps: NDArray[np.float64],
    search_range: tuple[Sequence[float], Sequence[float]] | None,
    box: Any,
) -> tuple[list[NDArray[np.float64]], NDArray[np.float64]]:
    """Starts for the wider search, and how far each reaches: twice the first grid, or the range."""
    if search_range is None:
        return _grid(coarse, centre, 2.0 * steps, (9, 9, 7), box)[:2], steps
    lo3, hi3 = np.asarray(search_range[0], float), np.asarray(search_range[1], float)
    middle = np.array([*(lo3 + hi3) / 2.0, centre[3], centre[4]])
    starts = _grid(coarse, middle, (hi3 - lo3) / 2.0, (9, 9, 15), box)[:2]
    return starts, (hi3 - lo3) / np.array([8.0, 8.0, 14.0])  # the grid's step


def fit_sphere(
    window: NDArray[np.generic],
    start: Sequence[float],
    start_sigma: Sequence[float],
    optics: HologramOptics,
    camera: HologramCamera,
    *,
    position: tuple[float, float] | None = None,
    search_range: tuple[Sequence[float], Sequence[float]] | None = None,
    span: float = 2.5,
    poor_fit: float = 1.1,
) -> SphereFit:
    """Fit one sphere's hologram to a crop around it.

    Parameters
    ----------
    window
        The crop, raw camera values (ADU), the sphere inside it.
    start, start_sigma
        Radius (µm), index and height (µm), and their σ: the network's estimate.
    optics, camera
        The microscope and camera the crop came from.
    position
        The sphere's (x, y) in the crop's pixels (default: the crop's centre);
        the fit keeps it within 8 px of this.
    search_range
        Lowest and highest radius, index and height a sphere may have (e.g. the
        network's training ranges): where the first fit is poor, a grid over all of
        it (9 × 9 × 15) finds new starts. Default: a grid twice as wide as the first.
    span
        The first grid reaches ± ``span`` σ in radius, index and height.
    poor_fit
        A reduced χ² above this starts the wider search.

    Returns
    -------
    SphereFit
    """
    h, w = np.shape(window)
    cx, cy = position if position is not None else ((w - 1) / 2.0, (h - 1) / 2.0)
    lo = np.array([*_LOWER, cx - _POSITION_BOX_PX, cy - _POSITION_BOX_PX])
    hi = np.array([*_UPPER, cx + _POSITION_BOX_PX, cy + _POSITION_BOX_PX])
    box = (lo + 1e-9, hi - 1e-9)
    centre = np.clip(np.array([*start, cx, cy], np.float64), *box)
    steps = span * np.maximum(np.asarray(start_sigma, np.float64), _MIN_SIGMA)
    coarse = _Pixels(window, optics, camera, stride=2, step_px=0.25)

    data_weighted = _Pixels(window, optics, camera)

    def polish(starts: list[NDArray[np.float64]]) -> tuple[Any, _Pixels]:
        """Fit from each start; weigh the best's pixels by its model and fit again."""
        best = min((_local(data_weighted, theta, box) for theta in starts), key=lambda r: r.cost)
        pixels = _Pixels(window, optics, camera)
        pixels.weigh_by_model(best.x)
        return _local(pixels, best.x, box), pixels

    def search(theta: NDArray[np.float64], reach: NDArray[np.float64]) -> tuple[Any, _Pixels]:
        # the start itself is a candidate: on strong scatterers the grid can be too coarse
        return polish([theta, *_grid(coarse, theta, reach, (7, 7, 5), box)[:3]])

    res, pixels = search(centre, steps)
    dof = max(pixels.count - 6, 1)
    widened = 2.0 * res.cost / dof > poor_fit
    if widened:
        starts, reach = _wide_starts(coarse, centre, steps, search_range, box)
        for theta in starts:
            other, other_pixels = search(theta, reach)
            if other.cost < res.cost:
                res, pixels = other, other_pixels
    chi2 = 2.0 * res.cost / dof
    jac = np.asarray(res.jac)
    sd = np.sqrt(np.clip(np.diag(np.linalg.pinv(jac.T @ jac))[:3], 0.0, None))
    sd *= math.sqrt(max(chi2, 1.0))
    brightness = pixels.brightness(pixels.model(res.x)[: pixels.n_ok])
    a, m, z, x, y = (float(v) for v in res.x)
    return SphereFit(
        a, m, z, x, y, (float(sd[0]), float(sd[1]), float(sd[2])), brightness, chi2, widened
    )
