from __future__ import annotations

import numpy as np
import pytest

from livetrack.config import SimulationConfig, Trap
from livetrack.simulation import ParticleSystem

from .conftest import small


def _msd_run(
    cfg: SimulationConfig, n_steps: int, dt: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    ps = ParticleSystem(cfg, np.random.default_rng(seed))
    ids0 = ps.state.particle.copy()
    x0, y0 = ps.state.x_um.copy(), ps.state.y_um.copy()
    disp = []
    # unwrap by following only particles that keep their id
    for _ in range(n_steps):
        ps.step(dt)
    same = ps.state.particle == ids0
    disp = np.stack([ps.state.x_um[same] - x0[same], ps.state.y_um[same] - y0[same]])
    return disp, ps.state.diffusion_um2_per_s[same]


def test_brownian_msd_is_4Dt(beads: SimulationConfig) -> None:
    cfg = small(beads, 512, 512, number=400)
    dt, n = 0.01, 20
    disp, d = _msd_run(cfg, n, dt)
    t = n * dt
    msd = np.mean(np.sum(disp**2, axis=0) / d)  # normalised by each particle's D
    # MSD/D = 4 t; standard error of a chi-square mean with 2 dof per particle: 4t/sqrt(N)
    assert msd == pytest.approx(4 * t, abs=4 * 4 * t / np.sqrt(disp.shape[1]))


def test_drift_moves_the_mean(beads: SimulationConfig) -> None:
    cfg = beads.model_copy(
        update={"motion": beads.motion.model_copy(update={"drift_um_per_s": (5.0, -3.0)})}
    )
    cfg = small(cfg, 512, 512, number=400)
    disp, _ = _msd_run(cfg, 10, 0.01)
    assert disp[0].mean() == pytest.approx(0.5, abs=0.05)
    assert disp[1].mean() == pytest.approx(-0.3, abs=0.05)


def test_trap_variance_is_kT_over_kappa(beads: SimulationConfig) -> None:
    kappa = 2.0  # pN/µm
    motion = beads.motion.model_copy(update={"trap": Trap(stiffness_pN_per_um=kappa, trapped=1)})
    cfg = small(beads.model_copy(update={"motion": motion}), 64, 64, number=1)
    ps = ParticleSystem(cfg, np.random.default_rng(3))
    i = int(np.flatnonzero(ps.state.trapped)[0])
    c = ps.trap_center_um
    xs = []
    for _ in range(20000):
        ps.step(0.005)
        xs.append((ps.state.x_um[i] - c[0], ps.state.y_um[i] - c[1]))
    arr = np.array(xs)
    expected = cfg.motion.kT_J / (kappa * 1e-6) * 1e12  # µm²
    # relaxation time γ/κ ≈ 0.94 ms ≪ dt: samples are nearly independent
    assert arr.var(axis=0) == pytest.approx([expected, expected], rel=0.05)
    assert np.abs(arr.mean(axis=0)).max() < 0.05 * np.sqrt(expected) * 10


def test_particles_enter_and_leave_with_fresh_ids(beads: SimulationConfig) -> None:
    cfg = small(beads, 64, 64, number=20)
    ps = ParticleSystem(cfg, np.random.default_rng(1))
    seen = set(ps.state.particle.tolist())
    n0 = len(ps.state.particle)
    for _ in range(200):
        ps.step(0.05)
        ids = ps.state.particle.tolist()
        assert len(ids) == len(set(ids)) == n0  # constant count, unique ids
        seen.update(ids)
    assert len(seen) > 2 * n0  # many left and were replaced by new ids
    x, y = ps.positions_px()
    m = ps.margin_um / ps.pixel_um
    assert np.all((x >= -0.5 - m - 1e-9) & (x < 63.5 + m) & (y >= -0.5 - m - 1e-9) & (y < 63.5 + m))


def test_blinking_duty_cycle(beads: SimulationConfig) -> None:
    cfg = small(beads, 256, 256, number=300, blink_off_per_s=10.0, blink_on_per_s=30.0)
    ps = ParticleSystem(cfg, np.random.default_rng(2))
    fractions = []
    for _ in range(100):
        ps.step(0.01)
        fractions.append(ps.state.on.mean())
    assert np.mean(fractions) == pytest.approx(0.75, abs=0.03)


def test_stage_moves_the_view(beads: SimulationConfig) -> None:
    cfg = small(beads, 64, 64, number=10)
    ps = ParticleSystem(cfg, np.random.default_rng(0))
    x0, y0 = ps.positions_px()
    ps.set_view((1.3, -0.65))
    x1, y1 = ps.positions_px()
    assert np.allclose(x0 - x1, 1.3 / ps.pixel_um)
    assert np.allclose(y0 - y1, -0.65 / ps.pixel_um)
