"""The camera of a movie, read from its frames: offset (dark level) and gain.

Pixel values are ``offset + gain × electrons``; electrons are Poisson, so where only
background is seen, a pixel's variance over time is ``gain × (level − offset)`` plus
the read noise. The first frames are read with every particle masked out (a disc
around each peak the network finds: particles passing by would add variance), then:

- the **gain** is the slope of variance against level, where the background spans
  enough levels to measure it (a gradient, vignetting); else the one given, else the
  model card's;
- the **offset** follows from each background pixel's level and variance.

A movie of one or two frames has no variance over time: side-by-side background
pixels give it instead (:func:`spatial_background_stats`).

Adding a constant to a movie moves its offset by that constant, so the frames mapped
into the model's camera (:func:`in_model_camera`) are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter

Source = Literal["data", "option", "card"]
#: frames the estimate reads (consecutive, from the start)
FRAMES = 32
#: background pixels the offset needs (fewer: the card's; a crowded or tiny movie)
MIN_PIXELS = 5000
#: a measured gain needs its slope to this relative standard error, over this many
#: electrons of background levels
GAIN_PRECISION = 0.05
GAIN_SPAN_E = 5.0
#: side (px) of the box a pixel's level is smoothed over, to sort pixels by level
LEVEL_BOX_PX = 31


@dataclass(frozen=True)
class Camera:
    """A camera's offset and gain, and where each came from (``data``, ``option``, ``card``)."""

    offset_adu: float
    gain_adu_per_e: float
    offset_from: Source = "card"
    gain_from: Source = "card"
    invert: bool = False  # dark particles on a bright background (see in_model_camera)

    def as_record(self) -> dict[str, Any]:
        """For the sidecar."""
        return {
            "offset_adu": round(self.offset_adu, 3),
            "gain_adu_per_e": round(self.gain_adu_per_e, 4),
            "offset_from": self.offset_from,
            "gain_from": self.gain_from,
            "inverted": self.invert,
        }


def background_stats(
    frames: NDArray[Any], spots: Sequence[tuple[NDArray[Any], NDArray[Any]]], radius: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Level and temporal variance of each pixel over the frames where no particle was near.

    ``spots``: each frame's particle positions (x, y); pixels within ``radius`` of one
    are left out of that frame. A pixel free in fewer than half the frame pairs is dropped.
    The third array is each pixel's level smoothed over its neighbours
    (:data:`LEVEL_BOX_PX`): nearly free of the noise the gain's slope is read from.
    """
    f = np.asarray(frames, np.float64)
    free = _free_pixels(f.shape, spots, radius)
    pair = free[1:] & free[:-1]
    d = np.diff(f, axis=0)
    for k in range(len(d)):  # a frame-wide flicker is no pixel noise
        if pair[k].any():
            d[k] -= np.median(d[k][pair[k]])
    n = pair.sum(axis=0)
    var = 0.5 * np.where(pair, d * d, 0.0).sum(axis=0) / np.maximum(n, 1)
    if np.issubdtype(np.asarray(frames).dtype, np.integer):
        var -= 1.0 / 12.0  # rounding to whole ADU adds 1/12 ADU² per value
    level = np.where(free, f, 0.0).sum(axis=0) / np.maximum(free.sum(axis=0), 1)
    seen = free.any(axis=0).astype(np.float64)
    box = min(LEVEL_BOX_PX, *level.shape)
    smooth = uniform_filter(level * seen, box) / np.maximum(uniform_filter(seen, box), 1e-12)
    ok = (n >= max(2, (len(f) - 1) // 2)) & (var > 0)
    return level[ok], var[ok], smooth[ok]


def _free_pixels(
    shape: tuple[int, ...], spots: Sequence[tuple[NDArray[Any], NDArray[Any]]], radius: int
) -> NDArray[np.bool_]:
    """Per frame, the pixels farther than ``radius`` from every particle."""
    free = np.ones(shape, bool)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc_y, disc_x = np.nonzero(xx**2 + yy**2 <= radius**2)
    h, w = shape[1:]
    for k, (x, y) in enumerate(spots):
        cy = np.rint(np.asarray(y)).astype(int)[:, None] + disc_y[None, :] - radius
        cx = np.rint(np.asarray(x)).astype(int)[:, None] + disc_x[None, :] - radius
        inside = (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
        free[k][cy[inside], cx[inside]] = False
    return free


#: neighbour pairs averaged into one spatial sample (as a pixel's ~31 frame pairs)
PAIRS_PER_SAMPLE = 32


def spatial_background_stats(
    frames: NDArray[Any], spots: Sequence[tuple[NDArray[Any], NDArray[Any]]], radius: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Level and variance from side-by-side background pixels (one or two frames).

    Too few frames for a pixel's variance over time: the variance is read from the
    difference of horizontal neighbours instead (a smooth background cancels), and
    runs of :data:`PAIRS_PER_SAMPLE` neighbouring pairs are averaged, so the samples
    stand where the temporal ones would.
    """
    f = np.asarray(frames, np.float64)
    if f.ndim != 3 or f.shape[0] == 0 or f.shape[2] < 2:
        return np.zeros(0), np.zeros(0)
    free = _free_pixels(f.shape, spots, radius)
    both = free[:, :, 1:] & free[:, :, :-1]
    a, b = f[:, :, 1:][both], f[:, :, :-1][both]
    level, half_d2 = 0.5 * (a + b), 0.5 * (a - b) ** 2
    # in raster order: each sample is a short run of neighbours (sorting by level
    # would make noise look like a span of background levels)
    n = len(level) // PAIRS_PER_SAMPLE * PAIRS_PER_SAMPLE
    level = level[:n].reshape(-1, PAIRS_PER_SAMPLE).mean(axis=1)
    var = half_d2[:n].reshape(-1, PAIRS_PER_SAMPLE).mean(axis=1)
    if np.issubdtype(np.asarray(frames).dtype, np.integer):
        var -= 1.0 / 12.0
    keep = var > 0
    return level[keep], var[keep]


def _measured_gain(
    level: NDArray[np.float64], var: NDArray[np.float64], by: NDArray[np.float64]
) -> float | None:
    """The slope of variance against level, if the background spans enough levels to tell.

    Pixels are binned by ``by``, a level nearly free of their own noise: binned by the
    noisy level itself, a bin's mean level strays from its mean variance's (errors in
    variables) and the slope reads low (a 60 % gradient over 4 frames: 1.875 for 2;
    over 32 frames: 1.979), the less the background spans, the more.
    """
    edges = np.quantile(by, np.linspace(0.0, 1.0, 11))
    which = np.clip(np.searchsorted(edges, by, side="right") - 1, 0, 9)
    m = np.array([level[which == b].mean() for b in range(10)])
    v = np.array([var[which == b].mean() for b in range(10)])
    (slope, _), res, *_ = np.linalg.lstsq(np.column_stack([m, np.ones(10)]), v, rcond=None)
    se = np.sqrt(float(res[0]) / 8 / np.sum((m - m.mean()) ** 2)) if len(res) else np.inf
    good = slope > 0 and se < GAIN_PRECISION * slope and np.ptp(m) / slope >= GAIN_SPAN_E
    return float(slope) if good else None


def estimate_camera(
    frames: NDArray[Any],
    spots: Sequence[tuple[NDArray[Any], NDArray[Any]]],
    card: Any,
    offset_adu: float | None = None,
    gain_adu_per_e: float | None = None,
) -> Camera:
    """The movie's camera from its frames and the particles found in them.

    ``card``: the model's card (its PSF width sizes the masks; its camera stands where
    the data cannot tell); ``offset_adu`` and ``gain_adu_per_e`` override.
    """
    e = card.expects
    radius = int(np.ceil(4.0 * e.psf_sigma_px))
    if len(frames) >= 3:
        level, var, by = background_stats(frames, spots, radius)
        # consecutive differences share frames: as many degrees of freedom as a χ² of
        # 2(N−1)²/(3N−4) (von Neumann's successive differences), 2.25 for N = 4 frames
        n = len(frames)
        pixels, dof = len(level), 2.0 * (n - 1) ** 2 / (3 * n - 4)
    else:  # each sample stands for its run of neighbouring pairs
        level, var = spatial_background_stats(frames, spots, radius)
        by = level  # a sample's level is already a mean of its run of pixels
        pixels, dof = len(level) * PAIRS_PER_SAMPLE, float(PAIRS_PER_SAMPLE)
    enough = pixels >= MIN_PIXELS
    measured = _measured_gain(level, var, by) if enough and gain_adu_per_e is None else None
    g = gain_adu_per_e or measured or e.camera_gain_adu_per_e
    g_from: Source = "option" if gain_adu_per_e else ("data" if measured else "card")
    if offset_adu is not None:
        return Camera(offset_adu, g, "option", g_from)
    if not enough:
        return Camera(e.camera_offset_adu, g, "card", g_from)
    read_adu2 = (g * e.camera_read_noise_e) ** 2
    # a variance of a few squared differences is χ²-like: its median lies below its
    # mean (by ~27 % over 4 frames; Wilson–Hilferty), and the offset is a median
    median_over_mean = (1.0 - 2.0 / (9.0 * dof)) ** 3
    electrons = (var / median_over_mean - read_adu2) / g
    return Camera(float(np.median(level - electrons)), g, "data", g_from)


def in_model_camera(
    frame: NDArray[Any],
    offset_adu: float | None,
    gain_adu_per_e: float | None,
    card: Any,
    invert: bool = False,
) -> NDArray[Any]:
    """The frame in the model's camera units: the same electrons, as the card's camera counts.

    A value left out (None) is the card's; with both left out, or no card (a classical
    detector works in the frame's own units), the frame is returned as it is.
    ``invert``: dark particles on a bright background are turned into bright ones on a
    background of the same level, ``e → 2 B − e`` in electrons with ``B`` the frame's
    median: a pixel keeps its shot noise, so the model sees Poisson-like frames. A card
    whose model takes dark particles (``expects.inverts``) asks for it itself.
    """
    invert = invert or (card is not None and card.expects.inverts)
    if card is None or (offset_adu is None and gain_adu_per_e is None and not invert):
        return frame
    e = card.expects
    offset = e.camera_offset_adu if offset_adu is None else offset_adu
    gain = gain_adu_per_e or e.camera_gain_adu_per_e
    scale = np.float32(e.camera_gain_adu_per_e / gain)
    out: NDArray[Any] = (np.asarray(frame, np.float32) - np.float32(offset)) * scale
    if invert:  # the level from a sub-sample: the same to ~1 % of the noise, not 3 ms
        from livetrack.detection.normalise import sub_sample  # numba: only where inverted

        np.subtract(np.float32(2.0 * np.median(sub_sample(out)[0])), out, out=out)
    out += np.float32(e.camera_offset_adu)
    return out
