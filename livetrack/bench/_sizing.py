"""Benchmark section ``sizing``: the characterisation model next to a Lorenz–Mie fit.

Held-out hologram crops (a seed the training never used) over the preset's ranges:
radius (relative), refractive index and height errors, how often the stated σ
covers the error (68 % is honest), and time per particle. The reference is
pylorenzmie's Levenberg–Marquardt fit (``Feature.optimize``) started from our
network's estimate, the usual way to use both: it is timed on fewer crops, it is
slow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def _pylorenzmie_fit(
    img: np.ndarray, start: np.ndarray, px: float, optics: Any
) -> tuple[np.ndarray, float]:
    from pylorenzmie.analysis.Feature import Feature
    from pylorenzmie.analysis.Hologram import Hologram

    f = Feature(Hologram(img.astype(float) + 1.0))
    inst = f.model.instrument
    inst.wavelength = optics.wavelength_um
    inst.magnification = px
    inst.n_m = optics.medium_index
    inst.noise = 0.02
    f.model.coordinates = f.flat_coordinates
    p: Any = f.model.particle  # one sphere
    c = (img.shape[0] - 1) / 2
    p.x_p, p.y_p = c, c
    p.a_p, p.n_p, p.z_p = float(start[0]), float(start[1]), float(start[2]) / px
    f.optimizer.variables = ["x_p", "y_p", "z_p", "a_p", "n_p"]
    t0 = time.perf_counter()
    res = f.optimize()
    dt = time.perf_counter() - t0
    return np.array([res["a_p"], res["n_p"], res["z_p"] * px], float), dt


def _crlb(sim: Any, truth: np.ndarray, crop: int) -> dict[str, Any]:
    """Cramér–Rao bounds of radius, index and height for these spheres.

    At the preset's nominal illumination, from the crop size the network reads.
    """
    from livetrack.simulation.crlb import hologram_crlb

    cam = sim.camera
    bounds = np.array(
        [
            hologram_crlb(
                a,
                m,
                z,
                photons=sim.holography.illumination_photons,
                pixel_um=sim.pixel_size_um,
                n_medium=sim.optics.medium_index,
                wavelength_um=sim.optics.wavelength_um,
                quantum_efficiency=cam.quantum_efficiency,
                read_noise_e=cam.read_noise_e,
                gain_adu_per_e=cam.gain_adu_per_e,
                size=crop,
            )
            for a, m, z in truth
        ]
    )
    return {
        "spheres": len(truth),
        "radius_relative_median": float(np.median(bounds[:, 0] / truth[:, 0])),
        "index_median": float(np.median(bounds[:, 1])),
        "index_90th_percentile": float(np.percentile(bounds[:, 1], 90)),
        "z_um_median": float(np.median(bounds[:, 2])),
    }


def bench_sizing(quick: bool, model: str | Path | None = None) -> list[dict[str, Any]]:
    """Our characteriser vs a pylorenzmie fit on the same held-out crops."""
    from livetrack.artifact import characteriser_model_dir
    from livetrack.config import presets_dir
    from livetrack.inference.characterise import Characteriser, decode
    from livetrack.training import load_training_config
    from livetrack.training._characterise import held_out_metrics, render_crops

    path = Path(model) if model is not None else characteriser_model_dir()
    if not (path / "card.json").is_file():
        return [{"skipped": f"no characteriser at {path} (livetrack train, see docs/training.md)"}]
    ch = Characteriser(path)
    sim, cfg, _ = load_training_config(presets_dir() / "holography_spheres.toml")
    n = 100 if quick else 1000
    crop, ds = ch.crop, ch.downsample
    full = render_crops(sim, n, [987, 1], crop, 1, cfg.position_jitter_px)  # full resolution
    t0 = time.perf_counter()
    images = np.stack(
        [
            ch.crops(img[..., 0] + 1.0, np.array([(crop - 1) / 2]), np.array([(crop - 1) / 2]))[0][
                0
            ]
            for img in full.images
        ]
    )
    raw = np.asarray(ch.model.predict(images, batch_size=256, verbose=0), np.float64)
    ours_ms = (time.perf_counter() - t0) * 1e3 / n
    mean, sigma = decode(raw, ch.target_centre, ch.target_half_width)
    ours = held_out_metrics(mean, sigma, full.truth)
    row: dict[str, Any] = {
        "crops": n,
        "crop_px": crop,
        "downsample": ds,
        "ours_ms_per_particle": ours_ms,
        "ours": ours,
        "crlb": _crlb(sim, full.truth[: 10 if quick else 60], crop),
    }
    try:
        import pylorenzmie  # noqa: F401
    except ImportError:
        row["pylorenzmie"] = "not installed (pip install pylorenzmie)"
        return [row]
    k = 5 if quick else 40
    fits, times = [], []
    for i in range(k):
        got, dt = _pylorenzmie_fit(full.images[i, ..., 0], mean[i], sim.pixel_size_um, sim.optics)
        fits.append(got)
        times.append(dt)
    fit = np.array(fits)
    err = fit - full.truth[:k]
    row["pylorenzmie"] = {
        "crops": k,
        "ms_per_particle": float(np.median(times)) * 1e3,
        "radius_relative_rmse": float(np.sqrt(np.mean((err[:, 0] / full.truth[:k, 0]) ** 2))),
        "radius_relative_median": float(np.median(np.abs(err[:, 0] / full.truth[:k, 0]))),
        "index_rmse": float(np.sqrt(np.mean(err[:, 1] ** 2))),
        "index_median_abs": float(np.median(np.abs(err[:, 1]))),
        "z_rmse_um": float(np.sqrt(np.mean(err[:, 2] ** 2))),
    }
    return [row]
