"""A simulated sample seen through the microscope: frames plus exact ground truth.

:class:`Scene` ties motion, optics and camera together. It renders the sample as
it is now (``snap``), can be advanced in physical time (``advance``), and follows a
moving stage and trap, so the simulated microscope and the movie writer share it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from livetrack.config import SimulationConfig
from livetrack.simulation.camera import expose, snr
from livetrack.simulation.lorenzmie import hologram
from livetrack.simulation.motion import ParticleSystem
from livetrack.simulation.psf import PSF, psf_from_optics

TRUTH_COLUMNS = (
    "frame",
    "particle",
    "x",
    "y",
    "z_um",
    "radius_um",
    "refractive_index",
    "photons",
    "snr",
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One frame: digitised pixels, the noise-free expectation, and the truth table."""

    frame: NDArray[np.unsignedinteger]
    expected_photons: NDArray[np.float64]
    truth: pd.DataFrame


def _background(config: SimulationConfig, level: float) -> NDArray[np.float64]:
    """Background (photons/px) with a linear gradient across the field."""
    cam = config.camera
    gx, gy = config.illumination.gradient
    if gx == 0.0 and gy == 0.0:
        return np.full((cam.height, cam.width), level)
    x = (np.arange(cam.width) - (cam.width - 1) / 2) / cam.width
    y = (np.arange(cam.height) - (cam.height - 1) / 2) / cam.height
    out: NDArray[np.float64] = level * np.clip(1.0 + gy * y[:, None] + gx * x[None, :], 0.0, None)
    return out


class Scene:
    """A sample evolving in physical time, imaged by the configured microscope.

    Parameters
    ----------
    config
        The preset.
    seed
        Seed (or generator) from which motion, rendering noise and properties derive.
    psf
        Optional pre-built PSF (saves building tables again).
    """

    def __init__(
        self,
        config: SimulationConfig,
        seed: int | np.random.Generator | None = 0,
        psf: PSF | None = None,
    ) -> None:
        self.config = config
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.system = ParticleSystem(config, self.rng)
        self.frame_index = 0
        self._psf = psf
        #: focal plane position (µm, sample coordinates): particles render at z − focus
        self.focus_um = 0.0
        #: draw floor + read noise from one table (real-time simulation; see ``expose``)
        self.fast_noise = False

    @property
    def psf(self) -> PSF:
        """The fluorescence PSF model (built on first use)."""
        if self._psf is None:
            zr = self.config.particles.z_um
            self._psf = psf_from_optics(self.config.optics, (zr.min, zr.max))
        return self._psf

    def advance(self, dt_s: float | None = None) -> None:
        """Let the sample evolve for ``dt_s`` (default: one frame interval)."""
        self.system.step(self.config.frame_interval_s if dt_s is None else dt_s)

    def _visible(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
        x, y = self.system.positions_px()
        cam = self.config.camera
        m = (
            8.0
            if self.config.preset.modality == "fluorescence"
            else float(self.config.holography.patch_half_width_px)
        )
        near = (x > -m) & (x < cam.width - 1 + m) & (y > -m) & (y < cam.height - 1 + m)
        return x, y, near

    def expected(self, truth: bool = True) -> tuple[NDArray[np.float64], pd.DataFrame]:
        """Noise-free expected photons per pixel and the truth table for this instant.

        ``truth=False`` leaves the table empty (same columns), saving ~1 ms a frame
        where nobody reads it (a live simulated camera); the image and the random
        stream are the same.
        """
        cfg = self.config
        cam = cfg.camera
        s = self.system.state
        x, y, near = self._visible()
        f = max(0.0, 1.0 + cfg.illumination.flicker * float(self.rng.normal()))
        shape = (cam.height, cam.width)
        idx = np.flatnonzero(near)
        z_rel = s.z_um[idx] - self.focus_um
        if cfg.preset.modality == "fluorescence":
            background = _background(cfg, cfg.illumination.background_photons * f)
            photons = s.photons[idx] * s.on[idx] * f
            rendered = self.psf.render(x[idx], y[idx], z_rel, photons, shape)
            image = background + rendered.image
            signal_peak = rendered.peak_photons
        else:
            holo = cfg.holography
            illum = holo.illumination_photons * f
            intensity, contrast = hologram(
                shape,
                x[idx],
                y[idx],
                z_rel / cfg.pixel_size_um,
                s.radius_um[idx],
                s.refractive_index[idx],
                pixel_um=cfg.pixel_size_um,
                n_medium=cfg.optics.medium_index,
                wavelength_um=cfg.optics.wavelength_um,
                patch_half_width=holo.patch_half_width_px,
            )
            if cfg.preset.modality == "brightfield" and holo.coherence_blur_px > 0:
                intensity = ndimage.gaussian_filter(
                    intensity, holo.coherence_blur_px, mode="nearest"
                )
            background = _background(cfg, illum)
            image = intensity * background + cfg.illumination.background_photons * f
            photons = np.full(len(idx), illum)
            signal_peak = contrast * illum
        if not truth:
            return image, pd.DataFrame(columns=TRUTH_COLUMNS)
        cx = np.clip(np.rint(x[idx]).astype(int), 0, cam.width - 1)
        cy = np.clip(np.rint(y[idx]).astype(int), 0, cam.height - 1)
        in_field = (
            (x[idx] >= -0.5)
            & (x[idx] < cam.width - 0.5)
            & (y[idx] >= -0.5)
            & (y[idx] < cam.height - 0.5)
        )
        table = pd.DataFrame(
            {
                "frame": np.full(len(idx), self.frame_index, dtype=np.int64),
                "particle": s.particle[idx],
                "x": x[idx],
                "y": y[idx],
                "z_um": s.z_um[idx],
                "radius_um": s.radius_um[idx],
                "refractive_index": s.refractive_index[idx],
                "photons": photons,
                "snr": snr(signal_peak, background[cy, cx], cam),
            }
        )
        return image, table[in_field].reset_index(drop=True)

    def snap(self, truth: bool = True) -> Snapshot:
        """Render the current instant through the camera (one frame), then count it.

        ``truth=False``: an empty truth table (see :meth:`expected`).
        """
        image, table = self.expected(truth)
        frame = expose(image, self.config.camera, self.rng, floor_table=self.fast_noise)
        self.frame_index += 1
        return Snapshot(frame, image, table)

    def frames(self, n_frames: int) -> Iterator[Snapshot]:
        """Yield ``n_frames`` consecutive frames, one frame interval apart."""
        for i in range(n_frames):
            if i:
                self.advance()
            yield self.snap()


@dataclass(frozen=True, slots=True)
class Movie:
    """A simulated movie held in memory: frames (T, H, W) and the truth table."""

    frames: NDArray[np.unsignedinteger]
    truth: pd.DataFrame
    config: SimulationConfig
    seed: int


def simulate_movie(config: SimulationConfig, n_frames: int, seed: int = 0) -> Movie:
    """Simulate ``n_frames`` frames; the result is a deterministic function of ``seed``.

    Examples
    --------
    >>> from livetrack.config import load_simulation_config
    >>> movie = simulate_movie(load_simulation_config("fluorescent_beads"), 3, seed=1)
    >>> movie.frames.shape[0], sorted(movie.truth["frame"].unique().tolist())
    (3, [0, 1, 2])
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    scene = Scene(config, seed)
    shots = list(scene.frames(n_frames))
    frames = np.stack([s.frame for s in shots])
    truth = pd.concat([s.truth for s in shots], ignore_index=True)
    return Movie(frames, truth, config, seed)
