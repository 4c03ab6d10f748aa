"""Benchmark section ``adapt`` (on request): ``livetrack adapt`` on optics outside every preset.

Movies from the independent simulator of ``offconfig`` (not ``livetrack.simulation``:
gain 2 ADU/e, offset 500 ADU, Poisson light, Gaussian read noise), with the PSF at
0.6× and 1.6× the shipped model's, a peak SNR of 2 and 3, 200 spots in 512², 8 frames;
and dark particles (1.6×, SNR 3), each taking light from a 1000 e background, on a
flat field and on one rising by 30 % across the frame (uneven illumination).
Each goes through ``adapt_movie`` exactly as ``livetrack adapt`` runs it, then
``track_movie`` (as ``process``) with the shipped model and with the adapted one;
trackpy gets the true σ and its minmass tuned on the truth. Localisation: the RMS x
error of matched isolated particles (no other within 6 σ) over the pixel-integrated
Gaussian's Cramér–Rao bound for that spot.

With ``--real-data``, the real ring movies too (brightfield: DeepTrack's beads, the
same inverted, trackpy's colloids), each through ``livetrack adapt`` (the simulator's
Lorenz–Mie optics fitted to its rings) and ``process``, against the expert-tuned
trackpy ``locate`` of ``bench --only lodestar``: features matched within 1 px both
ways, 12 px from the edge; DeepTrack's beads at many focal planes against
particles marked by eye (:mod:`livetrack.bench._focal`); and its trapped bead, the
adapted rings detector finding it for its own template (``process --single auto
--model``), against the careful template-fit reference of ``bench --only single``.
Always, the real fluorescence recordings shipped with the package
(:mod:`livetrack.bench._fluorescence`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from livetrack.adapt.measure import inverted
from livetrack.adapt.preset import EPOCHS, STEPS_PER_EPOCH
from livetrack.bench._fluorescence import fluorescence_rows
from livetrack.bench._focal import focal_planes_row
from livetrack.bench._offconfig import BACKGROUND_E, READ_E, off_config_movie
from livetrack.linking.scores import detection_scores

CELLS = ((0.6, 2.0, False, 0.0), (0.6, 3.0, False, 0.0), (1.6, 2.0, False, 0.0),
         (1.6, 3.0, False, 0.0), (1.6, 3.0, True, 0.0), (1.6, 3.0, True, 0.3))  # fmt: skip
#: the background of the dark cell (absorbing particles in transmitted light), electrons
DARK_BACKGROUND_E = 1000.0
#: the real ring movies, inside the folder given as ``bench --real-data``
RINGS = "deeptrack_videos/brownian_particles_gray.tif"
COLLOIDS = "brightfield_colloids/brightfield.tif"
TRAPS = tuple(f"deeptrack_videos/trapped_particle_{n}_gray.tif" for n in ("good", "bad"))
#: frames timed per model, each reflected out to 512² (the speed bench's frame size)
SPEED_FRAMES = 30


def _isolated_rmse_over_crlb(
    truth: pd.DataFrame, table: pd.DataFrame, sigma: float, snr: float,
    background_e: float = BACKGROUND_E, dark: bool = False,
) -> float:  # fmt: skip
    """RMS x error of isolated matched particles over their CRLB (same for every spot)."""
    from scipy.spatial import cKDTree

    from livetrack.simulation.crlb import crlb_pixelated

    errors = []
    for f, t in truth.groupby("frame"):
        xy = t[["x", "y"]].to_numpy()
        d, _ = cKDTree(xy).query(xy, k=2)
        alone = xy[d[:, 1] > 6 * sigma]
        det = table[table["frame"] == f][["x", "y"]].to_numpy()
        if len(det) == 0:
            continue
        dd, k = cKDTree(det).query(alone)
        ok = dd < 2.0
        errors.append(det[k[ok], 0] - alone[ok, 0])
    err = np.concatenate(errors) if errors else np.zeros(0)
    peak = snr * np.sqrt(background_e + READ_E**2)  # as off_config_movie makes the spots
    signed = (-1 if dark else 1) * peak * 2 * np.pi * sigma**2  # absorbed, or emitted
    bound = crlb_pixelated(signed, background_e, sigma, READ_E)
    return float(np.sqrt(np.mean(err**2)) / bound) if len(err) else float("nan")


def _ms_per_frame(adapted: Path, base: str, frames: NDArray[np.generic]) -> list[float]:
    """Median ms per 512² frame (detect: network and read-out) of three detectors.

    The adapted model, the same without its read-out's centring and cut, and the
    model it was adapted from: they take turns frame by frame, so the machine's load
    falls on all three.
    """
    from livetrack.artifact import model_dir
    from livetrack.detection.detector import Detector

    h, w = frames.shape[1:3]
    pad = ((0, max(0, 512 - h)), (0, max(0, 512 - w)))
    shown = [np.pad(f, pad, mode="reflect")[:512, :512] for f in frames[:SPEED_FRAMES]]
    detectors = [Detector(adapted), Detector(adapted), Detector(model_dir(base))]
    plain = detectors[1].card.outputs.model_copy(update={"refinement": "none"})
    detectors[1].card = detectors[1].card.model_copy(update={"outputs": plain})
    times: list[list[float]] = [[], [], []]
    for d in detectors:
        d.warm_up()
    for f in shown:
        for d, t in zip(detectors, times, strict=True):
            t0 = time.perf_counter()
            d.detect(f)
            t.append((time.perf_counter() - t0) * 1e3)
    return [float(np.median(t)) for t in times]


def _real_rings(movie: Path, tmp: Path, dark: bool = False) -> dict[str, Any]:
    """One real ring movie through ``adapt`` and ``process``, against the expert trackpy."""
    import tifffile

    from livetrack.adapt import adapt_movie
    from livetrack.artifact import read_card
    from livetrack.bench._lodestar import expert_trackpy, interior_matched, ring_movie
    from livetrack.offline.process import DetectorSpec, track_movie

    frames, source = ring_movie(movie, tmp, dark)
    t0 = time.perf_counter()
    result = adapt_movie(source, tmp / f"rings-{source.stem}", verbose=0)
    seconds = time.perf_counter() - t0
    ours, _, _ = track_movie(source, DetectorSpec(model=str(result.model)))
    ref = expert_trackpy(frames)
    base = read_card(result.model).metrics["adaptation"]["base_model"]
    adapted_ms, plain_ms, base_ms = _ms_per_frame(result.model, base, tifffile.imread(source))
    ours_in, theirs_in = interior_matched(ours, ref, frames.shape)
    m = result.measured
    return {
        "movie": movie.stem + (", inverted" if dark else ""), "adapt_seconds": seconds,
        "fit": f"{getattr(m, 'radius_um', 0):.2f} µm, n {getattr(m, 'refractive_index', 0):.3f}, "
        f"{getattr(m, 'z_um', 0):.1f} µm",
        "per_frame": len(ours) / len(frames), "reference_per_frame": len(ref) / len(frames),
        "ours_matched_interior": ours_in, "reference_matched_interior": theirs_in,
        "adapted_ms_per_512_frame": adapted_ms, "uncentred_ms_per_512_frame": plain_ms,
        "base_ms_per_512_frame": base_ms,
    }  # fmt: skip


def _real_trap(movie: Path, tmp: Path) -> dict[str, Any]:
    """A real trapped bead: ``adapt`` (its rings), then ``process --single auto --model``."""
    from livetrack.adapt import adapt_movie
    from livetrack.bench._single import against_reference
    from livetrack.offline.process import DetectorSpec, track_movie

    t0 = time.perf_counter()
    result = adapt_movie(movie, tmp / f"trap-{movie.stem}", verbose=0)
    seconds = time.perf_counter() - t0
    ours, _, _ = track_movie(movie, DetectorSpec(model=str(result.model), single_crop="auto"))
    return {"movie": f"{movie.stem} (--single auto)", "adapt_seconds": seconds,
            **against_reference(ours, movie)}  # fmt: skip


def bench_adapt(quick: bool, real_data: Path | None = None) -> list[dict[str, Any]]:
    """One row per movie: shipped model, adapted model, trackpy (see module docstring)."""
    import tifffile

    from livetrack.adapt import adapt_movie
    from livetrack.artifact import default_model_dir, read_card
    from livetrack.offline.process import DetectorSpec, track_movie
    from livetrack.training.baselines import (
        trackpy_detect_movie,
        trackpy_diameter,
        tune_trackpy_minmass,
    )

    card_sigma = read_card(default_model_dir()).expects.psf_sigma_px
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (scale, snr, dark, gradient) in enumerate(CELLS[:1] if quick else CELLS):
            bg = DARK_BACKGROUND_E if dark else BACKGROUND_E
            movie, truth, sigma = off_config_movie(
                scale, gradient, snr, 8, 100 + k, card_sigma, background_e=bg, dark=dark
            )
            path = Path(tmp) / f"m{k}.tif"
            tifffile.imwrite(path, movie, photometric="minisblack")
            t0 = time.perf_counter()
            epochs, steps = (1, 5) if quick else (EPOCHS, STEPS_PER_EPOCH)  # adapt's own
            result = adapt_movie(
                path, Path(tmp) / f"model{k}", epochs=epochs, steps_per_epoch=steps, verbose=0
            )
            seconds = time.perf_counter() - t0
            row: dict[str, Any] = {
                "psf_over_card": scale, "peak_snr": snr, "sigma_px": sigma,
                "particles": "dark" if dark else "bright", "gradient": gradient,
                "measured_sigma_px": getattr(result.measured, "sigma_px", float("nan")),
            }  # fmt: skip
            # the shipped model on dark particles: as told, with --invert (without, F1 0)
            specs = {
                "shipped": DetectorSpec(invert=dark),
                "adapted": DetectorSpec(model=str(result.model)),
            }
            for name, spec in specs.items():
                table, _, _ = track_movie(path, spec, linking_from_data=False)
                s = detection_scores(truth, table, gate=2.0)
                row[f"{name}_precision"], row[f"{name}_recall"] = s.precision, s.recall
                row[f"{name}_f1"] = s.f1
                row[f"{name}_rmse_over_crlb"] = _isolated_rmse_over_crlb(
                    truth, table, sigma, snr, bg, dark
                )
            d = trackpy_diameter(sigma)
            seen = movie.astype(np.float64)
            seen = inverted(seen) if dark else seen  # as the adapted model sees them
            mm = tune_trackpy_minmass(seen, truth, d)
            t = detection_scores(truth, trackpy_detect_movie(seen, d, mm), 2.0)
            row.update(trackpy_tuned_f1=t.f1, adapt_seconds=seconds)
            rows.append(row)
        if real_data is not None and not quick and (real_data / RINGS).is_file():
            for rel, dark in ((RINGS, False), (RINGS, True), (COLLOIDS, False)):
                rows.append(_real_rings(real_data / rel, Path(tmp), dark))
            rows += [_real_trap(real_data / t, Path(tmp)) for t in TRAPS]
            focal = focal_planes_row(real_data, Path(tmp))
            if focal is not None:
                rows.append(focal)
        if not quick:  # shipped with the package: no --real-data needed
            rows += fluorescence_rows(Path(tmp))
    return rows
