"""Particle motion in physical time: Brownian, drift, optical trap, entering/leaving.

Positions are kept in micrometres in the sample's frame. The field of view is a
window onto the sample (it moves with the stage); particles live in a margin
around it so that they enter and leave naturally. A particle that leaves the
margin is re-inserted on the opposite side under a new id, so ids are never
reused and the density stays constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from livetrack.config import Distribution, SimulationConfig

FloatArray = NDArray[np.float64]


def sample_distribution(d: Distribution, n: int, rng: np.random.Generator) -> FloatArray:
    """Draw n values from a clipped normal distribution."""
    if d.std == 0.0:
        return np.full(n, d.mean)
    return np.clip(rng.normal(d.mean, d.std, n), d.min, d.max)


@dataclass
class ParticleState:
    """The state of every particle at one instant (arrays of equal length)."""

    particle: NDArray[np.int64]
    x_um: FloatArray
    y_um: FloatArray
    z_um: FloatArray
    radius_um: FloatArray
    refractive_index: FloatArray
    photons: FloatArray
    diffusion_um2_per_s: FloatArray
    trapped: NDArray[np.bool_]
    on: NDArray[np.bool_]


class ParticleSystem:
    """Evolves a population of particles in physical time.

    Parameters
    ----------
    config
        The preset (optics for the pixel size, camera for the field, particles, motion).
    rng
        Random generator; the whole evolution is determined by it.
    margin_px
        Width of the band around the field of view in which particles live.
    """

    def __init__(
        self, config: SimulationConfig, rng: np.random.Generator, margin_px: float = 16.0
    ) -> None:
        self.config = config
        self.rng = rng
        px = config.pixel_size_um
        self.pixel_um = px
        self.margin_um = margin_px * px
        self.field_um = (config.camera.width * px, config.camera.height * px)
        self.view_origin_um = np.zeros(2)
        motion = config.motion
        trap = motion.trap
        center = trap.center_px or (
            (config.camera.width - 1) / 2.0,
            (config.camera.height - 1) / 2.0,
        )
        self.trap_center_um = np.array(center, float) * px
        self.time_s = 0.0
        self._next_id = 0
        #: ids never recycled when they leave the field (a particle followed by an experiment)
        self.pinned: set[int] = set()
        n = self._initial_count()
        self.state = self._new_particles(n, self._domain_uniform(n))
        if trap.stiffness_pN_per_um > 0 and trap.trapped > 0 and n > 0:
            d = np.hypot(
                self.state.x_um - self.trap_center_um[0], self.state.y_um - self.trap_center_um[1]
            )
            near = np.argsort(d)[: trap.trapped]
            self.state.trapped[near] = True
            # start trapped particles in the trap's equilibrium distribution
            sd = math.sqrt(motion.kT_J / (trap.stiffness_pN_per_um * 1e-6)) * 1e6
            self.state.x_um[near] = self.trap_center_um[0] + rng.normal(0, sd, len(near))
            self.state.y_um[near] = self.trap_center_um[1] + rng.normal(0, sd, len(near))

    def _initial_count(self) -> int:
        w, h = self.field_um
        m = self.margin_um
        area_ratio = (w + 2 * m) * (h + 2 * m) / (w * h)
        return round(self.config.particles.number * area_ratio)

    def _domain_uniform(self, n: int) -> tuple[FloatArray, FloatArray]:
        w, h = self.field_um
        m = self.margin_um
        o = self.view_origin_um - 0.5 * self.pixel_um
        x = o[0] - m + self.rng.uniform(0, w + 2 * m, n)
        y = o[1] - m + self.rng.uniform(0, h + 2 * m, n)
        sep = self.config.particles.min_separation_px * self.pixel_um
        if sep > 0 and n > 1:
            x, y = self._separate(x, y, sep)
        return x, y

    def _separate(self, x: FloatArray, y: FloatArray, sep: float) -> tuple[FloatArray, FloatArray]:
        """Redraw particles closer than ``sep`` to an earlier one (bounded tries)."""
        from scipy.spatial import cKDTree

        w, h = self.field_um
        m = self.margin_um
        o = self.view_origin_um - 0.5 * self.pixel_um
        for _ in range(20):
            pairs = cKDTree(np.column_stack([x, y])).query_pairs(sep, output_type="ndarray")
            if len(pairs) == 0:
                break
            bad = np.unique(pairs[:, 1])
            x[bad] = o[0] - m + self.rng.uniform(0, w + 2 * m, len(bad))
            y[bad] = o[1] - m + self.rng.uniform(0, h + 2 * m, len(bad))
        return x, y

    def _new_particles(self, n: int, xy: tuple[FloatArray, FloatArray]) -> ParticleState:
        cfg = self.config
        p = cfg.particles
        rng = self.rng
        radius = np.maximum(sample_distribution(p.radius_um, n, rng), 1e-4)
        if cfg.motion.diffusion_um2_per_s is not None:
            diff = np.full(n, cfg.motion.diffusion_um2_per_s)
        else:
            diff = np.array([cfg.motion.stokes_einstein_um2_per_s(float(a)) for a in radius])
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        on = np.ones(n, bool)
        if p.blink_off_per_s > 0:
            frac_on = p.blink_on_per_s / (p.blink_on_per_s + p.blink_off_per_s)
            on = rng.random(n) < frac_on
        return ParticleState(
            particle=ids,
            x_um=xy[0],
            y_um=xy[1],
            z_um=rng.uniform(p.z_um.min, p.z_um.max, n),
            radius_um=radius,
            refractive_index=sample_distribution(p.refractive_index, n, rng),
            photons=np.maximum(sample_distribution(p.photons, n, rng), 0.0),
            diffusion_um2_per_s=diff,
            trapped=np.zeros(n, bool),
            on=on,
        )

    def set_view(self, origin_um: tuple[float, float]) -> None:
        """Move the field of view (the stage) to ``origin_um`` in sample coordinates."""
        self.view_origin_um = np.asarray(origin_um, float)

    def set_trap(self, center_um: tuple[float, float]) -> None:
        """Move the trap centre (sample coordinates, µm)."""
        self.trap_center_um = np.asarray(center_um, float)

    def step(self, dt_s: float) -> None:
        """Advance every particle by ``dt_s`` seconds."""
        if dt_s <= 0:
            return
        s = self.state
        rng = self.rng
        motion = self.config.motion
        n = len(s.particle)
        sd = np.sqrt(2.0 * s.diffusion_um2_per_s * dt_s)
        dx = rng.normal(0.0, 1.0, n) * sd + motion.drift_um_per_s[0] * dt_s
        dy = rng.normal(0.0, 1.0, n) * sd + motion.drift_um_per_s[1] * dt_s
        free = ~s.trapped
        s.x_um[free] += dx[free]
        s.y_um[free] += dy[free]
        if s.trapped.any():
            self._step_trapped(dt_s)
        if motion.diffuse_z:
            zr = self.config.particles.z_um
            s.z_um += rng.normal(0.0, 1.0, n) * sd
            span = zr.max - zr.min
            if span > 0:  # reflect into [min, max]
                u = np.mod(s.z_um - zr.min, 2 * span)
                s.z_um = zr.min + np.where(u > span, 2 * span - u, u)
            else:
                s.z_um[:] = zr.min
        self._blink(dt_s)
        self._recycle_leavers()
        self.time_s += dt_s

    def _step_trapped(self, dt_s: float) -> None:
        """Exact Ornstein–Uhlenbeck update: relaxation time γ/κ, variance kT/κ."""
        s = self.state
        kappa = self.config.motion.trap.stiffness_pN_per_um * 1e-6  # N/m
        kT = self.config.motion.kT_J
        idx = np.flatnonzero(s.trapped)
        gamma = kT / (s.diffusion_um2_per_s[idx] * 1e-12)  # Einstein relation, N s/m
        decay = np.exp(-kappa * dt_s / gamma)
        var_um2 = kT / kappa * 1e12 * (1.0 - decay**2)
        noise = self.rng.normal(0.0, 1.0, (2, len(idx))) * np.sqrt(var_um2)
        for axis, arr in enumerate((s.x_um, s.y_um)):
            c = self.trap_center_um[axis]
            arr[idx] = c + (arr[idx] - c) * decay + noise[axis]

    def _blink(self, dt_s: float) -> None:
        p = self.config.particles
        if p.blink_off_per_s <= 0:
            return
        s = self.state
        u = self.rng.random(len(s.on))
        turn_off = s.on & (u < 1 - math.exp(-p.blink_off_per_s * dt_s))
        turn_on = ~s.on & (u < 1 - math.exp(-p.blink_on_per_s * dt_s))
        s.on = (s.on & ~turn_off) | turn_on

    def _recycle_leavers(self) -> None:
        s = self.state
        w, h = self.field_um
        m = self.margin_um
        o = self.view_origin_um - 0.5 * self.pixel_um
        lo = o - m
        span = np.array([w + 2 * m, h + 2 * m])
        keep = s.trapped | np.isin(s.particle, list(self.pinned))
        out = ~keep & (
            (s.x_um < lo[0])
            | (s.x_um >= lo[0] + span[0])
            | (s.y_um < lo[1])
            | (s.y_um >= lo[1] + span[1])
        )
        k = int(out.sum())
        if k == 0:
            return
        x = lo[0] + np.mod(s.x_um[out] - lo[0], span[0])
        y = lo[1] + np.mod(s.y_um[out] - lo[1], span[1])
        fresh = self._new_particles(k, (x, y))
        for name in ParticleState.__dataclass_fields__:
            getattr(s, name)[out] = getattr(fresh, name)

    def positions_px(self) -> tuple[FloatArray, FloatArray]:
        """Positions in camera pixels of the current view (trackpy convention)."""
        s = self.state
        return (
            (s.x_um - self.view_origin_um[0]) / self.pixel_um,
            (s.y_um - self.view_origin_um[1]) / self.pixel_um,
        )
