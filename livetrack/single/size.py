"""How large the one particle of a frame looks: its visible radius, for the crop.

The particle is the strongest smoothed deviation from the frame's median (bright or
dark: a fluorescent bead, a brightfield ring pattern, a hologram); around it, the
mean absolute deviation in 1-px rings falls from the particle's height to the far
field's. The visible radius encloses 95 % of the excess of the rings still a tenth
of the way up, so rings and halos count: all of the particle that carries its position.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: the share of the profile's height (above the far field) that still counts
EDGE_LEVEL = 0.1
#: the share of the particle's excess the visible radius encloses
ENCLOSED = 0.95
#: the smallest crop radial symmetry works on (px), as the detector refuses below it
MIN_CROP = 7
#: px around the visible particle kept in the crop: room for its motion
MARGIN_PX = 3


def particle_extent(frame: NDArray[Any]) -> tuple[float, float, float]:
    """(x, y, radius): the strongest particle's integer centre and visible radius (px)."""
    f = np.asarray(frame, np.float64)
    dev = np.abs(f - np.median(f))
    smooth = ndimage.gaussian_filter(dev, 3.0)
    cy, cx = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    yy, xx = np.indices(f.shape)
    ring = np.rint(np.hypot(xx - cx, yy - cy)).astype(int).ravel()
    count = np.bincount(ring)
    profile = np.bincount(ring, dev.ravel()) / np.maximum(count, 1)
    usable = count >= 8  # a far ring clipped to a corner or two says nothing
    prof = profile[: int(np.argmin(usable)) or len(profile)]
    base = float(np.percentile(prof, 20))
    level = base + EDGE_LEVEL * (float(prof.max()) - base)
    # the rings above that level, weighted by their pixels: where 95 % of that weight
    # lies within (a stray bright ring far out, a few pixels of a corner, adds little)
    mass = np.cumsum(count[: len(prof)] * np.clip(prof - level, 0, None))
    if mass[-1] <= 0:
        return float(cx), float(cy), 1.0
    radius = float(np.searchsorted(mass, ENCLOSED * mass[-1]))
    return float(cx), float(cy), max(radius, 1.0)


def crop_for(frame: NDArray[Any]) -> int:
    """The odd crop side (px) that holds the frame's particle with a margin, within the frame."""
    _, _, radius = particle_extent(frame)
    side = 2 * (int(np.ceil(radius)) + MARGIN_PX) + 1
    largest = min(np.shape(frame)[:2])
    largest -= 1 - largest % 2  # odd
    return int(max(MIN_CROP, min(side, largest)))
