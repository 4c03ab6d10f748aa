from __future__ import annotations

import numpy as np
import pytest

from livetrack.detection import normalise
from livetrack.detection._refine import refine
from livetrack.simulation import GaussianPSF, crlb_pixelated
from livetrack.single.detector import radial_symmetry_centre


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


def test_narrow_spots_are_fitted_until_they_converge() -> None:
    # σ 1.2 px, faint: four Fisher-scoring steps from a start up to a pixel off leave a
    # tenth of the fits > 0.01 px short of their optimum; the narrow-spot default does not
    rng = np.random.default_rng(12)
    k = 225
    g = (np.arange(15) + 1) * 30.0
    gx, gy = np.meshgrid(g, g)
    x = gx.ravel() + rng.uniform(-0.5, 0.5, k)
    y = gy.ravel() + rng.uniform(-0.5, 0.5, k)
    img = GaussianPSF(1.2).render(x, y, np.zeros(k), np.full(k, 150.0), (480, 480)).image + 20.0
    counts = rng.poisson(img).astype(float)
    x0, y0 = x + rng.uniform(-1, 1, k), y + rng.uniform(-1, 1, k)
    best = refine(counts, x0, y0, 1.2, fit_sigma=False, iterations=100)
    short = {}
    for name, steps in (("four", 4), ("default", None)):
        fit = refine(counts, x0, y0, 1.2, fit_sigma=False, iterations=steps)
        short[name] = float(np.percentile(np.hypot(fit.x - best.x, fit.y - best.y), 90))
    assert short["default"] < 0.002  # px
    assert short["four"] > 5 * short["default"]


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


def _noisy(x: np.ndarray, y: np.ndarray, photons: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(x)
    mean = GaussianPSF(2.0).render(x, y, np.zeros(n), np.full(n, photons), (64, 64)).image
    return rng.poisson(mean + 10.0).astype(np.float64)


def test_a_particle_hidden_in_its_neighbours_fit_is_split_out() -> None:
    """Two spots 3.5 px apart found as one: the residual lobe brings the second back."""
    from livetrack.detection._split import split_merged

    x, y = np.array([30.0, 33.5]), np.array([32.0, 32.0])
    img = _noisy(x, y, 3000.0, 1)
    one = refine(img, np.array([31.75]), np.array([32.0]), 2.0, fit_sigma=False)
    cols = (one.x, one.y, np.ones(1), one.photons, one.background, one.sigma)
    sx, sy, score, nph, _, _ = split_merged(
        img, *cols, z_min=6.0, min_fit_snr=1.2, read_noise=0.0, offset=0.0, scale=1.0
    )
    assert len(sx) == 2
    got = np.sort(sx)
    np.testing.assert_allclose(got, x, atol=0.3)
    np.testing.assert_allclose(sy, y, atol=0.3)
    np.testing.assert_allclose(nph, 3000.0, rtol=0.15)
    assert np.all(score == 1.0)
    # looking only elsewhere (a controller's region) leaves it alone; around it, splits
    args = dict(z_min=6.0, min_fit_snr=1.2, read_noise=0.0, offset=0.0, scale=1.0)
    assert len(split_merged(img, *cols, **args, region=(10.0, 10.0, 8.0))[0]) == 1  # type: ignore[arg-type]
    assert len(split_merged(img, *cols, **args, region=(32.0, 32.0, 8.0))[0]) == 2  # type: ignore[arg-type]


def test_single_spots_are_not_split() -> None:
    """Isolated spots at several brightnesses: the residual is noise, nothing is added."""
    from livetrack.detection._split import split_merged

    rng = np.random.default_rng(3)
    gx, gy = np.meshgrid(np.arange(8, 64, 12.0), np.arange(8, 64, 12.0))
    x = gx.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    y = gy.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    for photons, seed in ((300.0, 4), (3000.0, 5), (30000.0, 6)):
        img = _noisy(x, y, photons, seed)
        fit = refine(img, x, y, 2.0, fit_sigma=False)
        cols = (fit.x, fit.y, np.ones(len(x)), fit.photons, fit.background, fit.sigma)
        out = split_merged(
            img, *cols, z_min=6.0, min_fit_snr=1.2, read_noise=0.0, offset=0.0, scale=1.0
        )
        assert len(out[0]) == len(x), photons


def test_pairs_too_close_for_a_lobe_are_split_by_their_elongation() -> None:
    """Pairs 4 px apart at SNR ~4 merge into one stretched spot; the long axis splits them."""
    from livetrack.detection._split import split_merged

    rng = np.random.default_rng(8)
    centres = np.arange(16, 200, 24.0)
    cx, cy = (c.ravel() for c in np.meshgrid(centres, centres))
    angle = rng.uniform(0, np.pi, len(cx))
    half = 2.0  # 4 px apart: σ = 2, one peak for the network
    x = np.concatenate([cx + half * np.cos(angle), cx - half * np.cos(angle)])
    y = np.concatenate([cy + half * np.sin(angle), cy - half * np.sin(angle)])
    n = len(x)
    mean = GaussianPSF(2.0).render(x, y, np.zeros(n), np.full(n, 700.0), (216, 216)).image
    img = rng.poisson(mean + 10.0).astype(np.float64)
    one = refine(img, cx, cy, 2.0, fit_sigma=False)
    cols = (one.x, one.y, np.ones(len(cx)), one.photons, one.background, one.sigma)
    args = dict(z_min=6.0, min_fit_snr=1.2, read_noise=0.0, offset=0.0, scale=1.0)
    lobes_only = split_merged(img, *cols, **args, elongation_min=np.inf)  # type: ignore[arg-type]
    both = split_merged(img, *cols, **args)  # type: ignore[arg-type]
    found = np.column_stack(both[:2])
    d = np.hypot(found[:, None, 0] - x[None], found[:, None, 1] - y[None]).min(axis=0)
    recovered = (d < 1.0).mean()
    assert len(lobes_only[0]) - len(cx) < 0.1 * len(cx)
    assert recovered > 0.9, recovered
    assert len(both[0]) <= n  # nothing invented


def test_a_spot_brighter_than_the_frames_others_is_split_on_less_evidence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pairs 1.8σ apart at SNR ~2 (σ = 2.75 px) among lone spots of the same brightness.

    A merged pair carries about twice a lone spot's light; a lower likelihood gain
    then splits it, and the lone spots beside them are still left whole.
    """
    from livetrack.detection import _split

    rng = np.random.default_rng(0)
    s = 2.75
    centres = np.arange(20, 400, 30.0)
    cx, cy = (c.ravel() for c in np.meshgrid(centres, centres))
    pair = rng.random(len(cx)) < 0.25
    turn = rng.uniform(0, np.pi, int(pair.sum()))
    dx, dy = 2.5 * np.cos(turn), 2.5 * np.sin(turn)
    x = np.concatenate([cx[~pair], cx[pair] + dx, cx[pair] - dx])
    y = np.concatenate([cy[~pair], cy[pair] + dy, cy[pair] - dy])
    n = len(x)
    mean = GaussianPSF(s).render(x, y, np.zeros(n), np.full(n, 600.0), (420, 420)).image
    img = rng.poisson(mean + 20.0).astype(np.float64)
    one = refine(img, cx, cy, s, fit_sigma=False)
    cols = (one.x, one.y, np.ones(len(cx)), one.photons, one.background, one.sigma)
    args = dict(z_min=6.0, min_fit_snr=1.2, read_noise=0.0, offset=0.0, scale=1.0)

    def scored() -> tuple[int, int, int]:
        got = _split.split_merged(img, *cols, **args)  # type: ignore[arg-type]
        d = np.hypot(got[0][:, None] - x[None], got[1][:, None] - y[None])
        paired = int((d.min(axis=0)[(~pair).sum() :] < 1.5).sum())
        lone_split = int((np.sort(d[:, : (~pair).sum()], axis=0)[1] < 2.5).sum())
        return paired, int((d.min(axis=1) >= 1.5).sum()), lone_split

    found, astray, lone_split = scored()
    monkeypatch.setattr(_split, "BRIGHT", np.inf)  # every split on LOGLIK_MIN alone
    found_strict, astray_strict, _ = scored()
    assert found >= found_strict + 0.2 * 2 * pair.sum(), (found, found_strict)
    assert astray < astray_strict, (astray, astray_strict)
    assert lone_split == 0


def test_a_region_split_on_a_crop_equals_the_split_on_the_whole_frame() -> None:
    """The region's crop is wide enough that nothing changes but the cost."""
    from livetrack.detection._split import ELONGATION_MIN, _split_merged, split_merged

    rng = np.random.default_rng(2)
    centres = np.arange(16, 200, 24.0)
    cx, cy = (c.ravel() for c in np.meshgrid(centres, centres))
    x = np.concatenate([cx + 1.8, cx - 1.8])
    y = np.concatenate([cy + 0.5, cy - 0.5])
    n = len(x)
    mean = GaussianPSF(2.0).render(x, y, np.zeros(n), np.full(n, 900.0), (216, 216)).image
    img = rng.poisson(mean + 10.0).astype(np.float64)
    one = refine(img, cx, cy, 2.0, fit_sigma=False)
    cols = (one.x, one.y, np.ones(len(cx)), one.photons, one.background, one.sigma)
    args = dict(
        z_min=6.0, min_fit_snr=1.2, read_noise=0.0, offset=0.0, scale=1.0,
        elongation_min=ELONGATION_MIN,
    )  # fmt: skip
    for region in ((88.0, 88.0, 30.0), (5.0, 200.0, 20.0)):  # inside; cut by the edges
        crop = split_merged(img, *cols, **args, region=region)  # type: ignore[arg-type]
        whole = _split_merged(img, *cols, **args, region=region)  # type: ignore[arg-type]
        assert len(crop[0]) == len(whole[0]) > len(cx)
        for a, b in zip(crop, whole, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("photons", "width"), [(800.0, 2.6), (800.0, 1.6), (3000.0, 2.0)])
def test_the_frames_psf_width_is_found_away_from_the_cards(photons: float, width: float) -> None:
    """One width pooled over isolated spots; unresolved pairs (twice as bright) ignored."""
    rng = np.random.default_rng(int(photons * width))
    g = (np.arange(14) + 1) * 32.0
    gx, gy = np.meshgrid(g, g)
    x, y = (
        gx.ravel() + rng.uniform(-0.5, 0.5, gx.size),
        gy.ravel() + rng.uniform(-0.5, 0.5, gx.size),
    )
    n = np.full(x.size, photons)
    pairs = rng.choice(x.size, 12, replace=False)  # 12 spots with a hidden partner 1.5 px away
    px, py = x[pairs] + 1.5, y[pairs]
    all_x, all_y = np.concatenate([x, px]), np.concatenate([y, py])
    img = (
        GaussianPSF(width)
        .render(all_x, all_y, np.zeros(all_x.size), np.concatenate([n, n[pairs]]), (470, 470))
        .image
    )
    counts = rng.poisson(img + 10.0).astype(float)
    fit = refine(counts, x + rng.normal(0, 0.3, x.size), y + rng.normal(0, 0.3, x.size), 2.0)
    assert np.median(fit.sigma) == pytest.approx(width, rel=0.03)
    lone = np.setdiff1d(np.arange(x.size), pairs)
    rmse = np.sqrt(np.mean(np.concatenate([fit.x[lone] - x[lone], fit.y[lone] - y[lone]]) ** 2))
    assert rmse / crlb_pixelated(photons, 10.0, width) < 1.15


def test_faint_spots_keep_the_cards_width_when_the_frame_cannot_tell() -> None:
    rng = np.random.default_rng(5)
    x, y = np.array([40.0, 120.0, 200.0]), np.array([50.0, 60.0, 70.0])
    img = GaussianPSF(2.6).render(x, y, np.zeros(3), np.full(3, 150.0), (128, 256)).image
    fit = refine(rng.poisson(img + 10.0).astype(float), x, y, 2.0)
    assert np.all(fit.sigma == 2.0)  # 3 faint spots do not fix the width to 3 %


def test_spots_on_a_ramp_are_fitted_on_the_background_their_centres_sit_on() -> None:
    # wide spots on a 1000 e field rising by 30 % across the frame: fitted on a flat
    # background they are pulled up the ramp; with the frame's slope taken out of
    # their windows they are not, and sit at the bound
    rng = np.random.default_rng(3)
    sigma, photons, k = 3.3, 2.0 * 3.0 * np.sqrt(1000.0) * np.pi * 3.3**2, 144
    g = (np.arange(12) + 1) * 40.0
    gx, gy = np.meshgrid(g, g)
    x = gx.ravel() + rng.uniform(-0.5, 0.5, k)
    y = gy.ravel() + rng.uniform(-0.5, 0.5, k)
    ramp = 1000.0 * (0.85 + 0.3 * np.arange(520) / 519)[None, :]  # along x
    img = GaussianPSF(sigma).render(x, y, np.zeros(k), np.full(k, photons), (520, 520)).image
    errors: dict[str, np.ndarray] = {"flat": np.zeros(0), "slope": np.zeros(0)}
    for _ in range(4):
        counts = rng.poisson(img + ramp).astype(float)
        slope = normalise.background_slope(counts, x, y)
        assert slope is not None
        assert np.median(slope[0]) == pytest.approx(300.0 / 519, rel=0.1)
        assert np.abs(slope[1]).max() < 0.1
        x0, y0 = x + rng.normal(0, 0.3, k), y + rng.normal(0, 0.3, k)
        for name, s in (("flat", None), ("slope", slope)):
            fit = refine(counts, x0, y0, sigma, fit_sigma=False, slope=s)
            errors[name] = np.concatenate([errors[name], fit.x - x])
    bound = crlb_pixelated(photons, 1000.0, sigma)
    assert np.mean(errors["flat"]) > 0.5 * bound  # pulled towards the brighter side
    assert abs(np.mean(errors["slope"])) < 0.1 * bound
    assert np.sqrt(np.mean(errors["slope"] ** 2)) / bound < 1.1
    flat_frame = rng.poisson(np.full((520, 520), 1000.0) + img).astype(float)
    assert normalise.background_slope(flat_frame, x, y) is None
