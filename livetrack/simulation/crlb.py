"""Cramér–Rao lower bound for 2-D localisation of a pixelated spot.

Two forms:

- :func:`crlb_mortensen` — the closed form of Mortensen et al., *Nat. Methods* 7,
  377 (2010), eq. 5 (maximum-likelihood, Gaussian PSF, shot noise, uniform
  background, pixel size a), with the EMCCD excess-noise factor F² = 2.
- :func:`crlb_pixelated` — the exact bound from the Fisher information of the
  pixel counts (Poisson, plus Gaussian read noise by the usual μ + σ² approximation),
  with position, photons and background all unknown.

Both return the standard deviation (pixels) of one coordinate.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import integrate, special


def crlb_mortensen(
    photons: ArrayLike,
    background: float,
    sigma_px: float,
    pixel: float = 1.0,
    excess_noise_factor_sq: float = 1.0,
) -> NDArray[np.float64]:
    """Mortensen's MLE localisation precision (per axis, pixels).

    Parameters
    ----------
    photons
        Detected photons N of the spot (scalar or array).
    background
        Background photons per pixel b.
    sigma_px
        Gaussian PSF standard deviation (pixels).
    pixel
        Pixel size in the same unit as ``sigma_px`` (1 for pixels).
    excess_noise_factor_sq
        F² (2 for an EMCCD at high gain).
    """
    n = np.atleast_1d(np.asarray(photons, float))
    sa2 = sigma_px**2 + pixel**2 / 12.0
    out = np.empty_like(n)
    for i, ni in enumerate(n):
        tau = 2.0 * math.pi * sa2 * background / (ni * pixel**2)
        if tau == 0.0:
            integral = 0.0
        else:
            integral = integrate.quad(lambda t, tau=tau: math.log(t) / (1.0 + t / tau), 0.0, 1.0)[0]
        out[i] = math.sqrt(excess_noise_factor_sq * sa2 / ni / (1.0 + integral))
    return out


def _axis(
    k: NDArray[np.float64], c: float, sigma_px: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pixel integrals of a Gaussian centred at ``c`` over pixels ``k``, and d/dc."""
    s = math.sqrt(2.0) * sigma_px
    e = 0.5 * (special.erf((k + 0.5 - c) / s) - special.erf((k - 0.5 - c) / s))
    g = (np.exp(-((k - 0.5 - c) ** 2) / s**2) - np.exp(-((k + 0.5 - c) ** 2) / s**2)) / (
        math.sqrt(math.pi) * s
    )
    return e, g


def crlb_pixelated(
    photons: float,
    background: float,
    sigma_px: float,
    read_noise: float = 0.0,
    offset: tuple[float, float] = (0.0, 0.0),
    half_width: int | None = None,
) -> float:
    """Exact CRLB for x of a pixel-integrated Gaussian spot, all of (x, y, N, b) unknown.

    Parameters
    ----------
    photons, background, sigma_px
        Spot photons, background photons per pixel, PSF width (pixels).
    read_noise
        Gaussian read noise in photoelectrons (added to the Poisson variance).
    offset
        Sub-pixel position of the spot relative to the window's central pixel.
    half_width
        Half-width of the pixel window (default 5 σ).
    """
    hw = half_width if half_width is not None else math.ceil(5 * sigma_px) + 2
    k = np.arange(-hw, hw + 1, dtype=float)
    ex, gx = _axis(k, offset[0], sigma_px)
    ey, gy = _axis(k, offset[1], sigma_px)
    p = ey[:, None] * ex[None, :]
    mu = photons * p + background
    grads = [
        photons * ey[:, None] * gx[None, :],  # d/dx
        photons * gy[:, None] * ex[None, :],  # d/dy
        p,  # d/dN
        np.ones_like(p),  # d/db
    ]
    var = mu + read_noise**2
    fisher = np.array([[np.sum(a * b / var) for b in grads] for a in grads])
    return float(math.sqrt(np.linalg.inv(fisher)[0, 0]))


def _group_bound(
    group: list[int],
    xs: NDArray[np.float64],
    ys: NDArray[np.float64],
    ns: NDArray[np.float64],
    var: NDArray[np.float64],
    hw: int,
    sigma_px: float,
    neighbours_known: bool,
) -> tuple[float, float]:
    """The bound on ``group[0]``'s (x, y), estimated jointly with the rest of ``group``."""
    h, w = var.shape
    x0 = max(int(np.floor(min(xs[group]))) - hw, 0)
    x1 = min(int(np.ceil(max(xs[group]))) + hw, w - 1)
    y0 = max(int(np.floor(min(ys[group]))) - hw, 0)
    y1 = min(int(np.ceil(max(ys[group]))) + hw, h - 1)
    kx = np.arange(x0, x1 + 1, dtype=float)
    ky = np.arange(y0, y1 + 1, dtype=float)
    grads = []
    for j in group:
        ex, gx = _axis(kx, float(xs[j]), sigma_px)
        ey, gy = _axis(ky, float(ys[j]), sigma_px)
        grads += [ns[j] * ey[:, None] * gx[None, :], ns[j] * gy[:, None] * ex[None, :]]
        grads.append(ey[:, None] * ex[None, :])
    grads.append(np.ones((len(ky), len(kx))))
    if neighbours_known:
        grads = grads[:3] + grads[-1:]
    d = np.stack(grads).reshape(len(grads), -1)
    v = var[y0 : y1 + 1, x0 : x1 + 1].reshape(-1)
    cov = np.linalg.inv((d / v) @ d.T)
    return math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1])


def crlb_dense(
    expected: NDArray[np.float64],
    x: ArrayLike,
    y: ArrayLike,
    photons: ArrayLike,
    sigma_px: float,
    read_noise: float = 0.0,
    half_width: int | None = None,
    neighbours_known: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """CRLB of every particle's (x, y) in a crowded frame: neighbours and edges included.

    The isolated-spot bound (:func:`crlb_pixelated`) understates what any estimator can
    reach where a neighbour's light overlaps or the frame's edge cuts the spot. Here,
    for each particle, the Fisher information of the pixel counts is built over the
    union of its window and its neighbours' windows (inside the frame only), with the
    expected counts of the whole frame (every particle and the background) as the
    Poisson mean, and with the particle's (x, y, N), every overlapping neighbour's
    (x, y, N) and one local background level all unknown. Its inverse gives the bound.

    Parameters
    ----------
    expected
        Noise-free expected photons per pixel of the frame (all particles + background),
        e.g. :attr:`Snapshot.expected_photons`.
    x, y, photons
        Every particle in the frame (pixels, trackpy convention; detected photons).
    sigma_px
        Gaussian PSF standard deviation (pixels).
    read_noise
        Gaussian read noise (photoelectrons), added to the Poisson variance.
    half_width
        Window half-width per particle (default ⌈4σ⌉); neighbours whose windows overlap
        the particle's are estimated jointly with it.
    neighbours_known
        Treat the neighbours' parameters as known (their light still adds noise): the
        ratio of the two bounds says how much a particle is entangled with its
        neighbours (≈ 1 apart, large for a pair closer than about σ).

    Returns
    -------
    crlb_x, crlb_y
        Standard deviations (pixels) per particle.
    """
    from scipy.spatial import cKDTree

    xs = np.asarray(x, float)
    ys = np.asarray(y, float)
    ns = np.asarray(photons, float)
    hw = half_width if half_width is not None else math.ceil(4 * sigma_px)
    var = np.asarray(expected, float) + read_noise**2
    out_x = np.full(len(xs), np.nan)
    out_y = np.full(len(xs), np.nan)
    if len(xs) == 0:
        return out_x, out_y
    tree = cKDTree(np.column_stack([xs, ys]))

    for i in range(len(xs)):
        group = [i] + [j for j in tree.query_ball_point((xs[i], ys[i]), 2 * hw + 1) if j != i]
        out_x[i], out_y[i] = _group_bound(group, xs, ys, ns, var, hw, sigma_px, neighbours_known)
    return out_x, out_y


def hologram_crlb(
    radius_um: float,
    index: float,
    z_um: float,
    *,
    photons: float,
    pixel_um: float,
    n_medium: float,
    wavelength_um: float,
    quantum_efficiency: float = 1.0,
    read_noise_e: float = 0.0,
    gain_adu_per_e: float | None = None,
    size: int = 64,
) -> NDArray[np.float64]:
    """Cramér–Rao bound (σ) of radius (µm), index and height (µm) from one hologram.

    A sphere at the centre of a ``size``² crop, ``photons`` per pixel of
    illumination; the pixels' noise is shot noise plus read noise plus the camera's
    quantisation (``gain_adu_per_e``: an ADU step of 1/gain electrons, variance
    step²/12), by the usual μ + σ² approximation. The position (x, y) and the
    brightness are unknown too. The Fisher information comes from central
    differences of :func:`~livetrack.simulation.lorenzmie.hologram`.
    """
    from livetrack.simulation.lorenzmie import hologram

    c = (size - 1) / 2.0

    def mu(t: NDArray[np.float64]) -> NDArray[np.float64]:
        a, m, z, x, y, b = t
        intensity, _ = hologram(
            (size, size), np.array([x]), np.array([y]), np.array([z / pixel_um]),
            np.array([a]), np.array([m]),
            pixel_um=pixel_um, n_medium=n_medium, wavelength_um=wavelength_um,
        )  # fmt: skip
        out: NDArray[np.float64] = (intensity * b).ravel()
        return out

    theta = np.array([radius_um, index, z_um, c, c, photons * quantum_efficiency])
    steps = np.array([1e-4, 1e-4, 1e-3, 1e-3, 1e-3, 1e-3 * theta[5]])
    jac = []
    for k in range(6):
        d = np.zeros(6)
        d[k] = steps[k]
        jac.append((mu(theta + d) - mu(theta - d)) / (2 * steps[k]))
    quant = (1.0 / gain_adu_per_e) ** 2 / 12.0 if gain_adu_per_e else 0.0
    weight = 1.0 / (mu(theta) + read_noise_e**2 + quant)
    j = np.asarray(jac)
    fisher = (j * weight) @ j.T
    out: NDArray[np.float64] = np.sqrt(np.diag(np.linalg.inv(fisher))[:3])
    return out
