"""The ``adapt`` bench's real fluorescence recordings, against trackpy tuned by an expert.

Two recordings shipped with the package (``livetrack/bench/real``, CC0, from
sdt-python's test data): single molecules of pMHC–Alexa Fluor 647 (10 frames of
128², a bright population and a fainter one near the noise) and fluorescent beads
(one frame, two views side by side). Each goes through ``livetrack adapt`` and
``livetrack process`` as a user runs them, and is compared with trackpy's
``locate`` as an expert tunes it: diameter 7 (the spots' σ is ~1 px), ``minmass``
at the Otsu gap of the log-masses (the gap an expert picks in the mass histogram),
and ``separation`` :data:`SEPARATION` px, where trackpy's default (diameter + 1)
drops the fainter of two spots that are clearly resolved. Agreement is counted
within 1 px, :data:`EDGE_PX` from the edge (trackpy leaves out features within a
radius of it). The default separation and the shipped model are reported beside.
For the single molecules, sdt-python's own reference (the original Crocker–Grier
code on its brightest spots) is counted too: the share of it we find.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from livetrack.bench._lodestar import _matched, interior_matched, otsu

REAL = Path(__file__).with_name("real")
MOVIES = {"pmhc_af647.tif": "single molecules, pMHC–AF647", "beads_two_views.tif": "beads"}
SDT_REFERENCE = REAL / "pmhc_af647_sdt_cg.csv"
DIAMETER = 7
SEPARATION = 4.0
EDGE_PX = 4.0


def expert_spots(
    frames: NDArray[np.generic], separation: float | None = SEPARATION
) -> pd.DataFrame:
    """Trackpy's ``locate`` on every frame, ``minmass`` at the Otsu gap of the log-masses."""
    import trackpy

    trackpy.quiet()
    kw = {} if separation is None else {"separation": separation}
    stack = np.asarray(frames, np.float64)
    feats = trackpy.batch(stack, DIAMETER, minmass=0, processes=1, **kw)
    out: pd.DataFrame = feats[np.log(feats["mass"]) >= otsu(np.log(feats["mass"].to_numpy()))]
    return out


def _agreement(
    table: pd.DataFrame, refs: dict[str, pd.DataFrame], shape: tuple[int, ...], prefix: str
) -> dict[str, Any]:
    """Per frame, and matched both ways against each reference (keyed by column suffix)."""
    out: dict[str, Any] = {f"{prefix}per_frame": len(table) / shape[0]}
    for name, ref in refs.items():
        ours, theirs = interior_matched(table, ref, shape, EDGE_PX)
        out[f"{prefix}matched{name}"], out[f"{prefix}reference_matched{name}"] = ours, theirs
    return out


def fluorescence_rows(tmp: Path) -> list[dict[str, Any]]:
    """Each recording through ``adapt`` and ``process``, and the shipped model, vs trackpy."""
    import tifffile

    from livetrack.adapt import adapt_movie
    from livetrack.offline.process import DetectorSpec, track_movie

    rows = []
    for name, label in MOVIES.items():
        movie = REAL / name
        frames = tifffile.imread(movie)
        frames = frames if frames.ndim == 3 else frames[None]
        t0 = time.perf_counter()
        result = adapt_movie(movie, tmp / f"fluo-{movie.stem}", verbose=0)
        seconds = time.perf_counter() - t0
        ours, _, _ = track_movie(movie, DetectorSpec(model=str(result.model)))
        shipped, _, _ = track_movie(movie, DetectorSpec())
        m, cuts = result.measured, result.cuts
        refs = {"": expert_spots(frames), "_default_separation": expert_spots(frames, None)}
        row: dict[str, Any] = {
            "movie": label, "frames": len(frames), "adapt_seconds": seconds,
            "sigma_px": getattr(m, "sigma_px", None),
            "reference_per_frame": len(refs[""]) / len(frames),
            "min_photons": getattr(cuts, "min_photons", None),
            "faint_per_frame": getattr(cuts, "faint_per_frame", None),
            "split_lobe_z": getattr(cuts, "split_lobe_z", None),
            "split_elongation": getattr(cuts, "split_elongation", None),
            **_agreement(ours, refs, frames.shape, ""),
            **_agreement(shipped, refs, frames.shape, "shipped_"),
        }  # fmt: skip
        if name == "pmhc_af647.tif":
            sdt = pd.read_csv(SDT_REFERENCE)
            row["sdt_reference_found"] = _matched(sdt, ours, 1.0)[0]
            row["shipped_sdt_reference_found"] = _matched(sdt, shipped, 1.0)[0]
        rows.append(row)
    return rows
