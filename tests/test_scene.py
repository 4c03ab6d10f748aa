from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from livetrack.config import SimulationConfig, load_simulation_config
from livetrack.simulation import TRUTH_COLUMNS, Scene, simulate_movie

from .conftest import small


def test_same_seed_same_movie_other_seed_other_movie(beads: SimulationConfig) -> None:
    cfg = small(beads, number=5)
    a = simulate_movie(cfg, 4, seed=11)
    b = simulate_movie(cfg, 4, seed=11)
    c = simulate_movie(cfg, 4, seed=12)
    assert np.array_equal(a.frames, b.frames)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not np.array_equal(a.frames, c.frames)


def test_truth_table_follows_trackpy_convention(beads: SimulationConfig) -> None:
    cfg = small(beads, 128, 96, number=6)
    movie = simulate_movie(cfg, 3, seed=2)
    t = movie.truth
    assert tuple(t.columns) == TRUTH_COLUMNS
    assert set(t["frame"]) == {0, 1, 2}
    assert t["x"].between(-0.5, 127.5).all()
    assert t["y"].between(-0.5, 95.5).all()
    # x is the column, y the row: the brightest pixel near each bright particle matches
    f0 = movie.frames[0].astype(float)
    for row in t[(t.frame == 0) & (t.snr > 5)].itertuples():
        c, r = round(row.x), round(row.y)
        if 3 <= c < 125 and 3 <= r < 93:
            win = f0[r - 3 : r + 4, c - 3 : c + 4]
            rr, cc = np.unravel_index(np.argmax(win), win.shape)
            assert abs(cc - 3) <= 1
            assert abs(rr - 3) <= 1


def test_snr_tracks_photons(beads: SimulationConfig) -> None:
    cfg = small(beads, 256, 256, number=60)
    t = simulate_movie(cfg, 1, seed=0).truth
    assert np.corrcoef(t["photons"], t["snr"])[0, 1] > 0.9
    assert (t["snr"] > 0).all()


def test_background_gradient_and_flicker(beads: SimulationConfig) -> None:
    illum = beads.illumination.model_copy(
        update={"gradient": (0.5, 0.0), "flicker": 0.2, "background_photons": 100.0}
    )
    cfg = small(beads.model_copy(update={"illumination": illum}), 128, 64, number=0)
    scene = Scene(cfg, 0)
    images = []
    for _ in range(20):
        img, _ = scene.expected()
        images.append(img)
    first = images[0]
    assert first[:, -1].mean() / first[:, 0].mean() == pytest.approx(1.25 / 0.75, rel=0.05)
    levels = np.array([im.mean() for im in images])
    assert levels.std() / levels.mean() == pytest.approx(0.2, abs=0.08)


def test_stage_motion_moves_the_image(beads: SimulationConfig) -> None:
    cfg = small(beads, 96, 96, number=8)
    scene = Scene(cfg, 4)
    img0, truth0 = scene.expected()
    scene.system.set_view((5 * cfg.pixel_size_um, 0.0))  # stage moves 5 px in +x
    img1, truth1 = scene.expected()
    merged = truth0.merge(truth1, on="particle")
    assert np.allclose(merged["x_x"] - merged["x_y"], 5.0)
    assert np.allclose(
        img0[:, 20:70] - cfg.illumination.background_photons,
        img1[:, 15:65] - cfg.illumination.background_photons,
        atol=1e-6,
    )


@pytest.mark.parametrize("name", ["brightfield_colloids", "holography_spheres"])
def test_scattering_presets_render(name: str) -> None:
    cfg = small(load_simulation_config(name), 160, 160, number=2)
    movie = simulate_movie(cfg, 2, seed=1)
    assert movie.frames.shape == (2, 160, 160)
    assert len(movie.truth) >= 1
    assert (movie.truth["radius_um"] > 0).all()
    assert movie.frames.std() > 0
    if name == "holography_spheres":  # ringing fringes: values both above and below background
        f = movie.frames[0].astype(float)
        med = np.median(f)
        assert f.max() > med * 1.2
        assert f.min() < med * 0.8
