"""Benchmark section ``diffusion`` (on request): free beads' D against Stokes–Einstein.

Simulated movies whose optics are no preset's, with the physics known: Brownian
beads of one radius in water at 295 K, so D = kT / (6πηa). Rings: brightfield beads
of 0.75 µm radius, index 1.50, 6 µm from focus (the shipped brightfield model's
preset differs in all three), 20 in 384², 100 frames at 10 frames/s. Spots:
fluorescent beads of 0.1 µm radius with a PSF 1.3× the preset's, 40 in 384², 100
frames at 50 frames/s (4.5 px a frame per axis). Each movie, written as an ImageJ
TIFF with its pixel size and frame interval, goes through ``adapt`` and ``process``
as a user runs them; D is the slope / 4 of a straight line (with an intercept, for
the localisation error) through trackpy's ensemble MSD at lags 1–5. The same fit on
the simulator's own tracks shows what the finite movie itself allows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from livetrack.config import SimulationConfig, load_simulation_config

FRAMES = 100
SIDE = 384
LAGS = 5


def free_beads(kind: str) -> SimulationConfig:
    """The simulated experiment: ``"rings"`` (brightfield) or ``"spots"`` (fluorescence)."""
    if kind == "rings":
        cfg = load_simulation_config("brightfield_colloid_detector")
        p = cfg.particles
        fixed = {"std": 0.0}
        parts = p.model_copy(update={
            "number": 20,
            "radius_um": p.radius_um.model_copy(update={**fixed, "mean": 0.75, "min": 0.75,
                                                        "max": 0.75}),
            "refractive_index": p.refractive_index.model_copy(update={**fixed, "mean": 1.5,
                                                                      "min": 1.5, "max": 1.5}),
            "z_um": p.z_um.model_copy(update={"min": 6.0, "max": 6.0}),
        })  # fmt: skip
        interval = 100.0
    else:
        cfg = load_simulation_config("fluorescent_beads")
        p = cfg.particles
        parts = p.model_copy(update={"number": 40, "radius_um": p.radius_um.model_copy(
            update={"mean": 0.1, "std": 0.0, "min": 0.1, "max": 0.1})})  # fmt: skip
        optics = cfg.optics.model_copy(update={"wavelength_um": cfg.optics.wavelength_um * 1.3})
        cfg = cfg.model_copy(update={"optics": optics})
        interval = 20.0
    cam = cfg.camera.model_copy(
        update={"width": SIDE, "height": SIDE, "frame_interval_ms": interval}
    )
    return cfg.model_copy(update={"camera": cam, "particles": parts})


def msd_diffusion(tracks: pd.DataFrame, pixel_um: float, interval_s: float) -> tuple[float, float]:
    """(D µm²/s, intercept µm²) of a line through trackpy's ensemble MSD at lags 1–5."""
    import trackpy

    trackpy.quiet()
    msd = trackpy.emsd(tracks[["frame", "particle", "x", "y"]], mpp=pixel_um,
                       fps=1.0 / interval_s, max_lagtime=LAGS)  # fmt: skip
    slope, intercept = np.polyfit(msd.index.to_numpy(float), msd.to_numpy(float), 1)
    return float(slope) / 4.0, float(intercept)


def _row(kind: str, seed: int, tmp: Path) -> dict[str, Any]:
    import tifffile

    from livetrack.adapt import adapt_movie
    from livetrack.offline.process import DetectorSpec, track_movie
    from livetrack.simulation import simulate_movie

    cfg = free_beads(kind)
    movie = simulate_movie(cfg, FRAMES, seed=seed)
    pixel = cfg.optics.camera_pixel_um / cfg.optics.magnification
    dt = cfg.camera.frame_interval_ms / 1e3
    path = tmp / f"{kind}-{seed}.tif"
    tifffile.imwrite(path, movie.frames, imagej=True, resolution=(1 / pixel, 1 / pixel),
                     metadata={"axes": "TYX", "unit": "um", "finterval": dt})  # fmt: skip
    model = adapt_movie(path, tmp / f"model-{kind}-{seed}", verbose=0).model
    ours, _, _ = track_movie(path, DetectorSpec(model=str(model)))
    d_se = cfg.motion.stokes_einstein_um2_per_s(cfg.particles.radius_um.mean)
    d_truth, _ = msd_diffusion(movie.truth, pixel, dt)
    d_ours, intercept = msd_diffusion(ours, pixel, dt)
    return {
        "movie": kind, "seed": seed, "stokes_einstein_um2_s": d_se,
        "truth_tracks_over_se": d_truth / d_se, "ours_over_se": d_ours / d_se,
        "ours_over_truth_tracks": d_ours / d_truth, "msd_intercept_um2": intercept,
        "found_per_frame": len(ours) / FRAMES, "true_per_frame": len(movie.truth) / FRAMES,
        "median_track_frames": float(ours.groupby("particle").size().median()),
    }  # fmt: skip


def bench_diffusion(quick: bool) -> list[dict[str, Any]]:
    """One row per movie: D from our tracks and from the truth's, over Stokes–Einstein."""
    seeds = (1,) if quick else (1, 2)
    with tempfile.TemporaryDirectory() as tmp:
        return [_row(kind, seed, Path(tmp)) for kind in ("rings", "spots") for seed in seeds]
