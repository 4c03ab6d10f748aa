"""ISBI 2012 metrics on small cases computed by hand (ε = 5 px)."""

from __future__ import annotations

import pandas as pd
import pytest

from livetrack.linking.scores import detection_scores, tracking_scores

EPS = 5.0


def track(pid: int, frames: range, x0: float, y: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"frame": list(frames), "particle": pid, "x": [x0 + f for f in frames], "y": y}
    )


def test_perfect_tracking() -> None:
    gt = pd.concat([track(1, range(4), 0), track(2, range(4), 50)])
    s = tracking_scores(gt, gt)
    assert (s.alpha, s.beta, s.jsc, s.jsc_theta, s.rmse_px) == (1.0, 1.0, 1.0, 1.0, 0.0)


def test_split_track() -> None:
    """One true track found as two halves: pair with one half; the other is spurious."""
    gt = track(1, range(4), 0)
    est = pd.concat([track(10, range(2), 0), track(11, range(2, 4), 0)])
    s = tracking_scores(gt, est)
    # d(X,Y) = ε(4 + 2) − 2·2ε = 2ε;  d(X,∅) = 4ε;  d(Ȳ,∅) = 2ε
    assert s.alpha == pytest.approx(1 - 2 / 4)
    assert s.beta == pytest.approx((4 - 2) / (4 + 2))
    assert s.jsc == pytest.approx(2 / (2 + 2 + 2))
    assert s.jsc_theta == pytest.approx(1 / (1 + 0 + 1))
    assert (s.tp_points, s.fn_points, s.fp_points) == (2, 2, 2)


def test_spurious_track_only_lowers_beta() -> None:
    gt = track(1, range(4), 0)
    est = pd.concat([gt, track(9, range(3), 200)])
    s = tracking_scores(gt, est)
    assert s.alpha == 1.0
    assert s.beta == pytest.approx(4 * EPS / (4 * EPS + 3 * EPS))
    assert s.jsc_theta == pytest.approx(1 / 2)


def test_missed_track() -> None:
    gt = pd.concat([track(1, range(4), 0), track(2, range(6), 100)])
    est = track(1, range(4), 0)
    s = tracking_scores(gt, est)
    assert s.alpha == pytest.approx(1 - 6 / 10)
    assert s.jsc == pytest.approx(4 / 10)
    assert s.jsc_theta == pytest.approx(1 / 2)


def test_positions_count_up_to_the_gate() -> None:
    gt = track(1, range(3), 0)
    est = gt.assign(x=gt["x"] + 3.0)
    s = tracking_scores(gt, est)
    assert s.alpha == pytest.approx(1 - 3 * 3 / (3 * EPS))
    assert s.rmse_px == pytest.approx(3.0)
    far = gt.assign(x=gt["x"] + 6.0)  # beyond the gate: never paired
    assert tracking_scores(gt, far).alpha == pytest.approx(0.0)
    assert tracking_scores(gt, far).jsc == 0.0


def test_identity_switch_is_penalised() -> None:
    """Two tracks that swap ids halfway: each pairing keeps only half its points."""
    a, b = track(1, range(4), 0), track(2, range(4), 30)
    est = pd.concat(
        [
            a[a.frame < 2].assign(particle=7),
            b[b.frame >= 2].assign(particle=7),
            b[b.frame < 2].assign(particle=8),
            a[a.frame >= 2].assign(particle=8),
        ]
    )
    s = tracking_scores(pd.concat([a, b]), est)
    # each pairing: ε(4 + 4) + 2·(0 − 2ε) + 2·(ε − 2ε) = 2ε... per track → α = 1 − 4ε/8ε
    assert s.alpha == pytest.approx(0.5)
    assert s.jsc == pytest.approx(4 / (4 + 4 + 4))


def test_detection_scores() -> None:
    gt = pd.DataFrame({"frame": [0, 0, 1], "x": [10.0, 40.0, 10.0], "y": [10.0, 10.0, 10.0]})
    det = pd.DataFrame(
        {"frame": [0, 0, 1, 1], "x": [11.0, 90.0, 10.0, 10.5], "y": [10.0, 10.0, 10.0, 10.0]}
    )
    s = detection_scores(gt, det)
    # frame 0: one hit (1 px), one miss, one false; frame 1: one hit (0 px), one duplicate (false)
    assert (s.tp, s.fp, s.fn) == (2, 2, 1)
    assert s.precision == pytest.approx(0.5)
    assert s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s.rmse_px == pytest.approx((0.5) ** 0.5)
