"""Benchmark section ``simulation``: how fast the simulator renders frames."""

from __future__ import annotations

from typing import Any

import numpy as np

from livetrack.bench._timing import time_call
from livetrack.config import Camera, load_simulation_config
from livetrack.simulation import Scene, expose


def bench_simulation(quick: bool, seed: int = 0) -> list[dict[str, Any]]:
    """Time rendering per preset: noise-free image, camera noise, and a whole frame.

    One core (the benchmark process is single-threaded numpy here). For the
    scattering presets the cost per particle is reported too: holograms are
    rendered per particle on a patch.
    """
    rows: list[dict[str, Any]] = []
    repeat = 10 if quick else 50
    for name in ("fluorescent_beads", "brightfield_colloids", "holography_spheres"):
        cfg = load_simulation_config(name)
        if name == "fluorescent_beads":
            particles = cfg.particles.model_copy(update={"number": 100})
            cfg = cfg.model_copy(update={"particles": particles})
        scene = Scene(cfg, seed)
        image, truth = scene.expected()
        rng = np.random.default_rng(seed)
        n_rep = repeat if cfg.preset.modality == "fluorescence" else max(3, repeat // 10)
        t_render = time_call(scene.expected, n_rep)

        def noise(
            image: np.ndarray = image, cam: Camera = cfg.camera, rng: np.random.Generator = rng
        ) -> None:
            expose(image, cam, rng)

        t_noise = time_call(noise, n_rep)

        def whole(scene: Scene = scene) -> None:
            scene.advance()
            scene.snap()

        t_frame = time_call(whole, n_rep)
        n_rendered = len(truth)
        rows.append(
            {
                "preset": name,
                "frame": f"{cfg.camera.width}x{cfg.camera.height}",
                "particles": n_rendered,
                "render_ms": t_render["p50"],
                "camera_noise_ms": t_noise["p50"],
                "frame_ms": t_frame["p50"],
                "ms_per_particle": t_render["p50"] / max(n_rendered, 1),
            }
        )
    return rows
