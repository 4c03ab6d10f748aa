"""``adapt`` for rings: the simulator's Lorenz–Mie optics fitted to the movie's particles.

Brightfield and holographic particles are interference patterns, not spots. The
isolated particles of the first frames, each centred by radial symmetry and shifted
onto a common centre, average into one mean particle, nearly free of noise. The
simulator's own model of such a particle (a sphere's Lorenz–Mie hologram,
:func:`livetrack.holography.hologram_fit.fit_sphere`) is fitted to it: radius,
refractive index and height above the focal plane (the defocus), the brightness
profiled out. The brightfield preset set to those values, the movie's size, level and
particle count, is what the shipped brightfield detector is fine-tuned on.

Without a pixel size in the file, the base preset's (0.152 µm) is assumed: the fitted
radius and height are then in its units, which is all the simulator needs to render
particles that look like the movie's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from livetrack.adapt.measure import AdaptError
from livetrack.adapt.preset import write_with_header
from livetrack.config import read_toml, resolve_config_path

#: the shipped preset and model a ring movie's adaptation starts from
BASE_PRESET = "brightfield_colloid_detector"
BASE_MODEL = "brightfield-colloid-detector"
#: the card's ``min_symmetry_f`` (detection/symmetry.radial_f): white noise stays below
#: ~3, the false rings found in a compressed video's texture had a median of 14 (90 %
#: below 29), real beads and colloids were all above 180 (three real movies)
RINGS_MIN_F = 20.0
#: mean particles averaged from fewer crops than this are too noisy to fit
MIN_CROPS = 8
#: a tenth of the crops correlating less than this with their mean: the particles
#: differ (other focal planes, sizes), and a model of the mean one will miss the rest
#: (one kind of bead, three real movies: ≥ 0.985; beads at many focal planes: 0.85)
MIN_AGREEMENT = 0.95
#: particles that differ are trained for over this spread around the fitted sphere:
#: radius × (low, high), index − medium's (low, high) (both sides: bright and dark
#: cores, as above and below focus) and height × (low, high). DeepTrack's beads at many
#: focal planes, 32 marked by hand in 3 frames (``bench --only adapt``): 9 found with
#: the mean particle's ±5 % / ±0.012 / ±25 %, 29–30 with this spread
SPREAD_RADIUS = (0.5, 1.5)
SPREAD_INDEX = (-0.08, 0.12)
SPREAD_Z = (0.3, 3.0)
#: ``min_symmetry_f`` then: a ring far from focus is blurred and less symmetric. The
#: same 32, two trainings, cut at F ≥ 20 / 10 / 5: 27–28 / 29–30 / 30 found, with 1–4 /
#: 1–11 / 2–20 detections where nothing was marked (most move as the beads do: faint
#: particles farther from focus, or a ring's edge found twice)
SPREAD_MIN_F = 10.0
#: the fit's start (radius µm, index, height µm), its σ, and where a sphere may lie
START = ((1.0, 1.45, 10.0), (0.5, 0.1, 5.0))
SEARCH = ((0.2, 1.34, 0.5), (4.0, 2.0, 60.0))


@dataclass(frozen=True)
class RingsMeasured:
    """What the movie's rings told the simulator."""

    frames: int
    shape: tuple[int, int]
    crops: int  # isolated particles averaged into the mean particle
    half_px: int  # the mean particle's half side
    pixel_um: float
    pixel_from: str  # "file" or "assumed (the base preset's)"
    radius_um: float
    refractive_index: float
    z_um: float
    reduced_chi2: float
    residual: float  # RMS of mean − fit over the particle's range
    background_adu: float
    per_frame: float
    polarity: str = "interference"
    #: the 10th percentile of the crops' correlation with their mean
    agreement: float = 1.0

    @property
    def spread(self) -> bool:
        """The particles differ: train over a spread of sizes, indices and heights."""
        return self.agreement < MIN_AGREEMENT

    def caution(self) -> str | None:
        """What the user should know before trusting the model, if anything."""
        if not self.spread:
            return None
        return (
            f"the {self.crops} isolated particles differ: a tenth of them correlate less than "
            f"{self.agreement:.2f} with their mean (one kind of particle at one height: ≥ "
            f"{MIN_AGREEMENT}). The model is trained over a spread of sizes and heights around "
            "the mean particle (other focal planes, bright and dark cores): check fit.png and "
            "the results, or try --self-supervised"
        )

    def as_record(self) -> dict[str, Any]:
        """JSON-ready, for the card."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def mean_particle(
    stack: NDArray[Any], radius: float, full_scale: float = np.inf
) -> tuple[NDArray[np.float64], int, float, float]:
    """The isolated particles' mean image (each centred), how many, and how alike.

    Returns the mean, the number of crops, particles a frame, and the 10th percentile
    of the crops' correlation with their mean. A pixel saturated (at ``full_scale``) in
    most crops stays at ``full_scale``: the fit then takes it as "at least", where a
    mean of clipped values would flatten the core.
    """
    from livetrack.adapt.self_supervised import particle_peaks
    from livetrack.detection.lodestar import lodestar_normalise
    from livetrack.single.detector import radial_symmetry_centre

    half = max(8, math.ceil(radius))
    crops, clipped, count = [], [], 0
    for frame in np.asarray(stack, np.float64):
        pts = particle_peaks(lodestar_normalise(frame), radius)
        count += len(pts)
        if len(pts) > 1:
            d, _ = cKDTree(pts).query(pts, k=2)
            pts = pts[d[:, 1] > 2.5 * half]
        h, w = frame.shape
        for x, y in pts:
            if not (half + 4 <= x < w - half - 4 and half + 4 <= y < h - half - 4):
                continue
            win = frame[y - half - 3 : y + half + 4, x - half - 3 : x + half + 4]
            cx, cy = radial_symmetry_centre(win)
            dx, dy = cx - (half + 3), cy - (half + 3)
            if abs(dx) > 3 or abs(dy) > 3:
                continue
            moved = ndimage.shift(win, (-dy, -dx), order=3, mode="nearest")
            crops.append(moved[3:-3, 3:-3])
            clipped.append(win[3:-3, 3:-3] >= full_scale)
    if len(crops) < MIN_CROPS:
        raise AdaptError(
            f"found {len(crops)} isolated rings in {len(stack)} frames ({count / len(stack):.1f} "
            f"particles a frame, ~{2 * radius:.0f} px across); adapt needs {MIN_CROPS} to fit "
            "their optics: try --self-supervised"
        )
    mean: NDArray[np.float64] = np.mean(crops, axis=0)
    flat = np.reshape(crops, (len(crops), -1))
    flat = flat - flat.mean(axis=1, keepdims=True)
    m = mean.ravel() - mean.mean()
    r = flat @ m / np.maximum(np.linalg.norm(flat, axis=1) * np.linalg.norm(m), 1e-300)
    mean[np.mean(clipped, axis=0) > 0.5] = full_scale
    return mean, len(crops), count / len(stack), float(np.quantile(r, 0.1))


def measure_rings(stack: NDArray[Any], pixel_size_um: float | None) -> tuple[RingsMeasured, Any]:
    """Fit the simulator's sphere to the movie's mean particle; (measured, fitted image)."""
    from livetrack.holography.hologram_fit import HologramCamera, HologramOptics, fit_sphere
    from livetrack.simulation.lorenzmie import sphere_hologram
    from livetrack.single.size import particle_extent

    base = read_toml(resolve_config_path(BASE_PRESET))
    optics = base["optics"]
    pixel = pixel_size_um or optics["camera_pixel_um"] / optics["magnification"]
    frames = np.asarray(stack, np.float64)
    _, _, radius = particle_extent(frames[0])
    full = float(np.iinfo(stack.dtype).max) if stack.dtype.kind == "u" else np.inf
    mean, crops, per_frame, agreement = mean_particle(frames, radius, full)
    level = float(np.median(frames))
    # the mean's noise: the frames' (frame to frame, over the background) over √crops
    noise = float(np.median(np.abs(np.diff(frames, axis=0)))) * 1.4826 / math.sqrt(2.0)
    noise = max(noise, 0.3) / math.sqrt(crops)
    camera = HologramCamera(0.0, max(noise**2 / max(level, 1.0), 1e-6), 0.0, full)
    wl, n_m = float(optics["wavelength_um"]), float(optics["medium_index"])
    fit = fit_sphere(mean, *START, HologramOptics(pixel, wl, n_m), camera,
                     search_range=SEARCH)  # fmt: skip
    grid: NDArray[np.float64] = np.indices(mean.shape).astype(np.float64)
    model = sphere_hologram(grid[1] - fit.x, grid[0] - fit.y, fit.z_um / pixel, fit.radius_um,
                            fit.refractive_index, pixel_um=pixel, n_medium=n_m,
                            wavelength_um=wl)  # fmt: skip
    model *= float(np.sum(model * mean) / np.sum(model * model))
    span = float(np.ptp(mean)) or 1.0
    measured = RingsMeasured(
        frames=len(frames), shape=(int(frames.shape[1]), int(frames.shape[2])), crops=crops,
        half_px=mean.shape[0] // 2, pixel_um=pixel,
        pixel_from="file" if pixel_size_um else "assumed (the base preset's)",
        radius_um=fit.radius_um, refractive_index=fit.refractive_index, z_um=fit.z_um,
        reduced_chi2=float(fit.reduced_chi2), residual=float(np.std(mean - model)) / span,
        background_adu=level, per_frame=per_frame, agreement=agreement,
    )  # fmt: skip
    return measured, (mean, model)


def rings_preset(
    measured: RingsMeasured, name: str, movie: str, epochs: int, steps_per_epoch: int
) -> dict[str, Any]:
    """The brightfield preset (as TOML data) whose simulator renders the movie's rings."""
    base = read_toml(resolve_config_path(BASE_PRESET))
    optics, camera = dict(base["optics"]), dict(base["camera"])
    optics["camera_pixel_um"] = measured.pixel_um * optics["magnification"]
    h, w = measured.shape
    camera.update(width=w, height=h)
    a, n, z = measured.radius_um, measured.refractive_index, measured.z_um
    particles = dict(base["particles"])
    particles.update(
        number=max(1, round(measured.per_frame)),
        radius_um={"mean": a, "std": 0.05 * a, "min": 0.85 * a, "max": 1.15 * a},
        refractive_index={"mean": n, "std": 0.005, "min": n - 0.012, "max": n + 0.012},
        z_um={"min": 0.75 * z, "max": 1.25 * z},
        min_separation_px=float(2 * measured.half_px) * 0.75,
    )  # fmt: skip
    if measured.spread:
        particles.update(_spread(a, z, float(optics["medium_index"])))
    # the focal plane outside every sphere (the simulator's brightfield rule), even where
    # the fit put it near or inside the mean particle
    z_min = max(particles["z_um"]["min"], 1.1 * particles["radius_um"]["max"])
    particles["z_um"] = {"min": z_min, "max": max(particles["z_um"]["max"], z_min)}
    holography = dict(base["holography"])
    photons = measured.background_adu / (camera["quantum_efficiency"] * camera["gain_adu_per_e"])
    holography.update(illumination_photons=photons,
                      patch_half_width_px=max(holography["patch_half_width_px"],
                                              measured.half_px * 2))  # fmt: skip
    training = dict(base["training"])
    training.update(
        name=name, epochs=epochs, steps_per_epoch=steps_per_epoch,
        train_samples=steps_per_epoch * int(training["batch_size"]), learning_rate=5e-4,
        patience=3, validation_crops=256,
    )  # fmt: skip
    return {
        **base,
        "preset": {"name": name, "description": f"adapted by `livetrack adapt` to "
                   f"{Path(movie).name}", "modality": base["preset"]["modality"]},
        "optics": optics, "camera": camera, "particles": particles,
        "holography": holography, "training": training,
    }  # fmt: skip


def _spread(radius: float, z: float, medium: float) -> dict[str, Any]:
    """The particle distributions over :data:`SPREAD_RADIUS`, ``_INDEX`` and ``_Z``."""
    r0, r1 = radius * SPREAD_RADIUS[0], radius * SPREAD_RADIUS[1]
    n0, n1 = medium + SPREAD_INDEX[0], medium + SPREAD_INDEX[1]
    return {
        "radius_um": {"mean": radius, "std": r1 - r0, "min": r0, "max": r1},
        "refractive_index": {"mean": (n0 + n1) / 2, "std": n1 - n0, "min": n0, "max": n1},
        "z_um": {"min": z * SPREAD_Z[0], "max": max(z * SPREAD_Z[1], 2.0 * r1)},
    }


def write_rings_preset(data: dict[str, Any], path: Path, m: RingsMeasured, movie: str) -> Path:
    """Write the preset with a header saying where each number came from."""
    lines = [
        f"# Adapted by `livetrack adapt` to {movie} ({m.frames} frames read).",
        f"# The mean of {m.crops} isolated particles fitted with the simulator's Lorenz–Mie",
        f"# sphere: radius {m.radius_um:.3f} µm, index {m.refractive_index:.4f}, "
        f"{m.z_um:.2f} µm from focus",
        f"# (pixel {m.pixel_um:.4f} µm, {m.pixel_from}); residual {100 * m.residual:.1f} % of "
        f"the particle's range; background {m.background_adu:.1f} ADU; {m.per_frame:.1f} a frame.",
    ]
    if m.spread:
        lines.append(
            f"# The particles differ (a tenth correlate < {m.agreement:.2f} with their mean): "
            "trained over a spread of radii, indices and heights around that sphere."
        )
    return write_with_header(data, path, lines)
