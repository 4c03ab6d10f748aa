"""Reproducible ISBI-2012-like scenarios built from the fluorescent-beads preset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from livetrack.config import Distribution, SimulationConfig, load_simulation_config
from livetrack.simulation.camera import gaussian_peak_fraction, signal_for_snr
from livetrack.simulation.psf import GaussianPSF
from livetrack.simulation.scene import Scene


@dataclass(frozen=True)
class Scenario:
    """Particles, SNR and motion of one benchmark movie."""

    name: str
    particles: int
    snr: float
    frames: int
    size: int = 512
    step_px: float = 2.0  # Brownian displacement per axis per frame
    drift_px: tuple[float, float] = (0.0, 0.0)  # directed motion per frame
    seed: int = 0
    base: SimulationConfig | None = None
    photons_spread: float = 0.0  # relative std of the particles' brightness (0: all alike)

    def config(self) -> SimulationConfig:
        """The base preset (default: fluorescent beads) set to this scenario.

        Size, particle count, photons (for the SNR) and motion are replaced.
        """
        base = self.base or load_simulation_config("fluorescent_beads")
        px = base.pixel_size_um
        dt = base.frame_interval_s
        sigma = GaussianPSF.from_optics(base.optics).sigma_px
        bg = base.illumination.background_photons
        peak = signal_for_snr(self.snr, bg, base.camera)
        photons = peak / gaussian_peak_fraction(sigma)
        cam = base.camera.model_copy(update={"width": self.size, "height": self.size})
        parts = base.particles.model_copy(
            update={
                "number": self.particles,
                "photons": Distribution(
                    mean=photons,
                    std=self.photons_spread * photons,
                    min=0.3 * photons,
                    max=3.0 * photons,
                ),
                "z_um": base.particles.z_um.model_copy(update={"min": 0.0, "max": 0.0}),
                "min_separation_px": 3.0,
            }
        )
        motion = base.motion.model_copy(
            update={
                "diffusion_um2_per_s": (self.step_px * px) ** 2 / (2 * dt),
                "drift_um_per_s": (self.drift_px[0] * px / dt, self.drift_px[1] * px / dt),
            }
        )
        return base.model_copy(update={"camera": cam, "particles": parts, "motion": motion})

    @property
    def search_range_px(self) -> float:
        """Search radius covering 99.9 % of Brownian steps plus localisation error."""
        return 3.7 * self.step_px + 1.5

    def render(self) -> tuple[NDArray[np.unsignedinteger], pd.DataFrame]:
        """Frames (T, H, W) and the truth table."""
        scene = Scene(self.config(), self.seed)
        shots = list(scene.frames(self.frames))
        return np.stack([s.frame for s in shots]), pd.concat(
            [s.truth for s in shots], ignore_index=True
        )
