"""The single-particle localiser (DeepTrack 1.0 style): one particle's centre in a crop.

A small CNN reads a crop around one particle (a bead in an optical trap, a crop
around a detection) and predicts the particle's offset from the crop's centre in
x and y, each with a log-variance (Gaussian negative log-likelihood, so the
stated σ means something). Training crops are rendered by the preset's own
simulator (fluorescence, brightfield or holography), one particle placed within
``position_jitter_px`` of the centre, its radius, index, height and brightness
drawn over the preset's ranges; a share of the crops is clipped at the top, as
8-bit cameras saturate on bright cores. The input is :func:`robust_normalise`, the
detector's normalisation, so the camera's offset and gain do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.config import SimulationConfig
from livetrack.detection.normalise import robust_normalise
from livetrack.simulation import Scene
from livetrack.single.detector import radial_symmetry_centre
from livetrack.single.size import particle_extent
from livetrack.training._scene_crops import snap_varied
from livetrack.training.characteriser import HoloCrops, parameter_ranges, per_quantity

PARAMETERS = ("dx_px", "dy_px")


def _crop_config(sim: SimulationConfig, crop: int) -> SimulationConfig:
    cam = sim.camera.model_copy(update={"width": crop, "height": crop})
    parts = sim.particles.model_copy(update={"number": 1})
    return sim.model_copy(update={"camera": cam, "particles": parts})


def render_localiser_crops(
    sim: SimulationConfig,
    n: int,
    seed: Sequence[int] | int,
    crop: int,
    downsample: int,
    jitter_px: float,
    vary: float = 1.4,
    clip_share: float = 0.3,
) -> HoloCrops:
    """``n`` noisy one-particle crops; truth: the offset (x, y) from the crop's centre.

    The brightness varies by ``exp(±vary)``; ``clip_share`` of the crops are clipped
    at the top. ``baseline``: radial symmetry (Parthasarathy 2012) on the same raw crops.
    """
    if downsample != 1:
        raise ValueError("the localiser reads full-resolution crops (downsample = 1)")
    rng = np.random.default_rng(seed)
    cfg = _crop_config(sim, crop)
    ranges = parameter_ranges(sim) if sim.preset.modality != "fluorescence" else {}
    scene = Scene(cfg, rng)
    c = (crop - 1) / 2.0
    px = cfg.pixel_size_um
    photons = scene.system.state.photons.copy()
    images = np.empty((n, crop, crop, 1), np.float32)
    truth = np.empty((n, 2))
    baseline = np.empty((n, 2))
    for i in range(n):
        st = scene.system.state
        dx, dy = rng.uniform(-jitter_px, jitter_px, 2)
        # the system keeps a band of particles around the field: only the first stays
        st.x_um[:] = scene.system.view_origin_um[0] - 1e4
        st.x_um[0] = scene.system.view_origin_um[0] + (c + dx) * px
        st.y_um[:] = scene.system.view_origin_um[1] + (c + dy) * px
        for name, arr in (
            ("radius_um", st.radius_um),
            ("refractive_index", st.refractive_index),
            ("z_um", st.z_um),
        ):
            if name in ranges:
                arr[:] = rng.uniform(*ranges[name])
        # domain randomisation: brightness (hence the noise) over a factor of 16
        frame = snap_varied(scene, cfg, rng, photons, vary, clip_share)
        images[i, ..., 0] = robust_normalise(frame)
        truth[i] = (dx, dy)
        bx, by = radial_symmetry_centre(frame)
        baseline[i] = (bx - c, by - c)
    return HoloCrops(images, truth, baseline)


def particle_radius_range(images: NDArray[np.float32]) -> tuple[float, float]:
    """The 2nd–98th percentile of the crops' visible particle radius (px), normalised crops.

    What a localiser was trained on: a movie's particle far outside it is refused
    (:meth:`livetrack.single.localiser.CropLocaliser.check_size`).
    """
    radii = [particle_extent(im)[2] for im in images[:400]]
    lo, hi = np.percentile(radii, [2, 98])
    return float(lo), float(hi)


def localiser_ranges(jitter_px: float) -> dict[str, tuple[float, float]]:
    """Target ranges: the offsets span ±jitter."""
    return {k: (-jitter_px, jitter_px) for k in PARAMETERS}


def localiser_metrics(
    mean: NDArray[np.float64],
    sigma: NDArray[np.float64],
    truth: NDArray[np.float64],
    baseline: NDArray[np.float64] | None = None,
) -> dict[str, Any]:
    """RMSE per axis (px), calibration of the stated σ, and radial symmetry beside it."""
    err = mean - truth
    out = per_quantity(err, sigma, PARAMETERS)
    out["rmse_px"] = float(np.sqrt(np.mean(np.sum(err**2, axis=1)) / 2))
    if baseline is not None:
        b = baseline - truth
        out["radial_symmetry_rmse_px"] = float(np.sqrt(np.mean(np.sum(b**2, axis=1)) / 2))
    return out
