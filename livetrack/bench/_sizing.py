"""Benchmark section ``sizing``: the characterisation model, our fit, pylorenzmie's.

Held-out hologram crops (a seed the training never used) over the preset's ranges:
radius (relative), refractive index and height errors, how often the stated σ
covers the error (68 % is honest), and time per particle, for

- the network alone;
- the network then our Lorenz–Mie fit (``Characteriser.characterise(fit=True)``,
  :mod:`livetrack.holography.hologram_fit`), beside the Cramér–Rao bound;
- pylorenzmie's Levenberg–Marquardt fit (``Feature.optimize``) started from our
  network's estimate, the usual way to use that library.

The fits run in two processes; their time per particle is one process's.
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


def _fit_one(job: tuple[Any, ...]) -> tuple[list[float], float]:
    """One sphere's fit (module level: it runs in a worker process)."""
    from livetrack.holography.hologram_fit import fit_sphere

    frame, start, sigma, optics, camera, search_range = job
    t0 = time.perf_counter()
    f = fit_sphere(frame, start, sigma, optics, camera, search_range=search_range)
    row = [f.radius_um, f.refractive_index, f.z_um, *f.sigma, f.reduced_chi2, float(f.widened)]
    return row, time.perf_counter() - t0


def _our_fit(
    ch: Any, frames: np.ndarray, mean: np.ndarray, sigma: np.ndarray, truth: np.ndarray
) -> dict[str, Any]:
    """Our fit from the network's estimates, in two processes; metrics as the network's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from livetrack.holography.characterise import guess_saturation
    from livetrack.training.characteriser import held_out_metrics

    optics, camera, span = ch.fit_settings(guess_saturation(frames))
    jobs = [(f, m, s, optics, camera, span) for f, m, s in zip(frames, mean, sigma, strict=True)]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(_fit_one, jobs))
    got = np.array([row for row, _ in done])
    seconds = np.array([dt for _, dt in done])
    out = held_out_metrics(got[:, :3], got[:, 3:6], truth[:, :3])
    small = truth[:, 0] < 0.5
    err = got[:, 1] - truth[:, 1]
    within_2 = np.mean(np.abs(got[:, :3] - truth[:, :3]) <= 2 * got[:, 3:6], axis=0)

    def rms(e: np.ndarray) -> float | None:
        return float(np.sqrt(np.mean(e**2))) if len(e) else None

    out.update(
        seconds_per_particle_median=float(np.median(seconds)),
        seconds_per_particle_max=float(np.max(seconds)),
        within_2_sigma=[float(v) for v in within_2],  # 95 % is honest
        reduced_chi2_median=float(np.median(got[:, 6])),
        reduced_chi2_max=float(np.max(got[:, 6])),
        poor_fits_above_1_1=int(np.sum(got[:, 6] > 1.1)),
        widened=int(got[:, 7].sum()),
        # spheres below 0.5 µm say little about their index: the bound is there
        index_rmse_radius_below_0_5_um=rms(err[small]),
        index_rmse_radius_from_0_5_um=rms(err[~small]),
    )
    return out


def bench_sizing(quick: bool, model: str | Path | None = None) -> list[dict[str, Any]]:
    """Our characteriser vs a pylorenzmie fit on the same held-out crops."""
    from livetrack.artifact import characteriser_model_dir
    from livetrack.config import presets_dir
    from livetrack.detection.normalise import normalise_hologram
    from livetrack.holography.characterise import Characteriser, decode
    from livetrack.training import load_training_config
    from livetrack.training.characteriser import held_out_metrics, render_raw_crops

    path = Path(model) if model is not None else characteriser_model_dir()
    if not (path / "card.json").is_file():
        return [{"skipped": f"no characteriser at {path} (livetrack train, see docs/training.md)"}]
    ch = Characteriser(path)
    sim, cfg, _ = load_training_config(presets_dir() / "holography_spheres.toml")
    n = 100 if quick else 1000
    crop, ds = ch.crop, ch.downsample
    c = np.array([(crop - 1) / 2])
    frames, truth = render_raw_crops(sim, n, [987, 1], crop, cfg.position_jitter_px)
    t0 = time.perf_counter()
    images = np.concatenate([ch.crops(frame, c, c)[0] for frame in frames])
    raw = np.asarray(ch.model.predict(images, batch_size=256, verbose=0), np.float64)
    ours_ms = (time.perf_counter() - t0) * 1e3 / n
    mean, sigma = decode(raw, ch.target_centre, ch.target_half_width, ch.sigma_scale)
    ours = held_out_metrics(mean, sigma, truth[:, :3])
    k_fit = 20 if quick else n
    row: dict[str, Any] = {
        "crops": n,
        "crop_px": crop,
        "downsample": ds,
        "ours_ms_per_particle": ours_ms,
        "ours": ours,
        "ours_then_fit": _our_fit(ch, frames[:k_fit], mean[:k_fit], sigma[:k_fit], truth[:k_fit]),
        "crlb": _crlb(sim, truth[: 10 if quick else 60, :3], crop),
    }
    try:
        import pylorenzmie  # noqa: F401
    except ImportError:
        row["pylorenzmie"] = "not installed (pip install pylorenzmie)"
        return [row]
    k = 5 if quick else 40
    fits, times = [], []
    for i in range(k):
        hologram = normalise_hologram(frames[i], 1, sim.camera.offset_adu)  # I / I₀ − 1
        got, dt = _pylorenzmie_fit(hologram, mean[i], sim.pixel_size_um, sim.optics)
        fits.append(got)
        times.append(dt)
    fit = np.array(fits)
    err = fit - truth[:k, :3]
    row["pylorenzmie"] = {
        "crops": k,
        "ms_per_particle": float(np.median(times)) * 1e3,
        "radius_relative_rmse": float(np.sqrt(np.mean((err[:, 0] / truth[:k, 0]) ** 2))),
        "radius_relative_median": float(np.median(np.abs(err[:, 0] / truth[:k, 0]))),
        "index_rmse": float(np.sqrt(np.mean(err[:, 1] ** 2))),
        "index_median_abs": float(np.median(np.abs(err[:, 1]))),
        "z_rmse_um": float(np.sqrt(np.mean(err[:, 2] ** 2))),
    }
    return [row]
