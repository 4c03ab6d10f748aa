"""Tracking and detection metrics.

Tracking: the ISBI 2012 particle tracking challenge measures (Chenouard et al.,
*Nat. Methods* 11, 281, 2014). Ground-truth tracks X and estimated tracks Y are
paired one to one by optimal assignment (unpaired ground-truth tracks pair with a
dummy track). The distance between two tracks is summed over the frames of both,
``min(‖θ(t) − ω(t)‖, ε)`` where both exist and ε where only one does; ε is the gate
(5 px in the challenge). Then

- α = 1 − d(X, Y) / d(X, ∅) — 0 for nothing found, 1 for a perfect match;
- β = (d(X, ∅) − d(X, Y)) / (d(X, ∅) + d(Ȳ, ∅)) — α penalised by the spurious
  (unpaired) estimated tracks Ȳ;
- JSC = TP / (TP + FN + FP) over points (a point is a true positive when its paired
  tracks are within ε in that frame); JSCθ the same over tracks;
- RMSE of the true-positive points.

Detection: per frame, detections are matched one to one to ground truth within
the gate (optimal assignment); precision, recall, F1 and RMSE follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

ISBI_GATE_PX = 5.0


@dataclass(frozen=True, slots=True)
class TrackingScores:
    """ISBI 2012 tracking scores."""

    alpha: float
    beta: float
    jsc: float
    jsc_theta: float
    rmse_px: float
    tp_points: int
    fn_points: int
    fp_points: int
    tp_tracks: int
    fn_tracks: int
    fp_tracks: int


@dataclass(frozen=True, slots=True)
class DetectionScores:
    """Detection scores summed over frames."""

    precision: float
    recall: float
    f1: float
    rmse_px: float
    tp: int
    fp: int
    fn: int
    #: truth rows matched, and each one's squared distance to its detection (px²)
    matched_truth_rows: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    matched_sq_err: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


def _frame_pairs(
    truth: pd.DataFrame, est: pd.DataFrame, gate: float, cols: tuple[str, str]
) -> pd.DataFrame:
    """All (truth row, estimate row, distance) within the gate, frame by frame."""
    out = []
    t_groups = dict(tuple(truth.groupby("frame", sort=False)))
    for frame, e in est.groupby("frame", sort=False):
        t = t_groups.get(frame)
        if t is None or len(t) == 0:
            continue
        tree = cKDTree(t[list(cols)].to_numpy())
        pts = e[list(cols)].to_numpy()
        lists = tree.query_ball_point(pts, r=gate)
        ei = np.repeat(np.arange(len(e)), [len(x) for x in lists])
        if len(ei) == 0:
            continue
        tj = np.concatenate([np.asarray(x, int) for x in lists if len(x)])
        d = np.hypot(*(pts[ei] - t[list(cols)].to_numpy()[tj]).T)
        out.append(
            pd.DataFrame({"t_row": t.index.to_numpy()[tj], "e_row": e.index.to_numpy()[ei], "d": d})
        )
    if not out:
        return pd.DataFrame({"t_row": [], "e_row": [], "d": []})
    return pd.concat(out, ignore_index=True)


def _shared_frames(
    truth: pd.DataFrame,
    est: pd.DataFrame,
    t_track: NDArray[np.intp],
    e_track: NDArray[np.intp],
    gate: float,
    cols: tuple[str, str],
) -> pd.DataFrame:
    """Every frame two candidate tracks share: their distance ``d`` and gated ``cost``.

    Candidates are tracks that come within the gate at least once; others can never
    beat the dummy. For those, every shared frame counts.
    """
    near = _frame_pairs(truth, est, gate, cols)
    cand = (
        np.unique(
            np.column_stack(
                [t_track[near["t_row"].to_numpy(int)], e_track[near["e_row"].to_numpy(int)]]
            ),
            axis=0,
        )
        if len(near)
        else np.zeros((0, 2), int)
    )
    tt = pd.DataFrame(
        {"ti": t_track, "frame": truth["frame"].to_numpy(), "tx": truth[cols[0]].to_numpy(),
         "ty": truth[cols[1]].to_numpy()}
    )  # fmt: skip
    ee = pd.DataFrame(
        {"ej": e_track, "frame": est["frame"].to_numpy(), "ex": est[cols[0]].to_numpy(),
         "ey": est[cols[1]].to_numpy()}
    )  # fmt: skip
    pairs = pd.DataFrame({"ti": cand[:, 0], "ej": cand[:, 1]})
    shared = pairs.merge(tt, on="ti").merge(ee, on=["ej", "frame"])
    shared["d"] = np.hypot(shared["tx"] - shared["ex"], shared["ty"] - shared["ey"])
    shared["cost"] = np.minimum(shared["d"], gate) - 2.0 * gate
    return shared


def tracking_scores(
    truth: pd.DataFrame,
    estimate: pd.DataFrame,
    gate: float = ISBI_GATE_PX,
    cols: tuple[str, str] = ("x", "y"),
) -> TrackingScores:
    """ISBI 2012 scores of ``estimate`` against ``truth``.

    Both tables need ``frame``, ``particle`` and the position columns; one row per
    track and frame.
    """
    truth = truth.reset_index(drop=True)
    est = estimate.reset_index(drop=True)
    t_ids, t_track = np.unique(truth["particle"].to_numpy(), return_inverse=True)
    e_ids, e_track = np.unique(est["particle"].to_numpy(), return_inverse=True)
    n, m = len(t_ids), len(e_ids)
    t_len = np.bincount(t_track, minlength=n)
    e_len = np.bincount(e_track, minlength=m)
    shared = _shared_frames(truth, est, t_track, e_track, gate, cols)
    saving = shared.groupby(["ti", "ej"], sort=False)["cost"].sum()
    # cost(i, j) = ε(|θ_i| + |ω_j|) + Σ_shared (min(d, ε) − 2ε); dummy: ε|θ_i|
    big = gate * (t_len.sum() + e_len.sum() + 1.0)
    cost = np.full((n, m + n), big)
    if len(saving):
        ti = saving.index.get_level_values(0).to_numpy()
        ej = saving.index.get_level_values(1).to_numpy()
        cost[ti, ej] = gate * (t_len[ti] + e_len[ej]) + saving.to_numpy()
    cost[np.arange(n), m + np.arange(n)] = gate * t_len
    rows, cols_ = linear_sum_assignment(cost) if n else (np.zeros(0, int), np.zeros(0, int))
    paired = cols_ < m
    d_xy = float(cost[rows, cols_].sum())
    d_x0 = gate * float(t_len.sum())
    pair_t, pair_e = rows[paired], cols_[paired]
    spurious = np.ones(m, bool)
    spurious[pair_e] = False
    d_y0 = gate * float(e_len[spurious].sum())
    # point-level true positives: shared frames of paired tracks within the gate
    key = pd.DataFrame({"ti": pair_t, "ej": pair_e})
    tp_pts = shared.merge(key, on=["ti", "ej"])
    tp_pts = tp_pts[tp_pts["d"] < gate]
    tp = len(tp_pts)
    fn = int(t_len.sum()) - tp
    fp = int(e_len.sum()) - tp
    tp_tracks = int(paired.sum())
    return TrackingScores(
        alpha=1.0 - d_xy / d_x0 if d_x0 else 0.0,
        beta=(d_x0 - d_xy) / (d_x0 + d_y0) if d_x0 + d_y0 else 0.0,
        jsc=tp / (tp + fn + fp) if tp + fn + fp else 0.0,
        jsc_theta=tp_tracks / (n + m - tp_tracks) if n + m else 0.0,
        rmse_px=float(np.sqrt(np.mean(tp_pts["d"].to_numpy() ** 2))) if tp else float("nan"),
        tp_points=tp,
        fn_points=fn,
        fp_points=fp,
        tp_tracks=tp_tracks,
        fn_tracks=n - tp_tracks,
        fp_tracks=m - tp_tracks,
    )


def detection_scores(
    truth: pd.DataFrame,
    detections: pd.DataFrame,
    gate: float = ISBI_GATE_PX,
    cols: tuple[str, str] = ("x", "y"),
) -> DetectionScores:
    """Precision, recall, F1 and RMSE of detections, matched one to one per frame."""
    truth = truth.reset_index(drop=True)
    det = detections.reset_index(drop=True)
    near = _frame_pairs(truth, det, gate, cols)
    tp = 0
    sq: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    if len(near):
        # one-to-one matching within each frame (min total distance)
        near["frame"] = truth["frame"].to_numpy()[near["t_row"].to_numpy(int)]
        for _, g in near.groupby("frame", sort=False):
            tr, t_loc = np.unique(g["t_row"].to_numpy(int), return_inverse=True)
            er, e_loc = np.unique(g["e_row"].to_numpy(int), return_inverse=True)
            c = np.full((len(tr), len(er)), 1e9)
            c[t_loc, e_loc] = g["d"].to_numpy()
            r, k = linear_sum_assignment(c)
            ok = c[r, k] < gate
            tp += int(ok.sum())
            sq.append(c[r, k][ok] ** 2)
            rows.append(tr[r[ok]])
    fp = len(det) - tp
    fn = len(truth) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    rmse = float(np.sqrt(np.mean(np.concatenate(sq)))) if tp else float("nan")
    if not tp:
        return DetectionScores(precision, recall, f1, rmse, tp, fp, fn)
    return DetectionScores(
        precision, recall, f1, rmse, tp, fp, fn, np.concatenate(rows), np.concatenate(sq)
    )
