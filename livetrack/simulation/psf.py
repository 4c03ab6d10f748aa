"""Point-spread functions of a fluorescence microscope, rendered into pixels.

Every model renders a list of emitters into an expected-photon image: each
emitter's photons are spread over a window of pixels, integrated over each pixel,
and scaled so that the window receives exactly the emitter's photons (photons
that land outside the sensor are lost, as on a real camera).

- :class:`GaussianPSF` — the Gaussian approximation of the Airy spot,
  σ = 0.21 λ/NA (Zhang et al., Appl. Opt. 2007), widened with defocus like a
  Gaussian beam; pixel integration is exact (error functions).
- :class:`RadialTablePSF` — a radially symmetric PSF tabulated over (z, r):
  the scalar Debye integral (``airy``: the Airy pattern in focus, with defocus)
  or the vectorial Gibson–Lanni model from psfmodels (``vectorial``).
- :class:`PupilPSF` — a 2-D pupil with defocus and Zernike aberrations, for
  asymmetric PSFs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import special

from livetrack.config import Optics
from livetrack.simulation.zernike import zernike_noll

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Rendered:
    """Expected photons per pixel and, per emitter, the peak pixel's photons."""

    image: FloatArray
    peak_photons: FloatArray


class PSF(Protocol):
    """What the renderer needs from a PSF model."""

    def render(
        self,
        x: FloatArray,
        y: FloatArray,
        z_um: FloatArray,
        photons: FloatArray,
        shape: tuple[int, int],
    ) -> Rendered:
        """Render emitters at (x, y) pixels, defocus z (µm), into ``shape``."""
        ...


def _scatter_patches(
    patches: FloatArray, rows: NDArray[np.int64], cols: NDArray[np.int64], shape: tuple[int, int]
) -> FloatArray:
    """Add ``patches[i]`` at rows[i] × cols[i] into an image, clipping at the edges."""
    h, w = shape
    flat = (rows[:, :, None] * w + cols[:, None, :]).ravel()
    weights = patches.ravel()
    ok_r = (rows >= 0) & (rows < h)
    ok_c = (cols >= 0) & (cols < w)
    if not (ok_r.all() and ok_c.all()):
        inside = (ok_r[:, :, None] & ok_c[:, None, :]).ravel()
        flat, weights = flat[inside], weights[inside]
    img: FloatArray = np.bincount(flat, weights=weights, minlength=h * w).astype(
        np.float64, copy=False
    )
    return img.reshape(shape)


def _window_indices(center: FloatArray, half_width: int) -> tuple[NDArray[np.int64], FloatArray]:
    """Integer pixel indices of a window around each centre, and offsets centre→pixel."""
    start = np.rint(center).astype(np.int64) - half_width
    idx = start[:, None] + np.arange(2 * half_width + 1)[None, :]
    return idx, idx.astype(np.float64) - center[:, None]


def _empty(shape: tuple[int, int]) -> Rendered:
    return Rendered(np.zeros(shape), np.zeros(0))


@dataclass(frozen=True)
class GaussianPSF:
    """Pixel-integrated 2-D Gaussian spot.

    Parameters
    ----------
    sigma_px
        In-focus standard deviation in pixels.
    rayleigh_um
        Defocus at which the width has grown by √2 (Gaussian-beam model);
        ``inf`` disables defocus.
    """

    sigma_px: float
    rayleigh_um: float = math.inf

    @classmethod
    def from_optics(cls, optics: Optics) -> GaussianPSF:
        """Gaussian matched to the optics' Airy spot; z_R = n λ / (π NA²) · 2."""
        sigma = optics.gaussian_sigma_um / optics.pixel_size_um
        z_r = (
            2.0
            * optics.medium_index
            * optics.wavelength_um
            / (math.pi * optics.numerical_aperture**2)
        )
        return cls(sigma_px=sigma, rayleigh_um=z_r)

    def sigma_at(self, z_um: FloatArray) -> FloatArray:
        """Spot width (px) at defocus z."""
        return self.sigma_px * np.sqrt(1.0 + (np.asarray(z_um) / self.rayleigh_um) ** 2)

    def render(
        self,
        x: FloatArray,
        y: FloatArray,
        z_um: FloatArray,
        photons: FloatArray,
        shape: tuple[int, int],
    ) -> Rendered:
        """Render emitters; see :class:`PSF`."""
        if len(x) == 0:
            return _empty(shape)
        sigma = self.sigma_at(z_um)
        hw = math.ceil(4.0 * float(sigma.max())) + 1
        cols, dx = _window_indices(np.asarray(x, float), hw)
        rows, dy = _window_indices(np.asarray(y, float), hw)
        s = (np.sqrt(2.0) * sigma)[:, None]
        ex = 0.5 * (special.erf((dx + 0.5) / s) - special.erf((dx - 0.5) / s))
        ey = 0.5 * (special.erf((dy + 0.5) / s) - special.erf((dy - 0.5) / s))
        ex /= ex.sum(axis=1, keepdims=True)
        ey /= ey.sum(axis=1, keepdims=True)
        n = np.asarray(photons, float)
        patches = ey[:, :, None] * ex[:, None, :] * n[:, None, None]
        peak = ex.max(axis=1) * ey.max(axis=1) * n
        return Rendered(_scatter_patches(patches, rows, cols, shape), peak)


def _supersampled_render(
    density: _Density,
    x: FloatArray,
    y: FloatArray,
    z_um: FloatArray,
    photons: FloatArray,
    shape: tuple[int, int],
    half_width: int,
    supersample: int,
) -> Rendered:
    """Integrate a continuous intensity over pixels by supersampling, then normalise."""
    if len(x) == 0:
        return _empty(shape)
    s = supersample
    sub = (np.arange(s) + 0.5) / s - 0.5  # sub-pixel sample offsets
    cols, dx = _window_indices(np.asarray(x, float), half_width)
    rows, dy = _window_indices(np.asarray(y, float), half_width)
    n_w = 2 * half_width + 1
    dxs = (dx[:, :, None] + sub[None, None, :]).reshape(len(x), n_w * s)
    dys = (dy[:, :, None] + sub[None, None, :]).reshape(len(x), n_w * s)
    dens = density(dxs[:, None, :], dys[:, :, None], np.asarray(z_um, float))
    patches = dens.reshape(len(x), n_w, s, n_w, s).sum(axis=(2, 4))
    patches /= patches.sum(axis=(1, 2), keepdims=True)
    n = np.asarray(photons, float)
    patches *= n[:, None, None]
    peak = patches.reshape(len(x), -1).max(axis=1)
    return Rendered(_scatter_patches(patches, rows, cols, shape), peak)


class _Density(Protocol):
    def __call__(self, dx: FloatArray, dy: FloatArray, z_um: FloatArray) -> FloatArray: ...


def debye_radial_profile(
    r_um: FloatArray, z_um: FloatArray, optics: Optics, n_rho: int = 256
) -> FloatArray:
    """Scalar Debye intensity I(z, r) of a point source, defocused by z in the medium.

    ``I ∝ |∫₀¹ J₀(k NA r ρ) exp(i k z √(n² − NA² ρ²)) ρ dρ|²``; at z = 0 this is the
    Airy pattern with its first zero at 0.61 λ/NA. The NA is capped just below the
    medium index for the defocus phase (supercritical light does not propagate).
    """
    k = 2.0 * math.pi / optics.wavelength_um
    na = optics.numerical_aperture
    rho = (np.arange(n_rho) + 0.5) / n_rho
    n_med = max(optics.medium_index, na * 1.0001)
    kz = k * np.sqrt(n_med**2 - (na * rho) ** 2)  # (n_rho,)
    bessel = special.j0(k * na * np.asarray(r_um)[:, None] * rho[None, :])  # (n_r, n_rho)
    phase = np.exp(1j * np.asarray(z_um)[:, None] * kz[None, :])  # (n_z, n_rho)
    amp = (phase * rho[None, :]) @ bessel.T / n_rho  # (n_z, n_r)
    out: FloatArray = np.abs(amp) ** 2
    return out


@dataclass(frozen=True)
class RadialTablePSF:
    """A radially symmetric PSF tabulated on a (z, r) grid and interpolated bilinearly."""

    table: FloatArray  # (n_z, n_r), intensity per µm² up to a constant
    z_grid_um: FloatArray
    r_step_px: float
    half_width: int
    supersample: int = 3

    @classmethod
    def airy(cls, optics: Optics, z_range_um: tuple[float, float] = (0.0, 0.0)) -> RadialTablePSF:
        """Scalar Debye (Airy in focus) PSF for these optics."""
        hw, z_grid, r_px = _table_grid(optics, z_range_um)
        table = debye_radial_profile(r_px * optics.pixel_size_um, z_grid, optics)
        return cls(table, z_grid, float(r_px[1] - r_px[0]), hw)

    @classmethod
    def vectorial(
        cls, optics: Optics, z_range_um: tuple[float, float] = (0.0, 0.0)
    ) -> RadialTablePSF:
        """Vectorial Gibson–Lanni PSF (psfmodels, Aguet et al. 2009)."""
        import psfmodels

        hw, z_grid, r_px = _table_grid(optics, z_range_um)
        os_ = 8
        nx = 2 * math.ceil(r_px[-1] * os_) + 1
        params = {
            "NA": optics.numerical_aperture,
            "ni": optics.immersion_index,
            "ni0": optics.immersion_index,
            "ns": optics.medium_index,
        }
        vol = psfmodels.vectorial_psf(  # type: ignore[no-untyped-call]
            zv=z_grid,
            nx=nx,
            dxy=optics.pixel_size_um / os_,
            pz=0.0,
            wvl=optics.wavelength_um,
            params=params,
            normalize=False,
        )
        vol = np.atleast_3d(vol).reshape(len(z_grid), nx, nx)
        c = nx // 2
        profile_r = np.arange(c + 1) / os_
        table = np.stack([np.interp(r_px, profile_r, vol[i, c, c:]) for i in range(len(z_grid))])
        return cls(table, z_grid, float(r_px[1] - r_px[0]), hw)

    def density(self, dx: FloatArray, dy: FloatArray, z_um: FloatArray) -> FloatArray:
        """Interpolated intensity at offsets (px) for each emitter's z."""
        r = np.hypot(dx, dy) / self.r_step_px
        nz, nr = self.table.shape
        if nz > 1:
            zf = np.interp(z_um, self.z_grid_um, np.arange(nz, dtype=float))
        else:
            zf = np.zeros_like(z_um)
        z0 = np.clip(np.floor(zf).astype(np.int64), 0, max(nz - 2, 0))
        wz = (zf - z0)[:, None, None] if nz > 1 else np.zeros((len(zf), 1, 1))
        r0 = np.clip(np.floor(r).astype(np.int64), 0, nr - 2)
        wr = np.clip(r - r0, 0.0, 1.0)
        z0b = z0[:, None, None]
        z1b = np.minimum(z0b + 1, nz - 1)
        t = self.table
        lo = t[z0b, r0] * (1 - wr) + t[z0b, r0 + 1] * wr
        hi = t[z1b, r0] * (1 - wr) + t[z1b, r0 + 1] * wr
        out: FloatArray = lo * (1 - wz) + hi * wz
        return out

    def render(
        self,
        x: FloatArray,
        y: FloatArray,
        z_um: FloatArray,
        photons: FloatArray,
        shape: tuple[int, int],
    ) -> Rendered:
        """Render emitters; see :class:`PSF`."""
        return _supersampled_render(
            self.density, x, y, z_um, photons, shape, self.half_width, self.supersample
        )


def _table_grid(
    optics: Optics, z_range_um: tuple[float, float]
) -> tuple[int, FloatArray, FloatArray]:
    """Window half-width (3.5 Airy rings), z grid (40 nm) and radial grid (0.05 px)."""
    ring_px = 0.61 * optics.wavelength_um / optics.numerical_aperture / optics.pixel_size_um
    z_lo, z_hi = z_range_um
    defocus_growth = max(abs(z_lo), abs(z_hi)) * optics.numerical_aperture / optics.pixel_size_um
    hw = math.ceil(3.5 * ring_px + 0.6 * defocus_growth) + 1
    n_z = max(1, math.ceil((z_hi - z_lo) / 0.04) + 1)
    z_grid = np.linspace(z_lo, z_hi, n_z) if n_z > 1 else np.array([z_lo])
    r_px = np.arange(0.0, hw * math.sqrt(2.0) + 2.0, 0.05)
    return hw, z_grid, r_px


@dataclass(frozen=True)
class PupilPSF:
    """Scalar PSF from a sampled pupil with defocus and Zernike aberrations.

    The field at each sub-pixel point is the direct Fourier sum over the pupil
    (separable, evaluated only where needed). Tables are built per z on a grid and
    interpolated; asymmetric aberrations (astigmatism, coma) are kept.
    """

    optics: Optics
    z_grid_um: FloatArray
    oversample: int = 4
    n_pupil: int = 64
    half_width: int = field(init=False)

    def __post_init__(self) -> None:
        hw, _, _ = _table_grid(
            self.optics, (float(self.z_grid_um.min()), float(self.z_grid_um.max()))
        )
        object.__setattr__(self, "half_width", hw)

    @classmethod
    def from_optics(cls, optics: Optics, z_range_um: tuple[float, float] = (0.0, 0.0)) -> PupilPSF:
        """Pupil PSF over a z range (40 nm steps)."""
        _, z_grid, _ = _table_grid(optics, z_range_um)
        return cls(optics, z_grid)

    @cached_property
    def table(self) -> FloatArray:
        """Intensity on the oversampled grid, shape (n_z, n, n)."""
        o = self.optics
        m = self.n_pupil
        u = (np.arange(m) + 0.5) / m * 2.0 - 1.0
        ux, uy = np.meshgrid(u, u)
        rho = np.hypot(ux, uy)
        theta = np.arctan2(uy, ux)
        inside = rho <= 1.0
        aberr = np.zeros_like(rho)
        for term in o.zernike:
            aberr += term.rms_waves * zernike_noll(term.noll, np.minimum(rho, 1.0), theta)
        k = 2.0 * math.pi / o.wavelength_um
        n_med = max(o.medium_index, o.numerical_aperture * 1.0001)
        kz = k * np.sqrt(np.maximum(n_med**2 - (o.numerical_aperture * rho) ** 2, 0.0))
        n_out = (2 * self.half_width + 1) * self.oversample + 1
        pts_px = (np.arange(n_out) - n_out // 2) / self.oversample
        f = o.numerical_aperture / o.wavelength_um * o.pixel_size_um  # cycles per px at ρ = 1
        kern = np.exp(2j * math.pi * f * pts_px[:, None] * u[None, :])  # (n_out, m)
        out = np.empty((len(self.z_grid_um), n_out, n_out))
        for i, z in enumerate(self.z_grid_um):
            pupil = np.where(inside, np.exp(1j * (2 * math.pi * aberr + kz * z)), 0.0)
            amp = kern @ pupil @ kern.T  # rows = y, cols = x
            out[i] = np.abs(amp) ** 2
        return out

    def density(self, dx: FloatArray, dy: FloatArray, z_um: FloatArray) -> FloatArray:
        """Intensity at offsets (px) for each emitter's z (nearest z, bilinear in x, y)."""
        t = self.table
        c = t.shape[1] // 2
        iz = np.rint(np.interp(z_um, self.z_grid_um, np.arange(len(self.z_grid_um)))).astype(int)
        fx = np.clip(dx * self.oversample + c, 0, t.shape[2] - 1.001)
        fy = np.clip(dy * self.oversample + c, 0, t.shape[1] - 1.001)
        fx, fy = np.broadcast_arrays(fx, fy)
        x0 = np.floor(fx).astype(int)
        y0 = np.floor(fy).astype(int)
        wx = fx - x0
        wy = fy - y0
        izb = iz[:, None, None]
        out: FloatArray = (
            t[izb, y0, x0] * (1 - wx) * (1 - wy)
            + t[izb, y0, x0 + 1] * wx * (1 - wy)
            + t[izb, y0 + 1, x0] * (1 - wx) * wy
            + t[izb, y0 + 1, x0 + 1] * wx * wy
        )
        return out

    def render(
        self,
        x: FloatArray,
        y: FloatArray,
        z_um: FloatArray,
        photons: FloatArray,
        shape: tuple[int, int],
    ) -> Rendered:
        """Render emitters; see :class:`PSF`."""
        return _supersampled_render(self.density, x, y, z_um, photons, shape, self.half_width, 2)


def psf_from_optics(optics: Optics, z_range_um: tuple[float, float] = (0.0, 0.0)) -> PSF:
    """Build the PSF model named by ``optics.psf`` for emitters within ``z_range_um``."""
    if optics.psf == "gaussian":
        return GaussianPSF.from_optics(optics)
    if optics.psf == "airy":
        return RadialTablePSF.airy(optics, z_range_um)
    if optics.psf == "vectorial":
        return RadialTablePSF.vectorial(optics, z_range_um)
    return PupilPSF.from_optics(optics, z_range_um)
