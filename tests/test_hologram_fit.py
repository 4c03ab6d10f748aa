"""The Lorenz–Mie fit of a sphere's hologram: fast model, the bound, clipping, far starts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from livetrack.config import load_simulation_config
from livetrack.holography.hologram_fit import HologramCamera, HologramOptics, fit_sphere
from livetrack.simulation.camera import expose
from livetrack.simulation.crlb import hologram_crlb
from livetrack.simulation.lorenzmie import hologram, sphere_hologram

SIM = load_simulation_config("holography_spheres")
PX = SIM.pixel_size_um
OPTICS = HologramOptics(PX, SIM.optics.wavelength_um, SIM.optics.medium_index)
CAM = SIM.camera
CAMERA = HologramCamera(CAM.offset_adu, CAM.gain_adu_per_e, CAM.read_noise_e, 255.0)
CROP = 96


def _crop(
    a: float, m: float, z: float, photons: float, seed: int, x: float = 47.8, y: float = 47.1
) -> np.ndarray:
    intensity, _ = hologram(
        (CROP, CROP), np.array([x]), np.array([y]), np.array([z / PX]), np.array([a]),
        np.array([m]), pixel_um=PX, n_medium=OPTICS.medium_index,
        wavelength_um=OPTICS.wavelength_um,
    )  # fmt: skip
    return expose(intensity * photons, CAM, np.random.default_rng(seed))


@pytest.mark.parametrize(
    ("a", "m", "z"),
    [(0.3, 1.45, 6.0), (0.8, 1.5, 12.0), (1.5, 1.6, 6.0), (1.0, 1.45, -8.0), (0.5, 1.30, 5.0)],
)
def test_the_radial_table_matches_the_full_computation(a: float, m: float, z: float) -> None:
    """Above, below the focus, and a sphere of lower index than the medium."""
    rows, cols = np.mgrid[0:CROP, 0:CROP].astype(float)
    full, _ = hologram(
        (CROP, CROP), np.array([47.3]), np.array([48.1]), np.array([z / PX]), np.array([a]),
        np.array([m]), pixel_um=PX, n_medium=OPTICS.medium_index,
        wavelength_um=OPTICS.wavelength_um,
    )  # fmt: skip
    fast = sphere_hologram(
        cols - 47.3, rows - 48.1, z / PX, a, m, pixel_um=PX, n_medium=OPTICS.medium_index,
        wavelength_um=OPTICS.wavelength_um,
    )  # fmt: skip
    assert np.max(np.abs(fast - full)) < 2e-4  # the shot noise is ~2e-2 of the background
    moved = sphere_hologram(
        cols - 47.35, rows - 48.1, z / PX, a, m, pixel_um=PX, n_medium=OPTICS.medium_index,
        wavelength_um=OPTICS.wavelength_um,
    )  # fmt: skip
    assert np.max(np.abs(moved - full)) > 1e-3  # 0.05 px off: the tolerance tells it apart


def test_the_fit_reaches_the_bound_from_a_network_like_start() -> None:
    a, m, z, photons = 0.9, 1.52, 11.0, 3000.0
    frame = _crop(a, m, z, photons, seed=1)
    got = fit_sphere(frame, (a * 1.04, m + 0.015, z + 0.4), (0.03, 0.01, 0.3), OPTICS, CAMERA)
    bound = hologram_crlb(
        a, m, z, photons=photons, pixel_um=PX, n_medium=OPTICS.medium_index,
        wavelength_um=OPTICS.wavelength_um, quantum_efficiency=CAM.quantum_efficiency,
        read_noise_e=CAM.read_noise_e, gain_adu_per_e=CAM.gain_adu_per_e, size=CROP,
    )  # fmt: skip
    err = np.array([got.radius_um - a, got.refractive_index - m, got.z_um - z])
    assert np.all(np.abs(err) < 4 * np.asarray(got.sigma))
    assert np.allclose(got.sigma, bound, rtol=0.25)  # the stated σ is the physical limit
    assert abs(got.x - 47.8) < 0.05
    assert abs(got.y - 47.1) < 0.05
    assert 0.9 < got.reduced_chi2 < 1.1
    assert got.brightness_e == pytest.approx(photons * CAM.quantum_efficiency, rel=0.02)


@pytest.mark.slow
def test_saturated_pixels_are_censored_not_fitted_as_values() -> None:
    """At 2.3× the illumination the bright fringes clip at 255."""
    a, m, z = 1.2, 1.58, 9.0
    frame = _crop(a, m, z, 9000.0, seed=2)
    assert np.sum(frame >= 255) > 500
    start, sigma = (a * 1.02, m - 0.01, z - 0.3), (0.03, 0.01, 0.3)
    got = fit_sphere(frame, start, sigma, OPTICS, CAMERA)
    assert abs(got.refractive_index - m) < max(4 * got.sigma[1], 2e-4)
    assert abs(got.radius_um - a) < max(4 * got.sigma[0], 2e-3)
    assert got.reduced_chi2 < 1.1
    naive = HologramCamera(CAM.offset_adu, CAM.gain_adu_per_e, CAM.read_noise_e, math.inf)
    blind = fit_sphere(frame, start, sigma, OPTICS, naive, poor_fit=math.inf)
    assert blind.reduced_chi2 > 1.5  # clipped values taken at face value do not fit


@pytest.mark.slow
def test_a_start_far_off_is_flagged_and_searched_over_the_whole_range() -> None:
    """As a network's estimate on a crop cut by the frame's edge."""
    a, m, z = 1.1, 1.48, 18.0
    frame = _crop(a, m, z, 4000.0, seed=3)[: CROP - 20]
    start, sigma = (1.6, 1.567, 16.0), (0.03, 0.006, 0.3)
    got = fit_sphere(
        frame, start, sigma, OPTICS, CAMERA, position=(47.8, 47.1),
        search_range=((0.3, 1.38, 6.0), (1.5, 1.62, 20.0)),
    )  # fmt: skip
    assert got.widened
    assert abs(got.refractive_index - m) < 1e-3
    assert abs(got.z_um - z) < 0.05
    assert got.reduced_chi2 < 1.1
