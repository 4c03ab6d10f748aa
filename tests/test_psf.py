from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from livetrack.config import Optics, Zernike
from livetrack.simulation import GaussianPSF, PupilPSF, RadialTablePSF, debye_radial_profile

OPTICS = Optics(
    wavelength_um=0.6,
    numerical_aperture=0.95,
    magnification=100,
    camera_pixel_um=6.5,
    immersion_index=1.0003,
)


def test_airy_first_zero_at_0_61_lambda_over_na() -> None:
    o = OPTICS
    r = np.linspace(0.0, 1.0, 20001) * o.wavelength_um / o.numerical_aperture
    prof = debye_radial_profile(r, np.array([0.0]), o)[0]
    # first local minimum
    i = int(np.argmax(np.diff(prof) > 0))
    assert r[i] / (o.wavelength_um / o.numerical_aperture) == pytest.approx(0.6098, abs=2e-3)
    assert prof[i] / prof[0] < 1e-6


def test_gaussian_width_matches_airy_core() -> None:
    """σ = 0.21 λ/NA is the least-squares Gaussian of the Airy core (Zhang 2007)."""
    o = OPTICS
    r = np.linspace(0, 0.4, 400) * o.wavelength_um / o.numerical_aperture
    prof = debye_radial_profile(r, np.array([0.0]), o)[0]
    prof /= prof[0]
    sigma = o.gaussian_sigma_um
    gauss = np.exp(-(r**2) / (2 * sigma**2))
    assert np.max(np.abs(prof - gauss)) < 0.05


def _models() -> list[object]:
    return [
        GaussianPSF.from_optics(OPTICS),
        RadialTablePSF.airy(OPTICS, (-0.4, 0.4)),
        PupilPSF.from_optics(OPTICS, (-0.4, 0.4)),
    ]


@pytest.mark.parametrize("model", _models(), ids=["gaussian", "airy", "pupil"])
def test_photons_conserved_and_centred(model: object) -> None:
    x = np.array([40.3, 110.0])
    y = np.array([40.7, 101.45])
    z = np.array([0.0, 0.3])
    n = np.array([1000.0, 5000.0])
    r = model.render(x, y, z, n, (144, 152))  # type: ignore[attr-defined]
    assert r.image.sum() == pytest.approx(n.sum(), rel=1e-9)
    # centroid of each spot sits at its (x = column, y = row) position
    rows, cols = np.mgrid[0:144, 0:152]
    for xi, yi, ni in zip(x, y, n, strict=True):
        m = (abs(cols - xi) < 30) & (abs(rows - yi) < 30)
        w = r.image * m
        assert (w * cols).sum() / w.sum() == pytest.approx(xi, abs=0.02)
        assert (w * rows).sum() / w.sum() == pytest.approx(yi, abs=0.02)
        assert w.sum() == pytest.approx(ni, rel=1e-9)
    assert np.all(r.peak_photons > 0)


def test_spot_at_the_edge_loses_photons_outside_the_sensor() -> None:
    r = GaussianPSF(2.0).render(
        np.array([0.0]), np.array([10.0]), np.zeros(1), np.array([1000.0]), (20, 20)
    )
    # the sensor's edge is at x = -0.5 (pixel 0 is centred on 0): Φ(0.5/σ) of the photons land
    assert r.image.sum() == pytest.approx(1000.0 * stats.norm.cdf(0.25), rel=1e-3)


def test_defocus_widens_the_spot() -> None:
    for model in _models():
        peak0 = model.render(
            np.array([20.0]), np.array([20.0]), np.array([0.0]), np.array([1e4]), (40, 40)
        )  # type: ignore[attr-defined]
        peak1 = model.render(
            np.array([20.0]), np.array([20.0]), np.array([0.4]), np.array([1e4]), (40, 40)
        )  # type: ignore[attr-defined]
        assert peak1.peak_photons[0] < 0.9 * peak0.peak_photons[0]


def test_pupil_without_aberration_matches_airy() -> None:
    args = (np.array([20.2]), np.array([19.6]), np.array([0.2]), np.array([1e4]), (40, 40))
    a = RadialTablePSF.airy(OPTICS, (-0.4, 0.4)).render(*args).image
    p = PupilPSF.from_optics(OPTICS, (-0.4, 0.4)).render(*args).image
    assert np.abs(a - p).max() < 0.03 * a.max()


def test_astigmatism_elongates_the_spot_with_sign_set_by_defocus() -> None:
    """The basis of astigmatic 3-D localisation: x/y elongation flips through focus."""
    o = OPTICS.model_copy(update={"psf": "pupil", "zernike": (Zernike(noll=6, rms_waves=0.15),)})
    model = PupilPSF.from_optics(o, (-0.4, 0.4))
    rows, cols = np.mgrid[0:48, 0:48]
    ellipticity = []
    for z in (-0.3, 0.3):
        img = model.render(
            np.array([24.0]), np.array([24.0]), np.array([z]), np.array([1e4]), (48, 48)
        ).image
        var_x = (img * (cols - 24.0) ** 2).sum() / img.sum()
        var_y = (img * (rows - 24.0) ** 2).sum() / img.sum()
        ellipticity.append((var_x - var_y) / (var_x + var_y))
    assert abs(ellipticity[0]) > 0.05
    assert abs(ellipticity[1]) > 0.05
    assert np.sign(ellipticity[0]) != np.sign(ellipticity[1])


def test_vectorial_psf_from_psfmodels() -> None:
    o = Optics(
        wavelength_um=0.6,
        numerical_aperture=1.4,
        magnification=100,
        camera_pixel_um=6.5,
        medium_index=1.515,
        psf="vectorial",
    )
    model = RadialTablePSF.vectorial(o, (0.0, 0.4))
    r = model.render(np.array([30.0]), np.array([30.0]), np.array([0.0]), np.array([1e4]), (64, 64))
    assert r.image.sum() == pytest.approx(1e4)
    # at NA 1.4 the vectorial spot (isotropic dipoles) is broader than the scalar Airy spot,
    # by some 10-35 % in peak height
    airy = RadialTablePSF.airy(o, (0.0, 0.4)).render(
        np.array([30.0]), np.array([30.0]), np.zeros(1), np.array([1e4]), (64, 64)
    )
    assert 0.65 < r.peak_photons[0] / airy.peak_photons[0] < 0.9
