"""Benchmark section ``single``: the single-particle localiser next to classical centring.

Simulated one-colloid crops (the ``trapped_colloid`` preset, a seed the training
never used) at three illumination levels: RMSE (px) of the localiser network,
radial symmetry and trackpy's centroid on the same crops, and how often the
network's stated σ covers its error. Then the real brightfield colloids (no ground
truth): the frame-to-frame spread of each method's offset from trackpy's
``locate_brightfield_ring`` reference, and time per frame.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

#: where the real movies are, inside the folder given as ``bench --real-data``
COLLOIDS = "brightfield_colloids"
TRAPPED = "deeptrack_videos"


def _trackpy_centre(crop: np.ndarray, diameter: int) -> tuple[float, float]:
    import trackpy

    f = trackpy.locate(crop, diameter, topn=1)
    if len(f) == 0:
        return float("nan"), float("nan")
    return float(f["x"].iloc[0]), float(f["y"].iloc[0])


def _simulated(loc: Any, quick: bool) -> list[dict[str, Any]]:
    from livetrack.config import presets_dir
    from livetrack.training import load_training_config
    from livetrack.training.localiser import localiser_metrics, render_localiser_crops

    sim, cfg, _ = load_training_config(presets_dir() / "trapped_colloid.toml")
    n = 60 if quick else 500
    rows = []
    # background 17, 70 and 140 ADU of the 8-bit camera's 255; then the bright core
    # clipped below the camera's top (a saturated camera, as the real colloids show)
    for level, clipped in ((250.0, False), (1000.0, False), (2000.0, False), (2000.0, True)):
        holo = sim.holography.model_copy(update={"illumination_photons": level})
        s = sim.model_copy(update={"holography": holo})
        crops = render_localiser_crops(
            s, n, [5151, int(level), clipped], cfg.crop, 1, 3.0, vary=0.0,
            clip_share=1.0 if clipped else 0.0,
        )  # fmt: skip
        t0 = time.perf_counter()
        mean, sigma = loc.predict(crops.images)
        ms = (time.perf_counter() - t0) * 1e3 / n
        m = localiser_metrics(mean, sigma, crops.truth, crops.baseline)
        c = (cfg.crop - 1) / 2.0
        tp = np.array([_trackpy_centre(img[..., 0], 15) for img in crops.images]) - c
        tp_err = tp - crops.truth
        rows.append(
            {
                "data": "simulated",
                "illumination_photons": level,
                "core_clipped": clipped,
                "crops": n,
                "localiser_rmse_px": m["rmse_px"],
                "radial_symmetry_rmse_px": m["radial_symmetry_rmse_px"],
                "trackpy_rmse_px": float(np.sqrt(np.nanmean(np.sum(tp_err**2, axis=1)) / 2)),
                "trackpy_found": int(np.isfinite(tp[:, 0]).sum()),
                "within_1_sigma": (m["dx_px"]["within_1_sigma"] + m["dy_px"]["within_1_sigma"]) / 2,
                "localiser_ms_per_crop_batched": ms,
            }
        )
    return rows


def _real(model: Path, folder: Path) -> list[dict[str, Any]]:
    import pandas as pd
    import tifffile

    from livetrack.single.detector import SingleParticleDetector

    movie = tifffile.imread(folder / "brightfield.tif")
    ref = pd.read_csv(folder / "trackpy_brightfield_ring_tracks.csv")
    h = 32
    out: dict[str, Any] = {"data": "real brightfield colloids (vs trackpy ring)", "frames": 0}
    for name, det in (
        ("localiser", SingleParticleDetector(31, model)),
        ("radial_symmetry", SingleParticleDetector(31)),
    ):
        err, t = [], 0.0
        for _, g in ref.groupby("particle"):
            x0 = int(np.clip(round(g["x"].iloc[0]), h, movie.shape[2] - h))
            y0 = int(np.clip(round(g["y"].iloc[0]), h, movie.shape[1] - h))
            for fr, rx, ry in g[["frame", "x", "y"]].to_numpy():
                t0 = time.perf_counter()
                d = det.detect(movie[int(fr), y0 - h : y0 + h, x0 - h : x0 + h])
                t += time.perf_counter() - t0
                err.append((d.x[0] + x0 - h - rx, d.y[0] + y0 - h - ry))
        e = np.asarray(err)
        out["frames"] = len(e)
        out[f"{name}_offset_px"] = [round(float(v), 3) for v in e.mean(axis=0)]
        out[f"{name}_spread_px"] = float(np.sqrt(np.mean(e.std(axis=0) ** 2)))
        out[f"{name}_ms_per_frame"] = t * 1e3 / len(e)
    return [out]


def _trapped(model: Path, folder: Path) -> list[dict[str, Any]]:
    """DeepTrack 1.0's trapped bead at low and high noise (no ground truth).

    Both videos show the same trap, so the same position variance is right. The
    particle is ~3× the preset's: outside what the localiser was trained on.
    """
    import tifffile

    from livetrack.single.detector import SingleParticleDetector

    out: dict[str, Any] = {"data": "real trapped bead (DeepTrack 1.0), variance px²"}
    for name, det in (
        ("localiser", SingleParticleDetector(31, model)),
        ("radial_symmetry", SingleParticleDetector(31)),
    ):
        for noise in ("good", "bad"):
            movie = tifffile.imread(folder / f"trapped_particle_{noise}_gray.tif")
            xy = np.array([[d.x[0], d.y[0]] for d in map(det.detect, movie) if len(d)])
            out["frames"] = len(movie)
            out[f"{name}_{noise}_var_xy"] = [round(float(v), 3) for v in xy.var(axis=0)]
    return [out]


def bench_single(
    quick: bool, real_data: Path | None = None, model: str | Path | None = None
) -> list[dict[str, Any]]:
    """The shipped localiser vs radial symmetry and trackpy, simulated and real.

    ``real_data``: the folder of real movies (``shared/data/real``); None: simulated only.
    """
    from livetrack.artifact import localiser_model_dir
    from livetrack.single.localiser import CropLocaliser

    path = Path(model) if model is not None else localiser_model_dir()
    if not (path / "card.json").is_file():
        return [{"skipped": f"no localiser at {path} (livetrack train, see docs/training.md)"}]
    rows = _simulated(CropLocaliser(path), quick)
    if real_data is not None and (real_data / COLLOIDS / "brightfield.tif").is_file():
        rows += _real(path, real_data / COLLOIDS)
    if real_data is not None and (real_data / TRAPPED / "trapped_particle_good_gray.tif").is_file():
        rows += _trapped(path, real_data / TRAPPED)
    return rows
