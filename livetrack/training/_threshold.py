"""The detector's score threshold, and its figures on held-out crops.

The threshold is the one with the best F1 on held-out full frames (or, for scene
modalities, crops); the card records it and the read-out uses it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from livetrack.config import SimulationConfig


def calibrate_threshold(
    model: Any, sim: SimulationConfig, seed: int, own: bool = False
) -> dict[str, Any]:
    """The score threshold with the best mean F1 on held-out *full frames*.

    Crops are far denser than real frames, so a threshold tuned there trades
    precision for recall. Here: 256² frames at 100 and 300 particles per 512²,
    SNR 2, 4 and 7 (preset optics), two frames each, fixed seeds; with ``own``, four
    frames of the preset as it is (an adapted preset's are the movie's SNR, density
    and illumination: at SNR 3 on a ramping field the standard frames' 0.75 found
    recall 0.92 where 0.6 found 0.97 at about the same precision).
    """
    import pandas as pd

    from livetrack.detection.normalise import robust_normalise
    from livetrack.detection.readout import read_peaks
    from livetrack.linking.scores import detection_scores
    from livetrack.simulation.scenarios import Scenario
    from livetrack.simulation.scene import simulate_movie

    renders = []
    if own:  # the network takes sides of a multiple of 4: the frames cut to them
        shot = simulate_movie(sim, 4, seed=seed + 1000)
        h, w = (n // 4 * 4 for n in shot.frames.shape[1:])
        inside = (shot.truth["x"] < w - 0.5) & (shot.truth["y"] < h - 0.5)
        renders.append((shot.frames[:, :h, :w], shot.truth[inside]))
    else:
        for n in (25, 75):
            for snr in (2.0, 4.0, 7.0):
                sc = Scenario("calibration", n, snr, 2, size=256, base=sim,
                              seed=seed + 1000 + n + int(10 * snr))  # fmt: skip
                renders.append(sc.render())
    cases = []
    for movie, truth in renders:
        imgs = np.stack([robust_normalise(f) for f in movie])[..., None]
        cases.append((truth, model.predict(imgs, verbose=0), movie.shape[1:]))
    best: dict[str, Any] = {"mean_f1": -1.0}
    for thr in np.round(np.arange(0.3, 0.91, 0.05), 2):
        f1 = []
        for truth, outs, shape in cases:
            rows = []
            for i, o in enumerate(outs):
                x, y, _ = read_peaks(o, float(thr), 4, shape)
                rows.append(pd.DataFrame({"frame": i, "x": x, "y": y}))
            f1.append(detection_scores(truth, pd.concat(rows), gate=2.0).f1)
        if float(np.mean(f1)) > best["mean_f1"]:
            best = {
                "threshold": float(thr),
                "mean_f1": float(np.mean(f1)),
                "f1_by_case": [round(v, 4) for v in f1],
            }
    return best


def crop_threshold(
    outputs: np.ndarray, truths: list[dict[str, np.ndarray]], crop: int
) -> dict[str, Any]:
    """The score threshold with the best F1 on held-out crops (scene modalities)."""
    best: dict[str, Any] = {"mean_f1": -1.0}
    for thr in np.round(np.arange(0.3, 0.91, 0.05), 2):
        f1 = held_out_metrics(outputs, truths, crop, float(thr))["f1"]
        if f1 > best["mean_f1"]:
            best = {"threshold": float(thr), "mean_f1": float(f1)}
    return best


def held_out_metrics(
    outputs: np.ndarray, truths: list[dict[str, np.ndarray]], crop: int, threshold: float
) -> dict[str, Any]:
    """Detection and network-localisation metrics on held-out crops at ``threshold``.

    Matching: nearest detection within 2 px, one to one (greedy by distance).
    """
    from scipy.spatial import cKDTree

    from livetrack.detection.readout import read_peaks

    tp = fp = fn = 0
    errs: list[np.ndarray] = []
    snrs: list[float] = []
    for out, tr in zip(outputs, truths, strict=True):
        x, y, _ = read_peaks(out, threshold, 4, (crop, crop))
        n_true = len(tr["x"])
        if len(x) == 0 or n_true == 0:
            fp += len(x)
            fn += n_true
            continue
        d, j = cKDTree(np.column_stack([x, y])).query(np.column_stack([tr["x"], tr["y"]]))
        used: set[int] = set()
        for k in np.argsort(d):
            if d[k] < 2.0 and int(j[k]) not in used:
                used.add(int(j[k]))
                tp += 1
                errs.append(np.array([x[j[k]] - tr["x"][k], y[j[k]] - tr["y"][k]]))
                snrs.append(float(tr["snr"][k]))
        fn += n_true - len(used)
        fp += len(x) - len(used)
    p = tp / max(tp + fp, 1)
    r = tp / max(tp + fn, 1)
    e = np.array(errs) if errs else np.zeros((0, 2))
    sn = np.array(snrs)
    by_snr = {}
    for lo, hi in ((1, 2), (2, 4), (4, 7), (7, 15), (15, 1e9)):
        m = (sn >= lo) & (sn < hi)
        if m.any():
            by_snr[f"{lo}-{hi if hi < 1e9 else 'inf'}"] = float(np.sqrt(np.mean(e[m] ** 2)))
    return {
        "threshold": threshold,
        "f1": 2 * p * r / max(p + r, 1e-12),
        "precision": p,
        "recall": r,
        "rmse_px_network": float(np.sqrt(np.mean(e**2))) if len(e) else float("nan"),
        "rmse_px_network_by_snr": by_snr,
    }
