"""Benchmark section ``camera``: detections whatever the camera's offset and gain.

A simulated movie (the shipped card's camera: 100 ADU offset, gain 1) is rewritten as
other cameras would have counted the same photo-electrons — constants added, gain
scaled, 8-bit — and each variant goes through ``livetrack process``'s code at its
defaults, which reads the camera from the movie. Reported per variant: the change in
the detection count and the RMS distance of matched detections against the original,
and the camera read, on a flat background and on one that spans several levels.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _movie(gradient: float, background: float, size: int, frames: int) -> Any:
    from livetrack.config import load_simulation_config
    from livetrack.simulation import simulate_movie

    beads = load_simulation_config("fluorescent_beads")
    ill = beads.illumination.model_copy(
        update={"gradient": [gradient, gradient / 2], "background_photons": background}
    )
    cam = beads.camera.model_copy(update={"width": size, "height": size})
    parts = beads.particles.model_copy(update={"number": size * size // 1100})
    cfg = beads.model_copy(update={"illumination": ill, "camera": cam, "particles": parts})
    return simulate_movie(cfg, frames, seed=3).frames.astype(np.int64) - 100


def _compare(ref: Any, t: Any) -> tuple[float, float]:
    from scipy.spatial import cKDTree

    d: list[float] = []
    for f, g in ref.groupby("frame"):
        h = t[t["frame"] == f]
        if len(h):
            dist, _ = cKDTree(h[["x", "y"]].to_numpy()).query(g[["x", "y"]].to_numpy())
            d += list(dist[dist < 1.0])
    rms = float(np.sqrt(np.mean(np.square(d)))) if d else float("nan")
    return 100.0 * (len(t) - len(ref)) / len(ref), rms


def bench_camera(quick: bool) -> list[dict[str, Any]]:
    """Count change and position RMS per camera variant, flat and graded backgrounds."""
    import tifffile

    from livetrack.offline.process import DetectorSpec, track_movie

    size, frames = (160, 16) if quick else (256, 32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:

        def run(arr: Any, dtype: str) -> Any:
            path = Path(tmp) / "m.tif"
            tifffile.imwrite(path, np.clip(arr, 0, np.iinfo(dtype).max).astype(dtype))
            return track_movie(path, DetectorSpec(split=False), chunk=8)[0]

        for scene, (gradient, background) in {
            "flat background, 10 e/px": (0.0, 10.0),
            "gradient background, 40 e/px ± 60 %": (0.6, 40.0),
        }.items():
            e = _movie(gradient, background, size, frames)
            ref = run(e + 100, "uint16")
            variants = {
                "+200 ADU": (e + 300, "uint16"), "+1000 ADU": (e + 1100, "uint16"),
                "gain x0.5": (np.rint(e * 0.5) + 100, "uint16"),
                "gain x2": (e * 2 + 100, "uint16"), "gain x4": (e * 4 + 100, "uint16"),
                "8-bit, offset 10": (e + 10, "uint8"), "8-bit, offset 110": (e + 110, "uint8"),
            }  # fmt: skip
            for name, (arr, dtype) in variants.items():
                t = run(arr, dtype)
                count, rms = _compare(ref, t)
                cam = t.attrs["camera"]
                rows.append(
                    {"scene": scene, "variant": name, "detections": len(ref),
                     "count_change_percent": count, "rms_px": rms,
                     "offset_adu": cam["offset_adu"], "offset_from": cam["offset_from"],
                     "gain_adu_per_e": cam["gain_adu_per_e"], "gain_from": cam["gain_from"]}
                )  # fmt: skip
    return rows
