"""Validated configuration models: optics, camera, particles, motion.

Every model is a frozen pydantic model that forbids unknown keys, so a typo in a
TOML file is reported instead of silently ignored.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BOLTZMANN_J_PER_K = 1.380649e-23


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class Distribution(_Frozen):
    """A randomised physical quantity: normal around ``mean``, clipped to ``[min, max]``.

    A bare number in TOML means a fixed value (``std = 0``).
    """

    mean: float
    std: Annotated[float, Field(ge=0.0)] = 0.0
    min: float = -math.inf
    max: float = math.inf

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, data: object) -> object:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"mean": float(data)}
        return data

    @model_validator(mode="after")
    def _check_bounds(self) -> Distribution:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if not (self.min <= self.mean <= self.max):
            raise ValueError(
                f"mean ({self.mean}) must lie within [min, max] = [{self.min}, {self.max}]"
            )
        return self


class Uniform(_Frozen):
    """A quantity drawn uniformly from ``[min, max]``."""

    min: float
    max: float

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, data: object) -> object:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"min": float(data), "max": float(data)}
        return data

    @model_validator(mode="after")
    def _check_bounds(self) -> Uniform:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Zernike(_Frozen):
    """One Zernike aberration term (Noll index, RMS amplitude in waves)."""

    noll: Annotated[int, Field(ge=1, le=36)]
    rms_waves: float


class PresetInfo(_Frozen):
    """What the preset is and which image formation it uses."""

    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    modality: Literal["fluorescence", "brightfield", "holography"]


class Optics(_Frozen):
    """Microscope optics. Lengths in micrometres."""

    wavelength_um: Annotated[float, Field(gt=0.2, lt=2.0)]
    numerical_aperture: Annotated[float, Field(gt=0.0, le=1.7)]
    magnification: Annotated[float, Field(gt=0.0)]
    camera_pixel_um: Annotated[float, Field(gt=0.0)]
    medium_index: Annotated[float, Field(ge=1.0, le=2.5)] = 1.33
    immersion_index: Annotated[float, Field(ge=1.0, le=2.5)] = 1.515
    psf: Literal["gaussian", "airy", "vectorial", "pupil"] = "gaussian"
    zernike: tuple[Zernike, ...] = ()

    @model_validator(mode="after")
    def _check_na(self) -> Optics:
        if self.numerical_aperture >= self.immersion_index:
            raise ValueError(
                f"numerical_aperture ({self.numerical_aperture}) must be below the "
                f"immersion_index ({self.immersion_index})"
            )
        if self.zernike and self.psf != "pupil":
            raise ValueError("zernike aberrations need psf = 'pupil'")
        return self

    @property
    def pixel_size_um(self) -> float:
        """Pixel size in the sample plane (camera pixel / magnification)."""
        return self.camera_pixel_um / self.magnification

    @property
    def gaussian_sigma_um(self) -> float:
        """Best Gaussian approximation of the in-focus Airy spot (0.21 λ/NA, Zhang 2007)."""
        return 0.21 * self.wavelength_um / self.numerical_aperture


class Camera(_Frozen):
    """Camera model: photons → electrons → ADU."""

    width: Annotated[int, Field(ge=8, le=16384)] = 512
    height: Annotated[int, Field(ge=8, le=16384)] = 512
    bit_depth: Annotated[int, Field(ge=8, le=32)] = 16
    quantum_efficiency: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    gain_adu_per_e: Annotated[float, Field(gt=0.0)] = 1.0
    offset_adu: Annotated[float, Field(ge=0.0)] = 100.0
    read_noise_e: Annotated[float, Field(ge=0.0)] = 1.5
    emccd: bool = False
    em_gain: Annotated[float, Field(ge=1.0)] = 1.0
    exposure_ms: Annotated[float, Field(gt=0.0)] = 10.0
    frame_interval_ms: Annotated[float, Field(gt=0.0)] = 20.0

    @model_validator(mode="after")
    def _check_timing(self) -> Camera:
        if self.exposure_ms > self.frame_interval_ms:
            raise ValueError(
                f"exposure_ms ({self.exposure_ms}) must not exceed frame_interval_ms "
                f"({self.frame_interval_ms})"
            )
        if self.offset_adu >= 2**self.bit_depth:
            raise ValueError(
                f"offset_adu ({self.offset_adu}) exceeds the {self.bit_depth}-bit range"
            )
        return self


class Illumination(_Frozen):
    """Background and illumination, in photons per pixel per frame."""

    background_photons: Annotated[float, Field(ge=0.0)] = 10.0
    # Fractional change of the background across the field along x and y.
    gradient: tuple[float, float] = (0.0, 0.0)
    # Relative RMS frame-to-frame fluctuation of illumination (lamp flicker).
    flicker: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class Particles(_Frozen):
    """The particle population. Number is the mean count in the field of view."""

    number: Annotated[int, Field(ge=0, le=100000)] = 100
    radius_um: Distribution = Distribution(mean=0.1)
    refractive_index: Distribution = Distribution(mean=1.59)
    photons: Distribution = Distribution(mean=2000.0, min=0.0)
    z_um: Uniform = Uniform(min=0.0, max=0.0)
    # Two-state blinking rates; zero means always on.
    blink_off_per_s: Annotated[float, Field(ge=0.0)] = 0.0
    blink_on_per_s: Annotated[float, Field(ge=0.0)] = 0.0
    # Keep centres at least this far apart (in units of the PSF / feature size).
    min_separation_px: Annotated[float, Field(ge=0.0)] = 0.0

    @model_validator(mode="after")
    def _check_physical(self) -> Particles:
        if self.radius_um.min <= 0.0 and self.radius_um.std > 0.0:
            raise ValueError("radius_um needs min > 0 when std > 0 (radii must be positive)")
        if self.radius_um.mean <= 0.0:
            raise ValueError(f"radius_um.mean ({self.radius_um.mean}) must be positive")
        return self


class Trap(_Frozen):
    """An optical trap that holds particles near its centre (Ornstein–Uhlenbeck)."""

    stiffness_pN_per_um: Annotated[float, Field(ge=0.0)] = 0.0
    # Trap centre in pixels; None = the centre of the field.
    center_px: tuple[float, float] | None = None
    # How many particles (the nearest to the trap at the start) are trapped.
    trapped: Annotated[int, Field(ge=0)] = 1


class Motion(_Frozen):
    """Particle motion: Brownian (Stokes–Einstein unless given), drift and trap."""

    temperature_K: Annotated[float, Field(gt=0.0, lt=1000.0)] = 295.0
    viscosity_Pa_s: Annotated[float, Field(gt=0.0)] = 1.0e-3
    # Override the Stokes–Einstein coefficient (µm²/s); None = from radius.
    diffusion_um2_per_s: Annotated[float, Field(ge=0.0)] | None = None
    drift_um_per_s: tuple[float, float] = (0.0, 0.0)
    diffuse_z: bool = False
    trap: Trap = Trap()

    @property
    def kT_J(self) -> float:
        """Thermal energy in joules."""
        return BOLTZMANN_J_PER_K * self.temperature_K

    def stokes_einstein_um2_per_s(self, radius_um: float) -> float:
        """Diffusion coefficient D = kT / (6 π η a) in µm²/s."""
        d_m2_s = self.kT_J / (6.0 * math.pi * self.viscosity_Pa_s * radius_um * 1e-6)
        return d_m2_s * 1e12


class Holography(_Frozen):
    """In-line holography / brightfield specifics."""

    illumination_photons: Annotated[float, Field(gt=0.0)] = 1000.0
    # Half-width of the rendered patch around each particle (pixels).
    patch_half_width_px: Annotated[int, Field(ge=4, le=512)] = 48
    # Brightfield: blur of partially coherent illumination (pixels, Gaussian sigma).
    coherence_blur_px: Annotated[float, Field(ge=0.0)] = 0.0


class SimulationConfig(_Frozen):
    """Everything the simulator needs: one preset file."""

    preset: PresetInfo
    optics: Optics
    camera: Camera = Camera()
    illumination: Illumination = Illumination()
    particles: Particles = Particles()
    motion: Motion = Motion()
    holography: Holography = Holography()

    @model_validator(mode="after")
    def _focal_plane_outside_spheres(self) -> SimulationConfig:
        # Lorenz–Mie gives the field outside the sphere only: the imaged plane must not cut it
        if self.preset.modality == "fluorescence":
            return self
        r = self.particles.radius_um
        largest = r.max if math.isfinite(r.max) else r.mean + 3 * r.std
        if abs(self.particles.z_um.min) <= largest and self.particles.z_um.max >= -largest:
            raise ValueError(
                f"particles.z_um {self.particles.z_um.min}..{self.particles.z_um.max} µm reaches "
                f"into the spheres (radius up to {largest:.3g} µm): for {self.preset.modality}, "
                "the imaged plane must lie outside every sphere (|z| > radius)"
            )
        return self

    @property
    def pixel_size_um(self) -> float:
        """Pixel size in the sample plane, micrometres."""
        return self.optics.pixel_size_um

    @property
    def frame_interval_s(self) -> float:
        """Time between frames, seconds."""
        return self.camera.frame_interval_ms * 1e-3
