from __future__ import annotations

import numpy as np
import pytest

from livetrack.inference._refine import refine
from livetrack.inference.single import radial_symmetry_centre
from livetrack.simulation import GaussianPSF, crlb_pixelated


@pytest.mark.parametrize("photons", [300.0, 3000.0])
def test_mle_refinement_reaches_the_bound(photons: float) -> None:
    rng = np.random.default_rng(int(photons))
    k = 225
    g = (np.arange(15) + 1) * 30.0
    gx, gy = np.meshgrid(g, g)
    x = gx.ravel() + rng.uniform(-0.5, 0.5, k)
    y = gy.ravel() + rng.uniform(-0.5, 0.5, k)
    img = GaussianPSF(2.0).render(x, y, np.zeros(k), np.full(k, photons), (480, 480)).image + 10.0
    counts = rng.poisson(img).astype(float)
    fit = refine(counts, x + rng.normal(0, 0.3, k), y + rng.normal(0, 0.3, k), 2.0)
    rmse = np.sqrt(np.mean(np.concatenate([fit.x - x, fit.y - y]) ** 2))
    assert fit.converged.mean() > 0.95
    assert rmse / crlb_pixelated(photons, 10.0, 2.0) < 1.15
    assert np.median(fit.photons) == pytest.approx(photons, rel=0.05)
    assert np.median(fit.background) == pytest.approx(10.0, rel=0.1)
    assert np.median(fit.sigma) == pytest.approx(2.0, rel=0.05)


def test_overlapping_spots_are_separated_by_the_second_pass() -> None:
    np.random.default_rng(0)
    x = np.array([30.0, 34.5])
    y = np.array([30.0, 30.4])
    img = (
        GaussianPSF(2.0).render(x, y, np.zeros(2), np.array([5000.0, 5000.0]), (60, 60)).image + 5.0
    )
    one = refine(img, x + 0.3, y - 0.3, 2.0, passes=1)
    two = refine(img, x + 0.3, y - 0.3, 2.0, passes=2)
    err1 = np.hypot(one.x - x, one.y - y).max()
    err2 = np.hypot(two.x - x, two.y - y).max()
    assert err2 < err1
    assert err2 < 0.05


def test_radial_symmetry_centre_on_a_clean_spot() -> None:
    img = (
        GaussianPSF(2.0)
        .render(np.array([7.3]), np.array([6.8]), np.zeros(1), np.array([1e4]), (15, 15))
        .image
    )
    xc, yc = radial_symmetry_centre(img)
    assert xc == pytest.approx(7.3, abs=0.05)
    assert yc == pytest.approx(6.8, abs=0.05)


def test_spots_at_the_frame_edge_are_fitted_without_bias() -> None:
    """Pixels of a window outside the frame are ignored, not replicated."""
    rng = np.random.default_rng(4)
    errs = []
    for _ in range(60):
        x = np.array([rng.uniform(0.0, 1.5)])
        y = np.array([rng.uniform(10.0, 20.0)])
        img = GaussianPSF(2.0).render(x, y, np.zeros(1), np.array([3000.0]), (30, 30)).image + 10.0
        fit = refine(rng.poisson(img).astype(float), x + 0.3, y - 0.2, 2.0)
        errs.append(fit.x[0] - x[0])
    assert abs(np.mean(errs)) < 0.03
    assert np.sqrt(np.mean(np.square(errs))) < 0.1
