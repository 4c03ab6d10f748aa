"""Lorenz–Mie scattering of a plane wave by a sphere, and in-line holograms.

Written from Bohren & Huffman, *Absorption and Scattering of Light by Small
Particles* (1983), ch. 4, with Wiscombe's (1980) number of terms and a downward
recurrence for the logarithmic derivative. Conventions follow pylorenzmie (Lee et
al., Opt. Express 2007), against which the tests validate it: a plane wave
polarised along x propagates along −z; a sphere at height z_p > 0 above the focal
plane forms its hologram ``|x̂ + E_s|²`` there; positions in pixels, lengths in µm.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

ComplexArray = NDArray[np.complex128]
FloatArray = NDArray[np.float64]


def mie_coefficients(
    radius_um: float, n_particle: float, n_medium: float, wavelength_um: float
) -> ComplexArray:
    """Mie coefficients a_n, b_n of a homogeneous sphere.

    Returns
    -------
    numpy.ndarray
        Shape (n_stop + 1, 2); row n holds (a_n, b_n); row 0 is zero.
    """
    k = 2.0 * math.pi * n_medium / wavelength_um
    x = k * radius_um
    m = complex(n_particle) / n_medium
    n_stop = math.floor(x + 4.05 * x ** (1.0 / 3.0) + 2.0)
    mx = m * x
    n_mx = int(max(n_stop, abs(mx))) + 16
    d = np.zeros(n_mx + 1, dtype=complex)
    for n in range(n_mx, 0, -1):
        d[n - 1] = n / mx - 1.0 / (d[n] + n / mx)
    ab = np.zeros((n_stop + 1, 2), dtype=complex)
    psi_prev, psi = math.cos(x), math.sin(x)
    chi_prev, chi = -math.sin(x), math.cos(x)
    xi = complex(psi, -chi)
    for n in range(1, n_stop + 1):
        psi_next = (2 * n - 1) * psi / x - psi_prev
        chi_next = (2 * n - 1) * chi / x - chi_prev
        xi_next = complex(psi_next, -chi_next)
        da = d[n] / m + n / x
        db = d[n] * m + n / x
        ab[n, 0] = (da * psi_next - psi) / (da * xi_next - xi)
        ab[n, 1] = (db * psi_next - psi) / (db * xi_next - xi)
        psi_prev, psi = psi, psi_next
        chi_prev, chi = chi, chi_next
        xi = xi_next
    return ab


def _series(
    ab: ComplexArray, kr: FloatArray, cos_t: FloatArray, sgn: complex | ComplexArray
) -> tuple[ComplexArray, ComplexArray, ComplexArray]:
    """The sums over multipoles that depend on the distance and polar angle only.

    E_s = Σ E_n (i a_n N_e1n − b_n M_o1n), BH eq. 4.45, with the angular factors
    cos φ, sin φ and 1/kr left out: they are applied by the callers.
    """
    sin_kr, cos_kr = np.sin(kr), np.cos(kr)
    xi_prev = cos_kr + sgn * sin_kr  # ξ_{-1}
    xi = sin_kr - sgn * cos_kr  # ξ_0
    pi_prev = np.zeros_like(kr)
    pi_n = np.ones_like(kr)
    s_r = np.zeros(kr.shape, complex)
    s_t = np.zeros(kr.shape, complex)
    s_p = np.zeros(kr.shape, complex)
    for n in range(1, ab.shape[0]):
        tau_n = n * cos_t * pi_n - (n + 1) * pi_prev
        xi_n = (2 * n - 1) * xi / kr - xi_prev
        dxi_n = xi - n * xi_n / kr  # ξ_n'
        en = (1j**n) * (2 * n + 1) / (n * (n + 1))
        a = 1j * en * ab[n, 0]
        b = en * ab[n, 1]
        s_r += a * (n * (n + 1)) * pi_n * xi_n
        s_t += a * tau_n * dxi_n - b * pi_n * xi_n
        s_p += -a * pi_n * dxi_n + b * tau_n * xi_n
        pi_prev, pi_n = pi_n, ((2 * n + 1) * cos_t * pi_n - (n + 1) * pi_prev) / n
        xi_prev, xi = xi, xi_n
    return s_r, s_t, s_p


def scattered_field(
    ab: ComplexArray,
    dx_px: FloatArray,
    dy_px: FloatArray,
    z_px: float,
    pixel_um: float,
    n_medium: float,
    wavelength_um: float,
) -> ComplexArray:
    """Scattered field (Cartesian, shape (3, *dx.shape)) in the focal plane.

    ``dx, dy`` are offsets from the sphere's centre in pixels; ``z_px`` its height
    above the focal plane in pixels. Includes the incident wave's phase at the
    sphere, exp(−i k z_p), so fields of several spheres superpose.
    """
    k = 2.0 * math.pi * n_medium / wavelength_um * pixel_um  # per pixel
    kx = k * dx_px
    ky = k * dy_px
    kz = np.full_like(kx, k * z_px)
    krho = np.hypot(kx, ky)
    kr = np.hypot(krho, kz)
    cos_t = kz / kr
    sin_t = krho / kr
    on_axis = krho == 0
    cos_p = np.divide(kx, krho, out=np.ones_like(kx), where=~on_axis)
    sin_p = np.divide(ky, krho, out=np.zeros_like(ky), where=~on_axis)
    # outgoing (z > 0) or, seen from the camera, converging (z < 0) spherical waves
    e_r, e_t, e_p = _series(ab, kr, cos_t, 1j * np.sign(kz))
    e_r *= cos_p * sin_t / kr**2
    e_t *= cos_p / kr
    e_p *= sin_p / kr
    out = np.empty((3, *kr.shape), complex)
    out[0] = e_r * sin_t * cos_p + e_t * cos_t * cos_p - e_p * sin_p
    out[1] = e_r * sin_t * sin_p + e_t * cos_t * sin_p + e_p * cos_p
    out[2] = e_r * cos_t - e_t * sin_t
    out *= np.exp(-1j * k * z_px)
    return out


def sphere_hologram(
    dx_px: FloatArray,
    dy_px: FloatArray,
    z_px: float,
    radius_um: float,
    n_particle: float,
    *,
    pixel_um: float,
    n_medium: float,
    wavelength_um: float,
    step_px: float = 0.1,
) -> FloatArray:
    """One sphere's normalised hologram at offsets ``dx, dy`` (pixels, any shape).

    Fast, for fitting: the multipole sums depend on the distance from the axis
    only, so they are computed on a radial grid of ``step_px`` and interpolated
    (linearly, with the spherical wave's phase taken out, so that what is
    interpolated varies slowly); the azimuthal factors are exact. Agrees with
    :func:`hologram` to ~1e-4 of the background at 0.1 px, 3–6× faster on a
    96 px crop.
    """
    dx = np.asarray(dx_px, np.float64)
    dy = np.asarray(dy_px, np.float64)
    rho = np.hypot(dx, dy)
    n_grid = math.ceil(float(rho.max(initial=0.0)) / step_px) + 2
    k = 2.0 * math.pi * n_medium / wavelength_um * pixel_um  # per pixel
    z = float(z_px)
    outside = 1.01 * radius_um / pixel_um  # the field is only valid outside the sphere
    if abs(z) < outside:
        z = math.copysign(outside, z)
    kz = k * z
    s = math.copysign(1.0, kz)
    kr = np.hypot(k * step_px * np.arange(n_grid), kz)
    cos_t = kz / kr
    sin_t = np.sqrt(np.clip(1.0 - cos_t**2, 0.0, None))
    s_r, s_t, s_p = _series(
        mie_coefficients(radius_um, n_particle, n_medium, wavelength_um), kr, cos_t, 1j * s
    )
    # radial parts of E_x = cos²φ A − sin²φ B, E_y = cosφ sinφ (A + B), E_z = cosφ C,
    # demodulated by the outgoing wave exp(i s (kr − |kz|))
    table = np.stack(
        [
            s_r * sin_t**2 / kr**2 + s_t * cos_t / kr,
            s_p / kr,
            s_r * sin_t * cos_t / kr**2 - s_t * sin_t / kr,
        ]
    ) * np.exp(-1j * (kz + s * (kr - abs(kz))))
    pos = rho / step_px
    i = np.minimum(pos.astype(np.intp), n_grid - 2)
    f = pos - i
    a, b, c = (table[:, i] * (1.0 - f) + table[:, i + 1] * f) * np.exp(
        1j * s * (np.hypot(k * rho, kz) - abs(kz))
    )
    safe = np.where(rho > 0, rho, 1.0)
    cos_p = np.where(rho > 0, dx / safe, 1.0)
    sin_p = dy / safe
    ex = cos_p**2 * a - sin_p**2 * b
    ey = cos_p * sin_p * (a + b)
    ez = cos_p * c
    out: FloatArray = (1.0 + ex.real) ** 2 + ex.imag**2 + np.abs(ey) ** 2 + np.abs(ez) ** 2
    return out


def hologram(
    shape: tuple[int, int],
    x_px: FloatArray,
    y_px: FloatArray,
    z_px: FloatArray,
    radius_um: FloatArray,
    n_particle: FloatArray,
    *,
    pixel_um: float,
    n_medium: float,
    wavelength_um: float,
    patch_half_width: int | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Normalised in-line hologram of several spheres (background = 1).

    Each sphere's field is computed on a square patch around it (``None``: the
    whole frame), the fields superpose, and the intensity interferes them with the
    incident wave. Returns the hologram and, per sphere, the largest deviation of
    its own single-sphere hologram from 1 (its feature contrast, for the SNR).
    A sphere whose centre is closer to the plane than its radius (a focus moved
    into it) is rendered as if just outside it: the field is only valid outside.
    """
    h, w = shape
    field = np.zeros((3, h, w), complex)
    contrast = np.zeros(len(x_px))
    for i in range(len(x_px)):
        if patch_half_width is None:
            r0, r1, c0, c1 = 0, h, 0, w
        else:
            cx, cy = round(float(x_px[i])), round(float(y_px[i]))
            r0, r1 = max(cy - patch_half_width, 0), min(cy + patch_half_width + 1, h)
            c0, c1 = max(cx - patch_half_width, 0), min(cx + patch_half_width + 1, w)
            if r0 >= r1 or c0 >= c1:
                continue
        cols = np.arange(c0, c1) - x_px[i]
        rows = np.arange(r0, r1) - y_px[i]
        dx, dy = np.meshgrid(cols.astype(float), rows.astype(float))
        ab = mie_coefficients(float(radius_um[i]), float(n_particle[i]), n_medium, wavelength_um)
        z = float(z_px[i])
        outside = 1.01 * float(radius_um[i]) / pixel_um
        if abs(z) < outside:
            z = math.copysign(outside, z)
        es = scattered_field(ab, dx, dy, z, pixel_um, n_medium, wavelength_um)
        field[:, r0:r1, c0:c1] += es
        single = np.abs(1 + es[0]) ** 2 + np.abs(es[1]) ** 2 + np.abs(es[2]) ** 2
        contrast[i] = float(np.max(np.abs(single - 1.0)))
    field[0] += 1.0
    intensity: FloatArray = np.sum(field.real**2 + field.imag**2, axis=0)
    return intensity, contrast
