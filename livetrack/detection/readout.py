"""From the network's output grid to sub-pixel detections."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

# Sum over 3×3 cells of the ideal Gaussian heat target (σ = 0.6 cell): 2πσ².
HEAT_MASS = 2.0 * np.pi * 0.6**2
_MIN_PEAK = 0.15
#: two peaks whose offsets point closer than this are one particle (the split step
#: keeps new spots this far apart too)
SAME_PARTICLE_PX = 1.5


def read_peaks(
    out: NDArray[np.floating], threshold: float, stride: int, shape: tuple[int, int]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Local maxima (3×3) of the heat map whose score reaches ``threshold``.

    ``out`` is (H/s, W/s, 3): heat logit, offset x, offset y (cell units). The score
    is the heat summed over the 3×3 cells around the peak, divided by that of an
    ideal peak: a particle on a cell corner spreads its heat over four cells
    (each ≈ 0.5) but scores like one at a cell centre; one on the frame's edge
    scores like one inside. Peaks that point at the same particle (closer than
    :data:`SAME_PARTICLE_PX`) count once. Returns x, y in frame pixels
    (trackpy convention) and the score (0–1), for peaks inside ``shape``.
    """
    logit = out[..., 0]
    cy, cx = np.nonzero(logit > float(np.log(_MIN_PEAK / (1.0 - _MIN_PEAK))))
    if not len(cy):
        e = np.zeros(0)
        return e, e, e
    # the 3×3 neighbourhoods of the candidates only (a few hundred of 16 000 cells):
    # a whole-grid maximum and uniform filter cost ~1 ms per 512² frame
    ring = np.pad(logit, 1, mode="constant", constant_values=-np.inf)
    edge = np.pad(logit.astype(np.float64), 1, mode="edge")
    best = np.full(len(cy), -np.inf, dtype=logit.dtype)
    mass = np.zeros(len(cy))
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            best = np.maximum(best, ring[cy + dy, cx + dx])
            # at the frame's edge, the cells beyond it are taken as the edge cells
            # ("nearest"): a particle cut by the edge otherwise loses up to half its
            # score and is missed
            mass += 1.0 / (1.0 + np.exp(-edge[cy + dy, cx + dx]))
    peak = logit[cy, cx] >= best
    cy, cx = cy[peak], cx[peak]
    score = np.minimum(mass[peak] / HEAT_MASS, 1.0)
    ok = score >= threshold
    cy, cx, score = cy[ok], cx[ok], score[ok]
    x = (cx + 0.5 + out[cy, cx, 1]) * stride - 0.5
    y = (cy + 0.5 + out[cy, cx, 2]) * stride - 0.5
    h, w = shape
    keep = (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
    if keep.sum() > 1:
        # A particle on a cell border can top two neighbouring cells with equal
        # logits; both offsets then point at it. Fitted as two spots, it split its
        # photons and became two tracks that swapped ids (~1 detection in 1000).
        pairs = cKDTree(np.column_stack([x, y])).query_pairs(
            SAME_PARTICLE_PX, output_type="ndarray"
        )
        pairs = pairs[keep[pairs[:, 0]] & keep[pairs[:, 1]]]
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]  # i < j: the later one loses a tie
            keep[np.where(score[j] <= score[i], j, i)] = False
    return x[keep].astype(np.float64), y[keep].astype(np.float64), score[keep]


def score_at(
    out: NDArray[np.floating], x: NDArray[np.float64], y: NDArray[np.float64], stride: int
) -> NDArray[np.float64]:
    """The network's score (as :func:`read_peaks` gives it) of the cells holding (x, y)."""
    logit = np.pad(out[..., 0].astype(np.float64), 1, mode="edge")
    h, w = out.shape[:2]
    cy = np.clip(((np.asarray(y) + 0.5) // stride).astype(np.intp), 0, h - 1)
    cx = np.clip(((np.asarray(x) + 0.5) // stride).astype(np.intp), 0, w - 1)
    mass = np.zeros(len(cy))
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            mass += 1.0 / (1.0 + np.exp(-logit[cy + dy, cx + dx]))
    return np.minimum(mass / HEAT_MASS, 1.0)


def compile_now() -> None:
    """Load (or compile, once per machine) the read-out's kernels: fit and centring."""
    from livetrack.detection._newton import compile_now as compile_fit
    from livetrack.detection.symmetry import compile_now as compile_centring

    compile_fit()
    compile_centring()
