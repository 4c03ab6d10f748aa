"""Benchmark section ``single``: the single-particle localiser next to classical centring.

``livetrack process --single auto`` (the default single-particle mode: the crop
sized from the particle, radial symmetry, then the particle's own template) is
measured on the real trapped bead against a careful template-fit reference.

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
        ("radial_symmetry", SingleParticleDetector(31, template=False)),
        ("auto_template", SingleParticleDetector()),
    ):
        err, t = [], 0.0
        for _, g in ref.groupby("particle"):
            x0 = int(np.clip(round(g["x"].iloc[0]), h, movie.shape[2] - h))
            y0 = int(np.clip(round(g["y"].iloc[0]), h, movie.shape[1] - h))
            crops = movie[g["frame"].to_numpy(int), y0 - h : y0 + h, x0 - h : x0 + h]
            det.prepare(crops)  # each particle its own size and template
            for crop, rx, ry in zip(crops, g["x"], g["y"], strict=True):
                t0 = time.perf_counter()
                d = det.detect(crop)
                t += time.perf_counter() - t0
                err.append((d.x[0] + x0 - h - rx, d.y[0] + y0 - h - ry))
        e = np.asarray(err)
        out["frames"] = len(e)
        out[f"{name}_offset_px"] = [round(float(v), 3) for v in e.mean(axis=0)]
        out[f"{name}_spread_px"] = float(np.sqrt(np.mean(e.std(axis=0) ** 2)))
        out[f"{name}_ms_per_frame"] = t * 1e3 / len(e)
    return [out]


def _shift_fit(
    win: np.ndarray, coef: np.ndarray, grid: tuple[np.ndarray, np.ndarray],
    centre: np.ndarray, start: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """The position (x, y) at which the template (spline ``coef``) best fits ``win``."""
    from scipy import ndimage, optimize

    yy, xx = grid

    def residual(s: np.ndarray) -> np.ndarray:
        at = [yy - (s[1] - centre[1]), xx - (s[0] - centre[0])]
        t = ndimage.map_coordinates(coef, at, order=3, prefilter=False, mode="nearest")
        a = np.column_stack([t.ravel(), np.ones(t.size)])
        return np.asarray(a @ np.linalg.lstsq(a, win, rcond=None)[0] - win)

    return np.asarray(optimize.least_squares(residual, start, diff_step=1e-3).x)


def template_reference(movie: np.ndarray, half: int = 30, rounds: int = 3) -> np.ndarray:
    """A careful reference track: each frame fitted with the mean image of all frames.

    Cross-correlation done carefully (least squares over a sub-pixel shift, a scale
    and an offset, on the whole particle), the template rebuilt from the fitted
    positions ``rounds`` times; written apart from :mod:`livetrack.single.template`.
    """
    from scipy import ndimage

    from livetrack.single.detector import SingleParticleDetector

    frames = np.asarray(movie, np.float64)
    start = SingleParticleDetector(2 * half + 1, template=False)
    xy = np.array([(d.x[0], d.y[0]) for d in map(start.detect, frames)])
    for _ in range(rounds):
        c = xy.mean(axis=0)
        moved = [ndimage.shift(f, (c[1] - p[1], c[0] - p[0]), order=3, mode="nearest")
                 for f, p in zip(frames, xy, strict=True)]  # fmt: skip
        coef = ndimage.spline_filter(np.mean(moved, axis=0), order=3)
        cy, cx = round(c[1]), round(c[0])
        rows, cols = slice(cy - half, cy + half + 1), slice(cx - half, cx + half + 1)
        grid = tuple(g.astype(float) for g in np.mgrid[rows, cols])
        xy = np.array(
            [_shift_fit(f[rows, cols].ravel(), coef, grid, c, p)
             for f, p in zip(frames, xy, strict=True)]
        )  # fmt: skip
    return xy


def against_reference(ours: Any, movie: Path) -> dict[str, Any]:
    """One track of a trapped bead (a ``process`` table) beside :func:`template_reference`.

    Rows a frame, tracks, each axis's position variance over the reference's, and
    the correlation of the two tracks.
    """
    import tifffile

    ref = template_reference(tifffile.imread(movie))
    xy = ours.sort_values("frame")[["x", "y"]].to_numpy()
    ratio = xy.var(axis=0) / ref.var(axis=0)
    return {
        "per_frame": len(ours) / len(ref), "tracks": int(ours["particle"].nunique()),
        "variance_ratio_x": float(ratio[0]), "variance_ratio_y": float(ratio[1]),
        "correlation_x": float(np.corrcoef(xy[:, 0], ref[:, 0])[0, 1]),
        "correlation_y": float(np.corrcoef(xy[:, 1], ref[:, 1])[0, 1]),
    }  # fmt: skip


def _trapped(model: Path, folder: Path) -> list[dict[str, Any]]:
    """DeepTrack 1.0's trapped bead at low and high noise (no ground truth).

    Two recordings (their tracks do not correlate). The reference is
    :func:`template_reference`; each method's position variance is given beside it
    and as a ratio. The particle is ~3× the localiser preset's: it is refused.
    """
    import tifffile

    from livetrack.single.detector import SingleParticleDetector

    rows = []
    for noise in ("good", "bad"):
        movie = tifffile.imread(folder / f"trapped_particle_{noise}_gray.tif")
        ref = template_reference(movie).var(axis=0)
        out: dict[str, Any] = {
            "data": f"real trapped bead (DeepTrack 1.0), {noise} video, variance px²",
            "frames": len(movie),
            "reference_var_xy": [round(float(v), 3) for v in ref],
        }
        for name, det in (
            ("auto_template", SingleParticleDetector()),
            ("radial_symmetry_31", SingleParticleDetector(31, template=False)),
            ("radial_symmetry_full", SingleParticleDetector(81, template=False)),
            ("localiser", None),
        ):
            if det is None:
                try:
                    SingleParticleDetector(31, model).prepare(movie[:16])
                    out["localiser"] = "accepted"
                except ValueError as exc:
                    out["localiser"] = f"refused: {exc}"
                continue
            det.prepare(movie)
            xy = np.array([(d.x[0], d.y[0]) for d in map(det.detect, movie) if len(d)])
            var = xy.var(axis=0)
            out[f"{name}_var_xy"] = [round(float(v), 3) for v in var]
            out[f"{name}_over_reference"] = [round(float(v), 3) for v in var / ref]
            if name == "auto_template":
                out["auto_crop_px"] = det.crop
        rows.append(out)
    return rows


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
