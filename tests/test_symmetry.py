"""Rings centred on their symmetry: the batched estimator, and a detector whose card asks for it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from livetrack.detection import symmetry
from livetrack.detection.symmetry import (
    centred_as_card,
    radial_f,
    symmetric_centres,
    symmetry_centres,
)


def _rings(
    centres: list[tuple[float, float]], shape: tuple[int, int], noise: float, seed: int
) -> np.ndarray:
    """Damped rings (a bright core, dark and bright rings) on a flat level, Gaussian noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 50.0) + rng.normal(0, noise, shape)
    for x0, y0 in centres:
        r = np.hypot(xx - x0, yy - y0)
        img += 40 * np.cos(0.9 * r) * np.exp(-r / 5)
    return img


def _one_window(img: np.ndarray) -> tuple[float, float]:
    """Parthasarathy's estimator for one window, written out as in the paper's code."""
    from scipy.ndimage import convolve

    ny, nx = img.shape
    du = convolve(img[:-1, 1:] - img[1:, :-1], np.ones((3, 3)) / 9.0, mode="nearest")
    dv = convolve(img[:-1, :-1] - img[1:, 1:], np.ones((3, 3)) / 9.0, mode="nearest")
    xm = np.arange(nx - 1)[None, :] + 0.5 + np.zeros((ny - 1, 1))
    ym = np.arange(ny - 1)[:, None] + 0.5 + np.zeros((1, nx - 1))
    grad2 = du * du + dv * dv
    m = -(du + dv) / (du - dv)
    b = ym - m * xm
    xc0, yc0 = (grad2 * xm).sum() / grad2.sum(), (grad2 * ym).sum() / grad2.sum()
    w = grad2 / np.sqrt((xm - xc0) ** 2 + (ym - yc0) ** 2) / (m * m + 1.0)
    sw, smw, smmw = w.sum(), (m * w).sum(), (m * m * w).sum()
    smbw, sbw = (m * b * w).sum(), (b * w).sum()
    det = smw * smw - smmw * sw
    return (smbw * sw - smw * sbw) / det, (smbw * smw - smmw * sbw) / det


def test_the_batch_gives_the_single_window_estimator() -> None:
    rng = np.random.default_rng(0)
    crops = np.stack(
        [_rings([tuple(8 + rng.uniform(-2, 2, 2))], (17, 17), 5.0, k) for k in range(12)]
    )
    x, y = symmetry_centres(crops)
    one = np.array([_one_window(c) for c in crops])
    np.testing.assert_allclose(x, one[:, 0], atol=1e-9)
    np.testing.assert_allclose(y, one[:, 1], atol=1e-9)


def test_noisy_rings_are_centred_from_two_pixels_off() -> None:
    rng = np.random.default_rng(1)
    grid = np.stack(np.meshgrid(np.arange(5), np.arange(5)), -1).reshape(-1, 2)
    truth = 28.0 + 36.0 * grid + rng.uniform(-3, 3, (25, 2))  # apart: one pattern a window
    img = _rings([tuple(t) for t in truth], (200, 200), 8.0, 2)
    start = truth + rng.uniform(-2, 2, truth.shape)  # a network's scatter, and more
    x, y = symmetric_centres(img, start[:, 0], start[:, 1], 8)
    err = np.hypot(x - truth[:, 0], y - truth[:, 1])
    before = np.hypot(*(start - truth).T)
    assert np.sqrt(np.mean(err**2)) < 0.25 < np.sqrt(np.mean(before**2))
    # at the frame's edge, and with nothing to centre: the start is kept, never NaN
    ex, ey = symmetric_centres(
        np.full((50, 50), 7.0), np.array([0.0, 25.0]), np.array([3, 49.0]), 8
    )
    assert np.array_equal(ex, [0.0, 25.0])
    assert np.array_equal(ey, [3.0, 49.0])
    assert symmetric_centres(img, np.zeros(0), np.zeros(0), 8)[0].shape == (0,)
    # a big-endian frame (FITS) or a boolean mask reads as its numbers
    sx, sy = symmetric_centres(img, start[:, 0], start[:, 1], 8)
    bx, by = symmetric_centres(img.astype(">f8"), start[:, 0], start[:, 1], 8)
    np.testing.assert_array_equal(bx, sx)
    np.testing.assert_array_equal(by, sy)
    assert np.isfinite(radial_f(img > 50, start[:, 0], start[:, 1], 8)).all()


def test_wide_rings_are_centred_in_binned_windows_as_well_as_in_full_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(6)
    truth = 40.0 + 60.0 * np.stack(np.meshgrid(np.arange(3), np.arange(3)), -1).reshape(-1, 2)
    truth += rng.uniform(-3, 3, truth.shape)
    yy, xx = np.mgrid[:200, :200]
    img = 50.0 + rng.normal(0, 8.0, (200, 200))
    for x0, y0 in truth:  # rings twice as wide as the others
        r = np.hypot(xx - x0, yy - y0)
        img += 40 * np.cos(0.45 * r) * np.exp(-r / 10)
    start = truth + rng.uniform(-2, 2, truth.shape)

    def rms(half: int) -> float:
        x, y = symmetric_centres(img, start[:, 0], start[:, 1], half)
        return float(np.sqrt(np.mean((x - truth[:, 0]) ** 2 + (y - truth[:, 1]) ** 2)))

    binned = {half: rms(half) for half in (16, 17, 24)}  # binned by 2, 2 and 3
    monkeypatch.setattr(symmetry, "CENTRING_HALF_PX", 100)
    full = {half: rms(half) for half in binned}
    # a binned pixel mapped back half a pixel off would show as 0.5 px at least
    assert all(binned[h] < 0.25 and binned[h] <= 1.1 * full[h] for h in binned), (binned, full)


def test_a_card_asking_for_symmetry_centres_the_detectors_rings(tmp_path: Path) -> None:
    from livetrack.artifact import model_dir
    from livetrack.config import load_simulation_config, presets_dir
    from livetrack.detection.detector import Detector
    from livetrack.simulation import simulate_movie

    cfg = load_simulation_config(presets_dir() / "brightfield_colloid_detector.toml")
    movie = simulate_movie(cfg, 3, seed=5)
    shipped = model_dir("brightfield-colloid-detector")
    centred = tmp_path / "centred"
    shutil.copytree(shipped, centred)
    card = json.loads((centred / "card.json").read_text())
    card["outputs"].update(refinement="radial_symmetry", symmetry_half_px=8)
    (centred / "card.json").write_text(json.dumps(card))
    errors = {}
    for name, path in (("network", shipped), ("symmetry", centred)):
        det = Detector(path)
        d = []
        for f, frame in enumerate(movie.frames):
            t = movie.truth[movie.truth["frame"] == f][["x", "y"]].to_numpy()
            found = det.detect(frame)
            dist, _ = cKDTree(np.column_stack([found.x, found.y])).query(t)
            d += list(dist[dist < 3])
        assert len(d) >= 0.9 * len(movie.truth)
        errors[name] = float(np.sqrt(np.mean(np.square(d))))
    assert errors["symmetry"] < 0.8 * errors["network"], errors


def test_windows_that_are_not_rings_are_dropped_where_the_card_says_so() -> None:
    from livetrack.adapt.rings import RINGS_MIN_F
    from livetrack.artifact import Outputs

    rings = [(40.0, 40.0), (120.0, 60.0), (80.0, 130.0)]
    img = _rings(rings, (180, 180), 5.0, 3)
    # a texture: smoothed noise, brighter than the rings' noise, in one corner
    texture = np.random.default_rng(4).normal(0, 30, (40, 40))
    from scipy.ndimage import gaussian_filter

    img[130:170, 10:50] += gaussian_filter(texture, 2.0)
    x = np.array([40.5, 119.0, 80.0, 30.0, 150.0, 160.0])
    y = np.array([39.0, 61.0, 129.5, 150.0, 150.0, 20.0])
    centres = np.array(rings)
    assert (radial_f(img, centres[:, 0], centres[:, 1], 8) > 3 * RINGS_MIN_F).all()
    assert (radial_f(img, x[3:], y[3:], 8) < RINGS_MIN_F).all()  # texture, flat noise
    score = np.arange(6.0)
    kept = centred_as_card(
        img, x, y, score, Outputs(refinement="radial_symmetry", min_symmetry_f=RINGS_MIN_F)
    )
    np.testing.assert_array_equal(kept[2], [0.0, 1.0, 2.0])  # the rings, in their order
    assert np.hypot(kept[0] - [r[0] for r in rings], kept[1] - [r[1] for r in rings]).max() < 0.3
    # a card without the centring leaves every detection as it was
    same = centred_as_card(img, x, y, score, Outputs())
    assert all(a is b for a, b in zip(same, (x, y, score), strict=True))


def test_rings_cut_by_the_edge_keep_the_position_they_came_with() -> None:
    from livetrack.artifact import Outputs
    from livetrack.detection.symmetry import centred_inside_frame

    rings = [(60.0, 60.0), (4.0, 70.0)]  # the second cut by the left edge
    img = _rings(rings, (120, 120), 2.0, 5)
    x, y = np.array([61.5, 5.5]), np.array([59.0, 71.0])  # 1.5–2 px off each
    card = Outputs(refinement="radial_symmetry", symmetry_half_px=10, min_symmetry_f=1e9)
    cx, cy, score = centred_inside_frame(img, x, y, np.array([1.0, 2.0]), card)
    assert np.hypot(cx[0] - 60.0, cy[0] - 60.0) < 0.3  # centred
    assert (cx[1], cy[1]) == (5.5, 71.0)  # kept: its window reaches past the edge
    np.testing.assert_array_equal(score, [1.0, 2.0])  # none dropped, whatever the card's cut
    assert (x[0], y[0]) == (61.5, 59.0)  # the caller's arrays untouched
