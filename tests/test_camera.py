from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from livetrack.config import Camera
from livetrack.simulation import adu_to_photons, expose, sample_poisson, snr


@pytest.mark.parametrize("lam", [0.05, 3.0, 10.0, 250.0, 5000.0])
def test_fast_poisson_is_poisson(lam: float) -> None:
    rng = np.random.default_rng(7)
    img = np.full((256, 256), lam)
    img[:16, :16] += 40.0  # the non-uniform remainder goes through numpy
    x = sample_poisson(img, rng)[32:, 32:].ravel()
    assert x.mean() == pytest.approx(lam, abs=5 * np.sqrt(lam / x.size))
    assert x.var() == pytest.approx(lam, rel=0.05)
    values, counts = np.unique(x, return_counts=True)
    expected = stats.poisson(lam).pmf(values) * x.size
    keep = expected > 30
    chi2 = (((counts - expected) ** 2) / expected)[keep].sum()
    assert stats.chi2(keep.sum() - 1).sf(chi2) > 1e-4


def test_camera_mean_and_variance() -> None:
    cam = Camera(quantum_efficiency=0.8, gain_adu_per_e=2.0, offset_adu=100, read_noise_e=3.0)
    frame = expose(np.full((300, 300), 50.0), cam, np.random.default_rng(0)).astype(float)
    e = 0.8 * 50.0
    assert frame.mean() == pytest.approx(2.0 * e + 100, rel=0.002)
    assert frame.var() == pytest.approx(4.0 * (e + 9.0) + 1 / 12, rel=0.03)
    assert adu_to_photons(frame, cam).mean() == pytest.approx(50.0, rel=0.005)


def test_emccd_doubles_the_shot_noise_variance() -> None:
    cam = Camera(
        emccd=True,
        em_gain=100.0,
        gain_adu_per_e=0.01,
        offset_adu=100,
        read_noise_e=0.0,
        quantum_efficiency=1.0,
    )
    frame = expose(np.full((300, 300), 20.0), cam, np.random.default_rng(1)).astype(float)
    # ADU variance = g² G² F² λ with F² = 2
    assert frame.var() == pytest.approx(2 * 20.0, rel=0.05)


def test_saturation_and_dtype() -> None:
    cam = Camera(bit_depth=8, offset_adu=10, gain_adu_per_e=1.0)
    frame = expose(np.full((10, 10), 1e6), cam, np.random.default_rng(0))
    assert frame.dtype == np.uint16
    assert frame.max() == 255


def test_snr_is_the_isbi_definition_for_a_noiseless_camera() -> None:
    cam = Camera(quantum_efficiency=1.0, read_noise_e=0.0)
    # (I0 - Ib)/sqrt(I0) with I0 = 30 + 10
    assert snr(np.array([30.0]), 10.0, cam)[0] == pytest.approx(30 / np.sqrt(40))


@pytest.mark.parametrize(("floor", "read"), [(10.0, 1.5), (2.0, 0.7), (150.0, 3.0)])
def test_floor_table_draws_the_same_distribution(floor: float, read: float) -> None:
    """The real-time path (one table for Poisson ⊕ read noise) matches the exact one."""
    cam = Camera(read_noise_e=read, gain_adu_per_e=1.0, offset_adu=100.0, quantum_efficiency=1.0)
    lam = np.full((256, 256), floor)
    lam[100:104, 100:104] += 500.0  # signal above the floor still gets its own Poisson draw
    rng = np.random.default_rng(3)
    a = np.concatenate([expose(lam, cam, rng).ravel() for _ in range(4)])
    b = np.concatenate([expose(lam, cam, rng, floor_table=True).ravel() for _ in range(4)])
    edges = np.arange(min(a.min(), b.min()), max(a.max(), b.max()) + 2) - 0.5
    ha, _ = np.histogram(a, edges)
    hb, _ = np.histogram(b, edges)
    keep = (ha + hb) > 20
    chi2 = stats.chi2_contingency(np.vstack([ha[keep], hb[keep]]))
    assert chi2.pvalue > 1e-3
    assert b.mean() == pytest.approx(a.mean(), rel=2e-3)
    assert b.var() == pytest.approx(a.var(), rel=0.03)
    spot = np.stack([expose(lam, cam, rng, floor_table=True)[100:104, 100:104] for _ in range(50)])
    assert spot.mean() == pytest.approx(100 + floor + 500, rel=0.01)
