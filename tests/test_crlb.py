from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from livetrack.simulation import GaussianPSF, crlb_mortensen, crlb_pixelated


@pytest.mark.parametrize("photons", [100.0, 1000.0, 20000.0])
def test_mortensen_matches_exact_fisher_information(photons: float) -> None:
    assert crlb_mortensen(photons, 10.0, 2.0)[0] == pytest.approx(
        crlb_pixelated(photons, 10.0, 2.0), rel=0.01
    )


def test_limits() -> None:
    # no background: σ_a/√N with σ_a² = σ² + a²/12
    assert crlb_mortensen(1000.0, 0.0, 1.5)[0] == pytest.approx(np.sqrt((1.5**2 + 1 / 12) / 1000))
    # EMCCD excess noise costs √2
    assert crlb_mortensen(500.0, 10.0, 2.0, excess_noise_factor_sq=2.0)[0] == pytest.approx(
        np.sqrt(2) * crlb_mortensen(500.0, 10.0, 2.0)[0]
    )
    # read noise only makes it worse
    assert crlb_pixelated(500.0, 10.0, 2.0, read_noise=3.0) > crlb_pixelated(500.0, 10.0, 2.0)


@pytest.mark.slow
def test_the_bound_is_reached_by_mle_on_simulated_spots() -> None:
    """Our simulator plus a maximum-likelihood fit attain the bound (validates both)."""
    rng = np.random.default_rng(5)
    psf = GaussianPSF(1.8)
    n, b, hw = 800.0, 10.0, 7
    errs = []
    yy, xx = np.mgrid[0 : 2 * hw + 1, 0 : 2 * hw + 1]
    for _ in range(200):
        x0, y0 = hw + rng.uniform(-0.5, 0.5, 2)
        mu = (
            psf.render(
                np.array([x0]), np.array([y0]), np.zeros(1), np.array([n]), (2 * hw + 1,) * 2
            ).image
            + b
        )
        img = rng.poisson(mu)

        def nll(p: np.ndarray, img: np.ndarray = img) -> float:
            m = (
                psf.render(
                    np.array([p[0]]), np.array([p[1]]), np.zeros(1), np.array([p[2]]), img.shape
                ).image
                + p[3]
            )
            return float(np.sum(m - img * np.log(np.maximum(m, 1e-9))))

        c = (img - b).clip(0)
        start = [(c * xx).sum() / c.sum(), (c * yy).sum() / c.sum(), c.sum(), b]
        res = optimize.minimize(
            nll,
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 4000},
        )
        errs.append(res.x[0] - x0)
    rmse = float(np.sqrt(np.mean(np.square(errs))))
    bound = crlb_pixelated(n, b, 1.8)
    assert rmse == pytest.approx(bound, rel=0.2)


def _spots(xs: list[float], ys: list[float], photons: float, sigma: float, b: float) -> np.ndarray:
    from scipy import special

    s = np.sqrt(2.0) * sigma
    k = np.arange(100, dtype=float)
    img = np.full((100, 100), b)
    for x, y in zip(xs, ys, strict=True):
        ex = 0.5 * (special.erf((k + 0.5 - x) / s) - special.erf((k - 0.5 - x) / s))
        ey = 0.5 * (special.erf((k + 0.5 - y) / s) - special.erf((k - 0.5 - y) / s))
        img += photons * ey[:, None] * ex[None, :]
    return img


def test_dense_bound_is_the_isolated_one_alone_and_grows_with_neighbours_and_edges() -> None:
    from livetrack.simulation import crlb_dense

    sigma, n, b = 2.0, 1000.0, 10.0
    alone = crlb_pixelated(n, b, sigma, read_noise=1.5)
    xs, ys = [50.0, 0.3, 80.0, 83.0], [50.0, 40.0, 20.0, 20.0]
    cx, cy = crlb_dense(_spots(xs, ys, n, sigma, b), xs, ys, [n] * 4, sigma, read_noise=1.5)
    assert cx[0] == pytest.approx(alone, rel=1e-3)
    assert cy[0] == pytest.approx(alone, rel=1e-3)
    assert cx[1] > 1.5 * alone  # half the spot beyond the frame's edge: x suffers
    assert cy[1] < 1.5 * alone
    assert cx[2] > 2 * alone
    assert cx[2] == pytest.approx(cx[3])
    # with the neighbour's parameters known, only its light (noise) remains: the pair is
    # entangled (ratio > 1.5), the lone spot not at all
    kx, _ = crlb_dense(
        _spots(xs, ys, n, sigma, b), xs, ys, [n] * 4, sigma, read_noise=1.5, neighbours_known=True
    )
    assert kx[0] == pytest.approx(cx[0])
    assert cx[2] > 1.5 * kx[2]
    assert kx[2] >= alone
    # the pair's bound falls back to the isolated one as the two move apart
    prev = np.inf
    for gap in (2.0, 4.0, 6.0, 8.0, 16.0, 30.0):
        px, py = [40.0, 40.0 + gap], [50.0, 50.0]
        c = crlb_dense(_spots(px, py, n, sigma, b), px, py, [n, n], sigma, read_noise=1.5)[0][0]
        assert c <= prev * (1 + 1e-6)
        prev = c
    assert prev == pytest.approx(alone, rel=0.01)


def test_hologram_crlb_scales_with_photons_and_grows_for_small_spheres() -> None:
    """Shot-noise limited: 4× the light halves every bound; a small sphere says less."""
    from livetrack.simulation.crlb import hologram_crlb

    kw = {"pixel_um": 0.048, "n_medium": 1.34, "wavelength_um": 0.447, "size": 48}
    dim = hologram_crlb(0.8, 1.5, 10.0, photons=1000.0, **kw)
    bright = hologram_crlb(0.8, 1.5, 10.0, photons=4000.0, **kw)
    np.testing.assert_allclose(dim / bright, 2.0, rtol=0.02)
    small = hologram_crlb(0.3, 1.4, 10.0, photons=1000.0, **kw)
    assert small[1] > 3 * dim[1]  # the index of a small, low-contrast sphere is poorly fixed
    assert np.all(np.isfinite(dim))
    assert np.all(dim > 0)
    noisy = hologram_crlb(0.8, 1.5, 10.0, photons=1000.0, read_noise_e=30.0, **kw)
    assert np.all(noisy > dim)
