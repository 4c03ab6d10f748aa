"""Benchmark section ``real``: multi-particle detection on a real movie next to trackpy.

The real brightfield colloids beside the project (five ~2 µm colloids, 50 frames,
no ground truth) through the shipped brightfield detector, trained on simulated
Lorenz–Mie scenes of the same optics (``config/brightfield_colloid_detector.toml``),
against trackpy's ``locate_brightfield_ring`` reference: how many reference
positions it finds within 3 px, its false detections, and per particle the
constant offset and frame-to-frame spread of its positions from the reference's.
The spread is the part of the disagreement that is noise in one or the other.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from livetrack.artifact import brightfield_model_dir
from livetrack.bench._single import COLLOIDS

#: a detection this close to a reference position is that particle
MATCH_PX = 3.0


def _agreement(movie: np.ndarray, ref: Any, detector: Any) -> dict[str, Any]:
    """Run ``detector`` on every frame; compare with the reference table."""
    found, seconds = [], []
    for k, frame in enumerate(movie):
        t0 = time.perf_counter()
        d = detector.detect(frame, index=k)
        seconds.append(time.perf_counter() - t0)
        found.append(np.column_stack([d.x, d.y]))
    offsets: dict[int, list[tuple[float, float]]] = {}
    matched = 0
    for k, pos in enumerate(found):
        g = ref[ref["frame"] == k]
        used: set[int] = set()
        for p, x, y in zip(g["particle"], g["x"], g["y"], strict=True):
            if len(pos) == 0:
                break
            dist = np.hypot(pos[:, 0] - x, pos[:, 1] - y)
            j = int(np.argmin(dist))
            if dist[j] < MATCH_PX and j not in used:
                used.add(j)
                matched += 1
                offsets.setdefault(int(p), []).append((pos[j, 0] - x, pos[j, 1] - y))
    n_found = sum(len(p) for p in found)
    per = {p: np.asarray(v) for p, v in offsets.items()}
    return {
        "frames": len(movie),
        "reference_positions": len(ref),
        "detections": n_found,
        "matched": matched,
        "matched_share": matched / max(len(ref), 1),
        "false_detections": n_found - matched,
        "offset_px": {p: np.round(v.mean(axis=0), 3).tolist() for p, v in per.items()},
        "spread_px": {p: np.round(v.std(axis=0), 3).tolist() for p, v in per.items()},
        "median_spread_px": float(np.median([v.std(axis=0) for v in per.values()]))
        if per
        else float("nan"),
        "ms_per_frame": float(np.median(seconds) * 1e3),
        "frame0": found[0].round(2).tolist(),
    }


def bench_real(
    quick: bool, real_data: Path | None = None, model: str | Path | None = None
) -> list[dict[str, Any]]:
    """The shipped brightfield detector on the real colloids, float32 and int8.

    ``real_data``: the folder of real movies (``shared/data/real``); None: skipped.
    """
    import pandas as pd
    import tifffile

    from livetrack.detection.detector import Detector

    path = Path(model) if model is not None else brightfield_model_dir()
    if not (path / "card.json").is_file():
        return [{"skipped": f"no brightfield detector at {path} (livetrack train, see docs)"}]
    if real_data is None or not (real_data / COLLOIDS / "brightfield.tif").is_file():
        where = "no --real-data folder" if real_data is None else f"none in {real_data}"
        return [{"skipped": f"the real movies: {where} (see shared/data/real)"}]
    movie = tifffile.imread(real_data / COLLOIDS / "brightfield.tif")
    ref = pd.read_csv(real_data / COLLOIDS / "trackpy_brightfield_ring_tracks.csv")
    if quick:
        movie, ref = movie[:10], ref[ref["frame"] < 10]
    rows = []
    for precision in ("float32", "int8"):
        det = Detector(path, precision=precision)
        det.warm_up()
        row = {"data": "real brightfield colloids vs trackpy ring", "precision": precision}
        rows.append(row | _agreement(movie, ref, det))
    rows[0]["reference_frame0"] = ref[ref["frame"] == 0][["x", "y"]].round(2).values.tolist()
    rows[0]["movie"] = str(real_data / COLLOIDS / "brightfield.tif")
    return rows


def plot_real(rows: list[dict[str, Any]], out: Path) -> bool:
    """Frame 0 with our detections and trackpy's reference, and each particle's offsets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tifffile

    row = next((r for r in rows if "frame0" in r and "reference_frame0" in r), None)
    if row is None or not Path(row.get("movie", "")).is_file():
        return False
    frame = tifffile.imread(row["movie"], key=0)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.6), dpi=110)
    a.imshow(frame, cmap="gray")
    ref = np.asarray(row["reference_frame0"])
    ours = np.asarray(row["frame0"]).reshape(-1, 2)
    a.scatter(ref[:, 0], ref[:, 1], s=160, facecolors="none", edgecolors="tab:orange",
              label="trackpy locate_brightfield_ring")  # fmt: skip
    a.scatter(ours[:, 0], ours[:, 1], s=40, marker="+", color="tab:cyan",
              label=f"livetrack ({row['precision']})")  # fmt: skip
    a.set_title("real brightfield colloids, frame 0")
    a.legend(fontsize=7, loc="lower left")
    for p, (dx, dy) in row["offset_px"].items():
        sx, sy = row["spread_px"][p]
        b.errorbar([dx], [dy], xerr=[sx], yerr=[sy], fmt="o", capsize=3, label=f"particle {p}")
    b.axhline(0, color="0.7", lw=0.8)
    b.axvline(0, color="0.7", lw=0.8)
    b.set_xlabel("x offset from trackpy (px), mean ± frame-to-frame std")
    b.set_ylabel("y offset (px)")
    b.set_title(f"{row['matched']} of {row['reference_positions']} matched, "
                f"{row['false_detections']} false")  # fmt: skip
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return True
