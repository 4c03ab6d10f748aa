"""Linking parameters read from a movie's own detections.

The search range follows the particles' frame-to-frame displacement: between
consecutive frames each detection is paired with its mutual nearest neighbour, and
a Rayleigh distribution (2-D Brownian steps plus localisation error, drift included
as it shows) is fitted to the pair distances, clipped iteratively so that the
occasional wrong pair (a particle missed in one frame) does not widen it. The range
covers the fitted steps to 1 in 3000 (4 σ).

The memory follows from the density: a track missed for ``g`` frames searches an
area that grows as ``π R² (g + 1)`` (diffusion); the memory is the longest gap for
which that area holds, on average, less than one other particle. A sparse movie
keeps the full memory, a dense one a short memory, so it is not over-linked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from livetrack.linking._config import LinkingConfig

#: frames whose detections are read (consecutive, from the start)
FRAMES = 32
#: fewer mutual pairs than this: the defaults stay
MIN_PAIRS = 30
#: the search range covers steps to 4 σ of the fitted Rayleigh (1 in 3000 beyond)
RANGE_PER_SIGMA = 4.0
#: bounds of the search range read from data (px): a missed frame must still be
#: bridged when particles stand still; wider than this a frame-to-frame linker has
#: nothing to go on
RANGE_BOUNDS_PX = (2.0, 50.0)
#: the median of a Rayleigh distribution over its σ: √(2 ln 2)
_RAYLEIGH_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))

Positions = tuple[NDArray[Any], NDArray[Any]]


@dataclass(frozen=True)
class Motion:
    """Displacements and density measured on a movie's first frames."""

    step_px: float  # Rayleigh σ of the frame-to-frame displacement (per axis)
    density_per_px2: float  # detections per pixel²
    pairs: int  # mutual nearest-neighbour pairs the fit used
    frames: int  # frames read


def mutual_pairs(a: Positions, b: Positions) -> NDArray[np.float64]:
    """Distances between the detections of two frames that are each other's nearest."""
    pa = np.column_stack([np.asarray(a[0], float), np.asarray(a[1], float)])
    pb = np.column_stack([np.asarray(b[0], float), np.asarray(b[1], float)])
    if len(pa) == 0 or len(pb) == 0:
        return np.zeros(0)
    d_ab, j = cKDTree(pb).query(pa)
    _, i = cKDTree(pa).query(pb)
    mutual = i[j] == np.arange(len(pa))
    return np.asarray(d_ab[mutual], np.float64)


def rayleigh_sigma(d: NDArray[np.float64], rounds: int = 8) -> float:
    """σ of the Rayleigh component of ``d``, its far tail (wrong pairs) clipped away."""
    sigma = float(np.median(d)) / _RAYLEIGH_MEDIAN
    for _ in range(rounds):
        cut = RANGE_PER_SIGMA * sigma
        kept = d[d <= cut]
        if len(kept) == 0:
            break
        # the median of a Rayleigh truncated at 4 σ is that of the whole (to 0.03 %)
        new = float(np.median(kept)) / _RAYLEIGH_MEDIAN
        if abs(new - sigma) < 1e-3 * sigma:
            break
        sigma = new
    return sigma


def measure_motion(frames: Sequence[Positions], shape: tuple[int, int]) -> Motion | None:
    """Step and density from consecutive frames' detections (None: too few pairs)."""
    d = [mutual_pairs(frames[k], frames[k + 1]) for k in range(len(frames) - 1)]
    pairs = np.concatenate(d) if d else np.zeros(0)
    if len(pairs) < MIN_PAIRS:
        return None
    counts = [len(np.asarray(f[0])) for f in frames]
    density = float(np.mean(counts)) / float(shape[0] * shape[1])
    return Motion(max(rayleigh_sigma(pairs), 1e-3), density, len(pairs), len(frames))


def linking_from_motion(
    base: LinkingConfig, motion: Motion | None
) -> tuple[LinkingConfig, dict[str, Any]]:
    """``base`` with its search range and memory from ``motion``, unless set explicitly.

    Returns the configuration and a record of what was measured and where each value
    came from (``data``, ``option`` or ``default``), for the sidecar.
    """
    given = base.model_fields_set
    record: dict[str, Any] = {
        "search_range_from": "option" if "search_range_px" in given else "default",
        "memory_from": "option" if "memory" in given else "default",
    }
    if motion is None:
        record["measured"] = f"fewer than {MIN_PAIRS} particles seen in consecutive frames"
        return base, record
    record["measured"] = {
        "step_px": round(motion.step_px, 3),
        "density_per_px2": float(f"{motion.density_per_px2:.4g}"),
        "pairs": motion.pairs,
        "frames": motion.frames,
    }
    update: dict[str, Any] = {}
    search = base.search_range_px
    if "search_range_px" not in given:
        lo, hi = RANGE_BOUNDS_PX
        search = float(np.clip(round(RANGE_PER_SIGMA * motion.step_px, 1), lo, hi))
        update["search_range_px"] = search
        record["search_range_from"] = "data"
    if "memory" not in given:
        crowd = motion.density_per_px2 * np.pi * search**2  # others in the search disc
        longest = int(np.floor(1.0 / crowd)) - 1 if crowd > 0 else base.memory
        update["memory"] = int(np.clip(longest, 0, LinkingConfig().memory))
        record["memory_from"] = "data"
    # model_copy keeps the explicitly set fields marked as such
    return base.model_copy(update=update), record
