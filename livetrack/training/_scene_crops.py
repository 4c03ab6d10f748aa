"""Detector training crops for brightfield and holography, rendered by the preset's scene.

Fluorescent spots are cheap enough to draw on the fly (:mod:`._data`); a Lorenz–Mie
particle costs milliseconds, so these crops are rendered once, in parallel
processes, and the network trains on the fixed set (as the characteriser does).
Every crop holds ``particles_per_crop`` (min, max) particles at least the preset's
``min_separation_px`` apart (colloids do not overlap), anywhere in the crop or up
to a third of a ring's width beyond its edge; radius, index and height are drawn
over the preset's ranges, the brightness over a factor of e^±1.4, and a share of
the crops is clipped at the top, as 8-bit cameras clip bright cores. Labels: the
same soft heat and offset targets as for spots, every particle inside the crop
labelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from livetrack.config import SimulationConfig
from livetrack.detection.normalise import robust_normalise
from livetrack.simulation import Scene
from livetrack.training._data import STRIDE, heatmap_targets
from livetrack.training.characteriser import parameter_ranges, seeded_map

#: the brightness varies by exp(±VARY); CLIP_SHARE of the crops saturate at the top
VARY = 1.4
CLIP_SHARE = 0.3
#: a labelled particle's SNR for the targets (every particle in these crops is seen)
_SEEN = 1e3


@dataclass(frozen=True, slots=True)
class SceneCrops:
    """Normalised crops (n, c, c, 1), targets (n, c/4, c/4, 4), per-crop truth."""

    images: NDArray[np.float32]
    targets: NDArray[np.float32]
    truths: list[dict[str, NDArray[np.float64]]]


def snap_varied(
    scene: Scene,
    cfg: SimulationConfig,
    rng: np.random.Generator,
    photons: NDArray[np.float64],
    vary: float,
    clip_share: float,
) -> NDArray[np.float64]:
    """Render ``scene`` with its brightness ×e^±``vary``; clip ``clip_share`` of frames.

    ``photons``: the particles' nominal brightness (fluorescence); the holography
    illumination of ``cfg`` scales with it. A clipped frame saturates at a random
    quantile (90–99.5 %) or the camera's full scale, as 8-bit cameras clip bright cores.
    """
    gain = math.exp(rng.uniform(-vary, vary))
    st = scene.system.state
    st.photons[:] = photons * gain
    st.on[:] = True
    holo = cfg.holography
    scene.config = cfg.model_copy(
        update={
            "holography": holo.model_copy(
                update={"illumination_photons": holo.illumination_photons * gain}
            )
        }
    )
    frame = scene.snap().frame.astype(np.float64)
    if rng.random() < clip_share:
        top = np.quantile(frame, rng.uniform(0.9, 0.995))
        np.minimum(frame, min(top, float(2**cfg.camera.bit_depth - 1)), out=frame)
    return frame


def render_scene_crops(
    sim: SimulationConfig,
    n: int,
    seed: Sequence[int] | int,
    crop: int,
    particles: tuple[int, int],
) -> SceneCrops:
    """``n`` crops of the preset's scene with ``particles`` (min, max) particles each."""
    if sim.preset.modality == "fluorescence":
        raise ValueError("fluorescent spots are drawn on the fly (livetrack.training._data)")
    rng = np.random.default_rng(seed)
    cam = sim.camera.model_copy(update={"width": crop, "height": crop})
    parts = sim.particles.model_copy(update={"number": max(1, particles[1])})
    cfg = sim.model_copy(update={"camera": cam, "particles": parts})
    ranges = parameter_ranges(sim)
    scene = Scene(cfg, rng)
    px = cfg.pixel_size_um
    photons = scene.system.state.photons.copy()
    sep = max(float(sim.particles.min_separation_px), 1.0)
    reach = sep / 2  # centres up to half a separation outside: their rings show at the edge
    images = np.empty((n, crop, crop, 1), np.float32)
    targets = np.empty((n, crop // STRIDE, crop // STRIDE, 4), np.float32)
    truths = []
    origin = scene.system.view_origin_um
    for i in range(n):
        st = scene.system.state
        k = int(rng.integers(particles[0], particles[1] + 1))
        xs: list[float] = []
        ys: list[float] = []
        for _ in range(100 * (k + 1)):  # rejection sampling; gives up on a crowded crop
            if len(xs) == k:
                break
            x, y = rng.uniform(-reach, crop - 1 + reach, 2)
            if all(math.hypot(x - a, y - b) >= sep for a, b in zip(xs, ys, strict=True)):
                xs.append(float(x))
                ys.append(float(y))
        # the system keeps a band of particles around the field: park the unused far away
        st.x_um[:] = origin[0] - 1e4
        st.y_um[:] = origin[1]
        for j, (x, y) in enumerate(zip(xs, ys, strict=True)):
            st.x_um[j] = origin[0] + x * px
            st.y_um[j] = origin[1] + y * px
        for name, arr in (
            ("radius_um", st.radius_um),
            ("refractive_index", st.refractive_index),
            ("z_um", st.z_um),
        ):
            arr[:] = rng.uniform(*ranges[name], len(arr))
        frame = snap_varied(scene, cfg, rng, photons, VARY, CLIP_SHARE)
        images[i, ..., 0] = robust_normalise(frame)
        x_arr, y_arr = np.asarray(xs), np.asarray(ys)
        inside = (x_arr >= -0.5) & (x_arr < crop - 0.5) & (y_arr >= -0.5) & (y_arr < crop - 0.5)
        targets[i] = heatmap_targets(
            x_arr, y_arr, np.full(len(xs), _SEEN), inside, crop // STRIDE, 1.0
        )
        truths.append(
            {"x": x_arr[inside], "y": y_arr[inside], "snr": np.full(int(inside.sum()), _SEEN)}
        )
    return SceneCrops(images, targets, truths)


def render_scene_crops_parallel(
    sim: SimulationConfig,
    n: int,
    seed: int,
    crop: int,
    particles: tuple[int, int],
    workers: int = 2,
) -> SceneCrops:
    """:func:`render_scene_crops` in ``workers`` processes, each on its own seeded stream."""
    if workers <= 1 or n < 64:
        return render_scene_crops(sim, n, [seed, 0], crop, particles)
    parts = seeded_map(render_scene_crops, sim, n, seed, workers, crop, particles)
    return SceneCrops(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.targets for p in parts]),
        [t for p in parts for t in p.truths],
    )
