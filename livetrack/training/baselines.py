"""Classical baselines the detector is measured against.

- trackpy ``locate`` (centroid with sub-pixel refinement), with ``minmass`` tuned
  on the ground truth (its best case: the threshold maximising F1).
- The radial-symmetry centre (Parthasarathy, *Nat. Methods* 9, 724, 2012), a few
  lines of numpy.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from livetrack.linking.scores import detection_scores


def trackpy_diameter(sigma_px: float) -> int:
    """Trackpy's feature diameter for a Gaussian spot: odd, about 2·(3σ)."""
    return math.ceil(3.0 * sigma_px) * 2 + 1


def trackpy_locate(frame: NDArray[np.generic], diameter: int, minmass: float) -> pd.DataFrame:
    """One frame through ``trackpy.locate`` (x, y, mass)."""
    import trackpy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = trackpy.locate(frame, diameter, minmass=minmass, preprocess=True)
    out: pd.DataFrame = f[["x", "y", "mass"]]
    return out


def tune_trackpy_minmass(
    frames: NDArray[np.generic], truth: pd.DataFrame, diameter: int, n_frames: int = 3
) -> float:
    """The minmass maximising F1 against the truth on the first frames (trackpy's best case)."""
    feats = []
    for i in range(min(n_frames, len(frames))):
        f = trackpy_locate(frames[i], diameter, 0.0)
        feats.append(f.assign(frame=i))
    allf = pd.concat(feats, ignore_index=True)
    t = truth[truth["frame"] < min(n_frames, len(frames))]
    candidates = np.quantile(allf["mass"], np.linspace(0.0, 0.98, 50))
    best, best_f1 = 0.0, -1.0
    for m in candidates:
        s = detection_scores(t, allf[allf["mass"] >= m])
        if s.f1 > best_f1:
            best, best_f1 = float(m), s.f1
    return best


def trackpy_detect_movie(
    frames: NDArray[np.generic], diameter: int, minmass: float
) -> pd.DataFrame:
    """Detections of every frame, as one table with a ``frame`` column."""
    out = [trackpy_locate(frames[i], diameter, minmass).assign(frame=i) for i in range(len(frames))]
    return pd.concat(out, ignore_index=True)
