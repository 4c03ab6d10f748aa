"""Physical simulation of particles under the microscope, with exact ground truth.

Imports no other part of livetrack.
"""

from livetrack.simulation.camera import (
    adu_to_photons,
    expose,
    gaussian_peak_fraction,
    sample_poisson,
    signal_for_snr,
    snr,
)
from livetrack.simulation.crlb import crlb_dense, crlb_mortensen, crlb_pixelated
from livetrack.simulation.io import truth_path_for, write_movie
from livetrack.simulation.lorenzmie import hologram, mie_coefficients, scattered_field
from livetrack.simulation.motion import ParticleState, ParticleSystem
from livetrack.simulation.psf import (
    PSF,
    GaussianPSF,
    PupilPSF,
    RadialTablePSF,
    Rendered,
    debye_radial_profile,
    psf_from_optics,
)
from livetrack.simulation.scene import TRUTH_COLUMNS, Movie, Scene, Snapshot, simulate_movie

__all__ = [
    "PSF",
    "TRUTH_COLUMNS",
    "GaussianPSF",
    "Movie",
    "ParticleState",
    "ParticleSystem",
    "PupilPSF",
    "RadialTablePSF",
    "Rendered",
    "Scene",
    "Snapshot",
    "adu_to_photons",
    "crlb_dense",
    "crlb_mortensen",
    "crlb_pixelated",
    "debye_radial_profile",
    "expose",
    "gaussian_peak_fraction",
    "hologram",
    "mie_coefficients",
    "psf_from_optics",
    "sample_poisson",
    "scattered_field",
    "signal_for_snr",
    "simulate_movie",
    "snr",
    "truth_path_for",
    "write_movie",
]
