"""An editable preset TOML for the movie: the nearest shipped preset, set to what was measured.

The optics keep the base preset's numerical aperture; the wavelength is set so the
simulator's Gaussian spot (σ = 0.21 λ / NA) has the measured width. The training
section fine-tunes from the shipped model: a few short epochs, the randomisation
narrowed around the measured values (width ±15 %, signal and background ×0.25–4, as
the gain may not be known), so the network learns this movie's look without
forgetting how to find a particle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import tomli_w

from livetrack.adapt.measure import Measured
from livetrack.config import read_toml, resolve_config_path

#: the shipped preset an adaptation starts from, per polarity (bright spots only so far)
BASE_PRESET = "fluorescent_beads"
#: fine-tuning's default length: about 2 minutes on 2 cores
EPOCHS = 16
STEPS_PER_EPOCH = 100
BOLTZMANN = 1.380649e-23


def _viscosity(measured: Measured, base: dict[str, Any], pixel_um: float, dt_s: float) -> float:
    """The viscosity that gives the measured step for the base particles (Stokes–Einstein)."""
    if measured.step_px is None or measured.step_px <= 0:
        return float(base["motion"]["viscosity_Pa_s"])
    d_m2_s = (measured.step_px * pixel_um * 1e-6) ** 2 / (2.0 * dt_s)
    radius = float(base["particles"]["radius_um"]["mean"]) * 1e-6
    kelvin = float(base["motion"]["temperature_K"])
    return BOLTZMANN * kelvin / (6.0 * math.pi * radius * d_m2_s)


def adapted_preset(
    measured: Measured,
    name: str,
    movie: str,
    pixel_size_um: float | None = None,
    frame_interval_s: float | None = None,
    epochs: int = EPOCHS,
    steps_per_epoch: int = STEPS_PER_EPOCH,
) -> dict[str, Any]:
    """The preset (as TOML data) whose simulator renders what ``measured`` describes."""
    base = read_toml(resolve_config_path(BASE_PRESET))
    optics, camera = dict(base["optics"]), dict(base["camera"])
    pixel_um = pixel_size_um or optics["camera_pixel_um"] / optics["magnification"]
    optics["camera_pixel_um"] = pixel_um * optics["magnification"]
    optics["wavelength_um"] = measured.sigma_px * pixel_um * optics["numerical_aperture"] / 0.21
    h, w = measured.shape
    dt_s = frame_interval_s or camera["frame_interval_ms"] / 1e3
    camera.update(
        width=w, height=h, gain_adu_per_e=measured.gain_adu_per_e,
        offset_adu=round(measured.offset_adu, 2), frame_interval_ms=dt_s * 1e3,
        exposure_ms=min(camera["exposure_ms"], dt_s * 1e3),
    )  # fmt: skip
    p10, p50, p90 = measured.photons
    bg = max(measured.background_photons, 0.5)
    particles = dict(base["particles"])
    particles.update(
        number=max(1, round(measured.per_frame)),
        photons={"mean": p50, "std": max((p90 - p10) / 2.56, 1.0), "min": 0.3 * p10,
                 "max": 4.0 * p90},
    )  # fmt: skip
    training = dict(base["training"])
    rand = dict(training["randomisation"])
    spread = min(max(2.0 * measured.sigma_spread, 0.08), 0.15)
    gx, gy = measured.gradient
    rand.update(
        sigma_scale=[1.0 - spread, 1.0 + spread],
        photons=[0.25 * p10, 4.0 * p90],
        background_photons=[0.25 * bg, 4.0 * bg],
        gradient=min(max(0.1, 1.5 * max(abs(gx), abs(gy))), 0.95),  # the simulator's < 1
        gain_adu_per_e=[0.5 * measured.gain_adu_per_e, 2.0 * measured.gain_adu_per_e],
        offset_adu=[max(0.0, measured.offset_adu - 100.0), measured.offset_adu + 100.0],
    )
    training.update(
        name=name, epochs=epochs, steps_per_epoch=steps_per_epoch, learning_rate=5e-4,
        patience=3, validation_crops=256, randomisation=rand, calibrate_on="preset",
    )  # fmt: skip
    return {
        "preset": {
            "name": name,
            "description": f"adapted by `livetrack adapt` to {Path(movie).name}",
            "modality": "fluorescence",
        },
        "optics": optics,
        "camera": camera,
        "illumination": {**base["illumination"], "background_photons": bg,
                         "gradient": [gx, gy]},
        "particles": particles,
        "motion": {**base["motion"], "viscosity_Pa_s": _viscosity(measured, base, pixel_um, dt_s)},
        "training": training,
    }  # fmt: skip


def write_preset(data: dict[str, Any], path: Path, measured: Measured, movie: str) -> Path:
    """Write the preset with a header saying where each number came from."""
    lines = [
        f"# Adapted by `livetrack adapt` to {movie} ({measured.frames} frames read).",
        f"# Measured: PSF σ {measured.sigma_px:.3f} px from {measured.spots} isolated spots;",
        f"# camera offset {measured.offset_adu:.1f} ADU, gain {measured.gain_adu_per_e:.3f} "
        f"ADU/e ({measured.camera_from});",
        f"# background {measured.background_photons:.1f} photons/px;",
        f"# spot signal {measured.photons[1]:.0f} photons (median); background noise "
        f"{measured.noise_adu:.2f} ADU; spot peak SNR {measured.peak_snr[1]:.1f} (median);",
        f"# {measured.per_frame:.1f} particles a frame.",
    ]
    return write_with_header(data, path, lines)


def write_with_header(data: dict[str, Any], path: Path, header: list[str]) -> Path:
    """The preset's TOML under comment lines saying where its numbers came from."""
    lines = [*header, "# Edit and retrain: livetrack train THIS_FILE -o MODEL_DIR", ""]
    path.write_text("\n".join(lines) + tomli_w.dumps(data))
    return path
