"""Maximum-likelihood refinement of spot positions (Poisson noise, Gaussian PSF).

For each detection, the pixel-integrated Gaussian ``μ = N·Ex·Ey + b`` (Smith et
al., *Nat. Methods* 7, 373, 2010) is fitted to a small window of photon counts by
Fisher scoring with the full information matrix of (x, y, N, b[, σ]), which stays
stable where parameters are correlated (spots cut by the frame edge). All spots
are fitted in one compiled loop (:mod:`._newton`). MLE attains the Cramér–Rao bound, which a network
regressing coordinates does not; the network supplies the starting point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special
from scipy.spatial import cKDTree

from livetrack.detection._newton import newton
from livetrack.detection._width import pooled_width

FloatArray = NDArray[np.float64]
_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
# Fisher-scoring steps at most (they stop once every step is < 0.001 px); spots
# narrower than NARROW_PSF_PX (px) take more: their likelihood is far from quadratic a
# fraction of a pixel away (σ 1.22 px, SNR 3: RMS error 1.17 → 1.13 × the CRLB)
ITERATIONS = 4
NARROW_ITERATIONS = 8
NARROW_PSF_PX = 1.6
# The PSF width: a frame's outside this range of the card's is not believed
_WIDTH_RANGE = (0.55, 1.65)
# spots it is measured on: isolated ones, at most this many
_WIDTH_SPOTS = 64
# a spot brighter than this multiple of the isolated spots' median is taken as an
# unresolved pair (two spots' light, a wider spot): it would widen the estimate
_WIDTH_MERGED = 1.5
# keep the card's width unless the frame's is known to within this fraction (~30 faint
# isolated spots give 1.60 ± 0.05 px: 3.2 %, yet 9 standard errors from the card's 2.04)
_WIDTH_PRECISION = 0.06
# ... and differs from the card's by this many standard errors
_WIDTH_SIGNIFICANT = 3.0


@dataclass(frozen=True, slots=True)
class Fit:
    """Fitted parameters per spot (pixels, photons per frame / per pixel; σ is the frame's)."""

    x: FloatArray
    y: FloatArray
    photons: FloatArray
    background: FloatArray
    sigma: FloatArray
    converged: NDArray[np.bool_]


def _axis_integral(k: FloatArray, c: FloatArray, s: FloatArray) -> FloatArray:
    """E alone (see :func:`_axis_terms`)."""
    f = special.erf((k[:, :1] - c - 0.5 + np.arange(k.shape[1] + 1)) / (s * _SQRT2))
    out: FloatArray = 0.5 * (f[:, 1:] - f[:, :-1])
    return out


def _neighbour_light(
    pairs: NDArray[np.int64],
    kx: FloatArray,
    ky: FloatArray,
    x: FloatArray,
    y: FloatArray,
    nph: FloatArray,
    s: FloatArray,
    shape: tuple[int, ...],
) -> FloatArray:
    """Expected photons from each spot's neighbours inside its window."""
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])  # the spot whose window is lit
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])  # the neighbour lighting it
    ex = _axis_integral(kx[i], x[j][:, None], s[j][:, None])
    ey = _axis_integral(ky[i], y[j][:, None], s[j][:, None])
    light = (nph[j][:, None, None] * ey[:, :, None] * ex[:, None, :]).reshape(len(i), -1)
    # sum the contributions per lit spot: a sort and reduceat (np.add.at is ~10x slower)
    order = np.argsort(i, kind="stable")
    lit, first = np.unique(i[order], return_index=True)
    extra = np.zeros((shape[0], shape[1] * shape[2]))
    extra[lit] = np.add.reduceat(light[order], first, axis=0)
    return extra.reshape(shape)


def _pooled_width(
    raw: FloatArray,
    kx: FloatArray,
    ky: FloatArray,
    x: FloatArray,
    y: FloatArray,
    nph: FloatArray,
    b: FloatArray,
    valid: FloatArray | None,
    pairs: NDArray[np.int64] | None,
    sigma0: float,
    iterations: int,
) -> float | None:
    """The frame's PSF width: the maximum of the likelihood pooled over isolated spots.

    One width shared by all spots and each spot's x, y, N and b are fitted jointly
    by Fisher scoring (:func:`~livetrack.detection._newton.pooled_width`: the
    spots' own parameters eliminated, so a step costs one pass over the windows).
    One shared width is far better determined than each faint spot's own (whose
    median was biased by their noise), and spots too bright to be single —
    unresolved pairs, which look like one wide spot — are left out. ``None`` (keep
    ``sigma0``) when fewer than 3 spots qualify, the width is not known to 3 %, or
    it is within 3 standard errors of ``sigma0`` (the card's width stands unless
    the frame says otherwise).
    """
    n = len(x)
    hw = (kx.shape[1] - 1) / 2
    alone = np.ones(n, bool)
    if n > 1:
        # no neighbour whose tail (3σ) reaches the window's corners: at 600 particles
        # per 512², neighbours at 10-14 px widened the estimate by 5 %
        near, _ = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
        alone = near[:, 1] > math.sqrt(2.0) * hw + 3.0 * sigma0
    pool = np.flatnonzero(alone)
    if len(pool) < 3:
        return None
    pool = pool[nph[pool] <= _WIDTH_MERGED * float(np.median(nph[pool]))]
    # a sample spread over the brightness range, not the brightest: with equally
    # bright spots those are the ones whose windows caught more noise, which makes
    # them look wider (+3 % at 800 photons, measured)
    ranked = pool[np.argsort(nph[pool])[::-1]]
    top = ranked[np.linspace(0, len(ranked) - 1, min(len(ranked), _WIDTH_SPOTS)).astype(int)]
    if len(top) < 3:
        return None
    vt = valid[top] if valid is not None else None
    tx, ty, tn, tb = x[top].copy(), y[top].copy(), nph[top].copy(), b[top].copy()
    ts = np.full(len(top), sigma0)
    # settle each spot at the card's width, then score the shared width with them
    newton(raw[top], kx[top], ky[top], tx, ty, tn, tb, ts, sigma0, iterations, False, None, vt)
    best, se = pooled_width(raw[top], kx[top], ky[top], tx, ty, tn, tb, sigma0, 12, vt)
    lo, hi = _WIDTH_RANGE
    # the card's width stands unless the frame's is known well and differs from it
    if not (lo * sigma0 <= best <= hi * sigma0) or se > _WIDTH_PRECISION * best:
        return None
    if abs(best - sigma0) < _WIDTH_SIGNIFICANT * se:
        return None
    return best


def _windows(
    img: NDArray[Any],
    x0: FloatArray,
    y0: FloatArray,
    hw: int,
    offset: float,
    scale: float,
    var: float,
    slope: tuple[FloatArray, FloatArray] | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
    """Each spot's window in photons, its pixel coordinates, and which lie inside the frame.

    The windows are (2hw+1)² and hold the read-noise variance added; the mask is None
    when every window lies inside the frame. A background ``slope`` (frame units per
    px along x and y, per spot) is taken out about each window's centre pixel.
    """
    h, w = img.shape
    cx = np.clip(np.rint(x0).astype(np.int64), 0, w - 1)
    cy = np.clip(np.rint(y0).astype(np.int64), 0, h - 1)
    offs = np.arange(-hw, hw + 1)
    cols_u = cx[:, None] + offs[None, :]
    rows_u = cy[:, None] + offs[None, :]
    cols = np.clip(cols_u, 0, w - 1)
    rows = np.clip(rows_u, 0, h - 1)
    ok_c = (cols_u >= 0) & (cols_u < w)
    ok_r = (rows_u >= 0) & (rows_u < h)
    valid: FloatArray | None = None
    if not (ok_c.all() and ok_r.all()):
        valid = (ok_r[:, :, None] & ok_c[:, None, :]).astype(np.float64)
    win = (img[rows[:, :, None], cols[:, None, :]].astype(np.float64) - offset) / scale
    if slope is not None:
        gx, gy = (np.asarray(g, np.float64) / scale for g in slope)
        win -= gx[:, None, None] * offs[None, None, :] + gy[:, None, None] * offs[None, :, None]
    raw = np.maximum(win + var, 0.0)  # (K, W, W)
    kx = (cx[:, None] + offs[None, :]).astype(np.float64)
    ky = (cy[:, None] + offs[None, :]).astype(np.float64)
    return raw, kx, ky, valid


def _start(raw: FloatArray, valid: FloatArray | None, hw: int) -> tuple[FloatArray, FloatArray]:
    """Starting background (the window's border ring) and photons (what is above it)."""
    n = len(raw)
    ring = np.ones((2 * hw + 1, 2 * hw + 1), bool)
    ring[1:-1, 1:-1] = False
    vr = valid[:, ring] if valid is not None else np.ones((n, int(ring.sum())))
    b = np.maximum((raw[:, ring] * vr).sum(axis=1) / np.maximum(vr.sum(axis=1), 1.0), 1e-3)
    above = (raw - b[:, None, None]).clip(0)
    nph = np.maximum((above * valid if valid is not None else above).sum(axis=(1, 2)), 1.0)
    return b, nph


def _fit_coupled(
    raw: FloatArray,
    kx: FloatArray,
    ky: FloatArray,
    valid: FloatArray | None,
    pairs: NDArray[np.int64],
    start: tuple[FloatArray, FloatArray],
    nph: FloatArray,
    b0: FloatArray,
    s: FloatArray,
    sigma0: float,
    iterations: int,
) -> tuple[FloatArray, tuple[FloatArray, FloatArray, FloatArray, FloatArray]]:
    """Spots whose windows overlap, fitted jointly (each model holds its neighbours' light).

    Returns the last position step of each, and their x, y, photons and background.
    """
    c, local = np.unique(pairs, return_inverse=True)
    lp = local.reshape(pairs.shape)
    cx_, cy_ = start
    cb = b0[c].copy()
    cs = s[c].copy()
    ext = _neighbour_light(lp, kx[c], ky[c], cx_, cy_, nph[c], cs, raw[c].shape)
    cn = np.maximum((raw[c] - ext - cb[:, None, None]).clip(0).sum(axis=(1, 2)), 1.0)
    vc = valid[c] if valid is not None else None
    step = newton(raw[c], kx[c], ky[c], cx_, cy_, cn, cb, cs, sigma0, iterations + 8, False, lp, vc)
    return step, (cx_, cy_, cn, cb)


def refine(
    photons_image: NDArray[Any],
    x0: FloatArray,
    y0: FloatArray,
    sigma0: float,
    half_width: int | None = None,
    iterations: int | None = None,
    fit_sigma: bool = True,
    passes: int = 2,
    read_noise: float = 0.0,
    offset: float = 0.0,
    scale: float = 1.0,
    alone_first: bool = True,
    slope: tuple[FloatArray, FloatArray] | None = None,
) -> Fit:
    """Fit every spot; pixels of a window that fall outside the frame are ignored.

    With ``fit_sigma`` the PSF width is first estimated once for the frame from its
    isolated spots (:func:`_pooled_width`: one width shared by all, as σ
    and N trade off in each faint spot alone), then every spot is fitted with it.
    With ``passes`` > 1, spots whose windows overlap are fitted jointly (each one's
    model includes its neighbours'). Gaussian read noise (σ in photoelectrons) is
    handled as in Huang et al. (Nat. Methods 2013): σ² is added to data and model,
    which makes the Poisson likelihood fit the Poisson + Gaussian counts. ``offset``
    and ``scale`` turn the image into photons, ``(image − offset) / scale``, on the
    fit windows only. ``alone_first=False`` skips the separate fit of spots that are
    then fitted jointly anyway (starts that are already good, e.g. a refit).
    ``slope``, the background's under each spot (frame units per px along x and y,
    :func:`~livetrack.detection.normalise.background_slope`), is taken out of its
    window: a spot on a ramp is fitted on the background its centre sits on.
    """
    img = np.asarray(photons_image)
    n = len(x0)
    if iterations is None:
        iterations = NARROW_ITERATIONS if sigma0 < NARROW_PSF_PX else ITERATIONS
    hw = half_width if half_width is not None else math.ceil(2.5 * sigma0)
    if n == 0:
        e = np.zeros(0)
        return Fit(e, e, e, e, e, np.zeros(0, bool))
    var = read_noise * read_noise
    raw, kx, ky, valid = _windows(img, x0, y0, hw, offset, scale, var, slope)
    x = np.asarray(x0, np.float64).copy()
    y = np.asarray(y0, np.float64).copy()
    s = np.full(n, float(sigma0))
    b, nph = _start(raw, valid, hw)
    pairs: NDArray[np.int64] | None = None
    if passes > 1 and n > 1:
        # a neighbour farther than hw + 2σ puts no appreciable light in the window
        reach = hw + 2.0 * sigma0
        pairs = cKDTree(np.column_stack([x, y])).query_pairs(reach, output_type="ndarray")
    if fit_sigma:
        width = _pooled_width(raw, kx, ky, x, y, nph, b, valid, pairs, sigma0, iterations)
        if width is not None:
            s[:] = width
    # every spot alone first, then the coupled ones jointly with their neighbours
    b0 = b.copy()
    coupled = np.unique(pairs) if pairs is not None and len(pairs) else np.zeros(0, np.int64)
    if alone_first or not len(coupled):
        step_x = newton(raw, kx, ky, x, y, nph, b, s, sigma0, iterations, False, None, valid)
    else:
        step_x = np.zeros(n)
        one = np.setdiff1d(np.arange(n), coupled)
        if len(one):
            ox, oy, on, ob = x[one], y[one], nph[one], b[one]
            vo = valid[one] if valid is not None else None
            step_x[one] = newton(
                raw[one], kx[one], ky[one], ox, oy, on, ob, s[one], sigma0, iterations, False,
                None, vo,
            )  # fmt: skip
            x[one], y[one], nph[one], b[one] = ox, oy, on, ob
    if pairs is not None and len(pairs):
        # restart from the given positions: alone, close spots pulled towards each other
        c = np.unique(pairs)
        start = (np.asarray(x0, np.float64)[c].copy(), np.asarray(y0, np.float64)[c].copy())
        step_x[c], fit = _fit_coupled(
            raw, kx, ky, valid, pairs, start, nph, b0, s, sigma0, iterations
        )
        x[c], y[c], nph[c], b[c] = fit
    converged = (np.abs(step_x) < 0.05) & (np.abs(x - x0) < 1.5) & (np.abs(y - y0) < 1.5)
    return Fit(x, y, nph, np.maximum(b - var, 0.0), s, converged)
