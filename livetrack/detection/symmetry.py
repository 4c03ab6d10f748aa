"""Centre each detection on its particle's centre of radial symmetry (rings, discs, blobs).

A brightfield or holographic particle is a pattern of rings, not a Gaussian spot, so
the Poisson fit of fluorescence does not apply; but it is radially symmetric about
its centre. Parthasarathy's estimator (Nat. Methods 9, 724 (2012)) finds that centre
in closed form: every intensity gradient in a window points along a line through
it, and the centre is the point nearest all those lines (weighted by the gradient's
strength and nearness). It uses the whole pattern rather than its brightest pixels,
so the rings' many pixels average the noise out where a network's offset or a
centroid scatters. Batched: every detection's window in one array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter

FloatArray = NDArray[np.float64]
#: recentre the window on the estimate and estimate again
ITERATIONS = 2


def symmetry_centres(crops: NDArray[np.floating]) -> tuple[FloatArray, FloatArray]:
    """Centres (x, y) of radial symmetry of ``crops`` (N, h, w), in each crop's pixels."""
    img = np.asarray(crops, np.float64)
    # gradients at the corners between pixels (Roberts cross), smoothed 3 × 3
    du = uniform_filter(img[:, :-1, 1:] - img[:, 1:, :-1], size=(1, 3, 3), mode="nearest")
    dv = uniform_filter(img[:, :-1, :-1] - img[:, 1:, 1:], size=(1, 3, 3), mode="nearest")
    xm = (np.arange(img.shape[2] - 1) + 0.5)[None, None, :]
    ym = (np.arange(img.shape[1] - 1) + 0.5)[None, :, None]
    grad2 = du * du + dv * dv
    with np.errstate(divide="ignore", invalid="ignore"):
        m = -(du + dv) / (du - dv)  # the slope of each gradient's line
    bad = ~np.isfinite(m)
    m[bad] = 0.0
    b = ym - m * xm
    total = np.maximum(grad2.sum(axis=(1, 2)), 1e-300)
    x0 = (grad2 * xm).sum(axis=(1, 2)) / total
    y0 = (grad2 * ym).sum(axis=(1, 2)) / total
    w = grad2 / np.sqrt((xm - x0[:, None, None]) ** 2 + (ym - y0[:, None, None]) ** 2 + 1e-12)
    w = np.where(bad, 0.0, w) / (m * m + 1.0)
    sw, smw = w.sum(axis=(1, 2)), (m * w).sum(axis=(1, 2))
    smmw, smbw, sbw = (
        (m * m * w).sum(axis=(1, 2)),
        (m * b * w).sum(axis=(1, 2)),
        (b * w).sum(axis=(1, 2)),
    )
    det = smw * smw - smmw * sw
    with np.errstate(divide="ignore", invalid="ignore"):
        return (smbw * sw - smw * sbw) / det, (smbw * smw - smmw * sbw) / det


def _windows(
    img: NDArray[np.generic], ix: NDArray[np.int_], iy: NDArray[np.int_], half: int
) -> Any:
    """The (N, 2·half + 1, 2·half + 1) windows centred on (ix, iy); the edge pixels repeat."""
    h, w = img.shape
    offs = np.arange(-half, half + 1)
    rows = np.clip(iy[:, None, None] + offs[None, :, None], 0, h - 1)
    cols = np.clip(ix[:, None, None] + offs[None, None, :], 0, w - 1)
    return img[rows, cols]


def symmetric_centres(
    frame: NDArray[np.generic], x: FloatArray, y: FloatArray, half: int
) -> tuple[FloatArray, FloatArray]:
    """Move each (x, y) to the centre of radial symmetry of the window of side ``2·half + 1``.

    A window is recentred and read again (:data:`ITERATIONS`); an estimate that moved
    farther than ``half`` (a neighbour's rings, a flat window) keeps the start.
    Windows reaching past the frame's edge see its last pixels repeated.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) == 0:
        return x, y
    img = np.asarray(frame)
    h, w = img.shape
    cx, cy = x.copy(), y.copy()
    good = np.ones(len(x), bool)
    for _ in range(ITERATIONS):
        ix = np.clip(np.rint(cx).astype(int), 0, w - 1)
        iy = np.clip(np.rint(cy).astype(int), 0, h - 1)
        dx, dy = symmetry_centres(_windows(img, ix, iy, half))
        good &= np.isfinite(dx) & np.isfinite(dy)
        cx, cy = np.where(good, ix - half + dx, x), np.where(good, iy - half + dy, y)
    good &= np.hypot(cx - x, cy - y) <= half
    return np.where(good, cx, x), np.where(good, cy, y)


def radial_f(frame: NDArray[np.generic], x: FloatArray, y: FloatArray, half: int) -> FloatArray:
    """How well each window's radial profile explains it: the one-way ANOVA ratio F.

    The window's pixels are grouped by their distance from (x, y), in 1-px rings; F is
    the variance between the rings' means over the variance within them. A radially
    symmetric particle has F in the hundreds; white noise ~1 (the 99.9th percentile
    ~3 for a 17 × 17 window); textured background a few to tens.
    """
    n = len(x)
    if n == 0:
        return np.zeros(0)
    offs = np.arange(-half, half + 1)
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    v = _windows(np.asarray(frame), ix, iy, half).astype(np.float64).reshape(n, -1)
    r = np.hypot(
        offs[None, None, :] - (x - ix)[:, None, None], offs[None, :, None] - (y - iy)[:, None, None]
    ).reshape(n, -1)
    ring = np.minimum(r.astype(int), half)  # the corners join the outer ring
    key = (np.arange(n)[:, None] * (half + 1) + ring).ravel()
    size = n * (half + 1)
    count = np.bincount(key, minlength=size).reshape(n, -1)
    mean = np.bincount(key, v.ravel(), size).reshape(n, -1) / np.maximum(count, 1)
    fitted = np.take_along_axis(mean, ring, axis=1)
    rings = (count > 0).sum(axis=1)
    between = ((fitted - v.mean(axis=1, keepdims=True)) ** 2).sum(axis=1) / (rings - 1)
    within = ((v - fitted) ** 2).sum(axis=1) / (v.shape[1] - rings)
    return np.asarray(between / np.maximum(within, 1e-12), np.float64)


def centred_as_card(
    frame: NDArray[np.generic], x: FloatArray, y: FloatArray, score: FloatArray, outputs: Any
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Rings centred on their symmetry, those that are not rings dropped, if the card says so.

    With ``refinement = "radial_symmetry"``: :func:`symmetric_centres`, then only the
    detections whose :func:`radial_f` reaches the card's ``min_symmetry_f``. Otherwise
    (x, y, score) as they are.
    """
    if outputs.refinement != "radial_symmetry" or len(x) == 0:
        return x, y, score
    x, y = symmetric_centres(frame, x, y, outputs.symmetry_half_px)
    keep = radial_f(frame, x, y, outputs.symmetry_half_px) >= outputs.min_symmetry_f
    return x[keep], y[keep], score[keep]
