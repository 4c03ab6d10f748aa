from __future__ import annotations

import numpy as np
import pytest

from livetrack.simulation import hologram, mie_coefficients

pylorenzmie = pytest.importorskip("pylorenzmie.theory")

WAVELENGTH, N_MEDIUM, PIXEL = 0.447, 1.34, 0.048


def _reference(
    shape: tuple[int, int], spheres: list[tuple[float, float, float, float, float]]
) -> np.ndarray:
    from pylorenzmie.theory import Instrument, LorenzMie, Sphere

    inst = Instrument(wavelength=WAVELENGTH, magnification=PIXEL, n_m=N_MEDIUM)
    particles = [Sphere(x_p=x, y_p=y, z_p=z, a_p=a, n_p=n) for x, y, z, a, n in spheres]
    lm = LorenzMie(coordinates=LorenzMie.meshgrid(shape), particle=particles, instrument=inst)
    return np.asarray(lm.hologram()).reshape(shape)


@pytest.mark.parametrize(
    "spheres",
    [
        [(60.3, 55.7, 200.0, 0.75, 1.45)],
        [(40.0, 70.0, 120.0, 1.5, 1.60)],
        [(64.0, 60.0, 300.0, 0.3, 1.39)],
        [(30.0, 30.0, 150.0, 0.5, 1.59), (90.0, 80.0, 250.0, 1.0, 1.42)],
    ],
)
def test_hologram_agrees_with_pylorenzmie(
    spheres: list[tuple[float, float, float, float, float]],
) -> None:
    shape = (121, 131)
    ref = _reference(shape, spheres)
    arr = np.array(spheres).T
    ours, contrast = hologram(
        shape,
        arr[0],
        arr[1],
        arr[2],
        arr[3],
        arr[4],
        pixel_um=PIXEL,
        n_medium=N_MEDIUM,
        wavelength_um=WAVELENGTH,
    )
    # ~1 % of the hologram's feature contrast, everywhere in the frame
    assert np.max(np.abs(ours - ref)) < 0.01 * np.max(np.abs(ref - 1.0))
    assert np.all(contrast > 0)


def test_mie_coefficients_agree_with_pylorenzmie() -> None:
    from pylorenzmie.theory import Sphere

    ref = Sphere(a_p=1.0, n_p=1.5).ab(N_MEDIUM, WAVELENGTH)
    ours = mie_coefficients(1.0, 1.5, N_MEDIUM, WAVELENGTH)
    n = min(len(ref), len(ours))
    # the last, vanishing orders differ by round-off in the recurrences
    assert np.allclose(ours[1:n], ref[1:n], atol=1e-5)


def test_index_matched_sphere_is_invisible() -> None:
    ab = mie_coefficients(1.0, N_MEDIUM, N_MEDIUM, WAVELENGTH)
    assert np.abs(ab).max() < 1e-12


def test_patches_approximate_the_full_frame() -> None:
    args = (
        (128, 128),
        np.array([64.0]),
        np.array([64.0]),
        np.array([150.0]),
        np.array([0.8]),
        np.array([1.5]),
    )
    kw = {"pixel_um": PIXEL, "n_medium": N_MEDIUM, "wavelength_um": WAVELENGTH}
    full, _ = hologram(*args, **kw)
    patch, _ = hologram(*args, patch_half_width=40, **kw)
    assert np.allclose(full[24:105, 24:105], patch[24:105, 24:105])
    assert np.all(patch[:20, :20] == 1.0)


def test_a_plane_through_the_sphere_renders_as_just_outside_it() -> None:
    """The external field diverges inside the sphere; a focus moved into it stays finite."""
    args = dict(pixel_um=PIXEL, n_medium=N_MEDIUM, wavelength_um=WAVELENGTH)
    one = np.array([15.0])
    a = np.array([1.0])
    inside, _ = hologram((31, 31), one, one, np.array([0.3 / PIXEL]), a, np.array([1.5]), **args)
    edge, _ = hologram((31, 31), one, one, np.array([1.01 / PIXEL]), a, np.array([1.5]), **args)
    assert np.all(np.isfinite(inside))
    np.testing.assert_allclose(inside, edge)
