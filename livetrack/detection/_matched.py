"""Matched-filter candidates: faint spots narrower than the network was trained on.

A spot of known width σ in shot and read noise is found best by correlating the
frame, in photo-electrons above its background, with the spot's own pixel-integrated
Gaussian (the matched filter), each pixel's sum divided by its noise. On frames whose
PSF is 0.75× the card's at peak SNR 2, such a filter with the true σ and background
finds 0.84 of the spots at precision 0.98 where the network's heat map, trained on
wider spots, offers 0.57 (``livetrack bench --only offconfig``). The read-out fits
these candidates like the network's own and keeps them only if their fit is
significant.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.special import erf

from livetrack.detection.normalise import _background_ramp
from livetrack.detection.readout import SAME_PARTICLE_PX, score_at

FloatArray = NDArray[np.float64]

#: the matched filter's z (a spot's correlation over the noise's) that confirms a
#: network peak scored below its threshold, and that adds a spot the network missed
#: (0.75× PSF, peak SNR 2, 24 short movies: precision 0.984 / 0.988 with and without
#: a 60 % gradient, recall 0.77 / 0.75 against trackpy's 0.72 / 0.73; 4.0 / 4.2 read
#: 0.979 / 0.79; with 32 px background blocks 4.4 read precision 0.982 at 60 %)
CONFIRM_Z = 4.1
MATCHED_Z = 4.5
#: the background's blocks (px): a cell's autofluorescence (~50–70 px) is followed by
#: 32 px blocks, not by the network's 64 (64: 107 false spots in 4 frames of one cell)
BACKGROUND_BLOCK_PX = 32


def spot_kernel(sigma: float) -> NDArray[np.float64]:
    """The 1-D profile of a pixel-integrated Gaussian of width ``sigma``.

    Scaled so that the 2-D outer product has a unit sum of squares.
    """
    r = int(np.ceil(3.0 * sigma))
    edges = (np.arange(-r, r + 2) - 0.5) / (np.sqrt(2.0) * sigma)
    k = 0.5 * np.diff(erf(edges))
    return np.asarray(k / np.sqrt(np.sum(k * k)), np.float64)


def matched_candidates(
    frame: NDArray[np.generic],
    sigma: float,
    offset: float,
    scale: float,
    read_noise: float,
    z_min: float = CONFIRM_Z,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Local maxima of the matched-filter z map reaching ``z_min``: x, y (px) and z.

    ``offset`` and ``scale`` turn the frame into photo-electrons, ``read_noise`` is
    the camera's in electrons. The background is the frame's median with its ramp
    through the medians of :data:`BACKGROUND_BLOCK_PX` blocks.
    """
    e = (np.asarray(frame, np.float32) - np.float32(offset)) / np.float32(scale)
    level = float(np.median(e[::2, ::2]))
    noise = float(np.sqrt(max(level, 0.0) + read_noise * read_noise))
    # any ramp, however shallow: the filter sums ~4πσ² pixels, so a background off by
    # a tenth of the noise moves z by ~0.5 (a 30 % gradient, too shallow to flatten
    # for the network: recall 0.75 with it taken out, 0.29 left in; 0.75× PSF, SNR 2)
    ramp = _background_ramp(
        e, 1, e.shape, noise, span=0.0, block_px=BACKGROUND_BLOCK_PX, max_blocks=64, thin=False
    )
    background = level + ramp[1] if ramp is not None else np.float32(level)
    k = spot_kernel(sigma).astype(np.float32)
    c = ndimage.correlate1d(e - background, k, axis=0, mode="nearest")
    c = ndimage.correlate1d(c, k, axis=1, mode="nearest")
    z = c / np.sqrt(np.maximum(background, 0.0) + np.float32(read_noise * read_noise))
    # the camera read from the data is good to ~10 %, and z's tail is steep: its
    # spread is taken from the map itself (spots cover a small share of it)
    z /= np.float32(1.4826 * np.median(np.abs(z[::2, ::2] - np.median(z[::2, ::2]))))
    size = 2 * max(1, round(1.5 * sigma)) + 1
    peak = (z >= z_min) & (z == ndimage.maximum_filter(z, size=size, mode="nearest"))
    edge = len(k) // 2  # beyond the frame, the filter sees its edge pixels repeated
    peak[:edge], peak[-edge:], peak[:, :edge], peak[:, -edge:] = False, False, False, False
    yy, xx = np.nonzero(peak)
    return xx.astype(np.float64), yy.astype(np.float64), z[yy, xx].astype(np.float64)


def with_matched(
    frame: NDArray[np.generic],
    out: NDArray[np.float32],
    x: FloatArray,
    y: FloatArray,
    score: FloatArray,
    stride: int,
    sigma: float,
    offset: float,
    scale: float,
    read_noise: float,
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
    """The network's peaks and the filter's candidates none of them holds, flagged.

    A flagged peak is one the matched filter confirms (z ≥ :data:`CONFIRM_Z`), or a
    spot it adds (z ≥ :data:`MATCHED_Z`), with the network's score where it lies.
    """
    mx, my, z = matched_candidates(frame, sigma, offset, scale, read_noise, CONFIRM_Z)
    confirmed = np.zeros(len(x), bool)
    if len(x) and len(mx):
        near, which = cKDTree(np.column_stack([x, y])).query(np.column_stack([mx, my]))
        same = near <= SAME_PARTICLE_PX * 2
        confirmed[which[same]] = True
        mx, my, z = mx[~same], my[~same], z[~same]
    mx, my = mx[z >= MATCHED_Z], my[z >= MATCHED_Z]
    flag = np.concatenate([confirmed, np.ones(len(mx), bool)])
    s = score_at(out, mx, my, stride)
    return np.concatenate([x, mx]), np.concatenate([y, my]), np.concatenate([score, s]), flag
