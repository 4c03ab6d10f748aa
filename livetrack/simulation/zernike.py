"""Zernike polynomials with Noll's single index, normalised to unit RMS on the disk."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def noll_to_nm(j: int) -> tuple[int, int]:
    """Radial order n and signed azimuthal frequency m of Noll index j (j ≥ 1)."""
    if j < 1:
        raise ValueError(f"Noll index must be >= 1, got {j}")
    n = 0
    while (n + 1) * (n + 2) // 2 < j:
        n += 1
    k = j - n * (n + 1) // 2 - 1  # position within order n
    m_abs = [m for m in range(n % 2, n + 1, 2) for _ in ((0,) if m == 0 else (0, 1))][k]
    sign = 1 if j % 2 == 0 else -1
    return n, (m_abs if m_abs == 0 else sign * m_abs)


def zernike_noll(
    j: int, rho: NDArray[np.float64], theta: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Evaluate Z_j(ρ, θ), RMS-normalised over the unit disk (Noll 1976)."""
    n, m = noll_to_nm(j)
    ma = abs(m)
    radial = np.zeros_like(rho)
    for s in range((n - ma) // 2 + 1):
        c = (
            (-1) ** s
            * math.factorial(n - s)
            / (
                math.factorial(s)
                * math.factorial((n + ma) // 2 - s)
                * math.factorial((n - ma) // 2 - s)
            )
        )
        radial += c * rho ** (n - 2 * s)
    if m == 0:
        out: NDArray[np.float64] = math.sqrt(n + 1) * radial
    elif m > 0:
        out = math.sqrt(2 * (n + 1)) * radial * np.cos(ma * theta)
    else:
        out = math.sqrt(2 * (n + 1)) * radial * np.sin(ma * theta)
    return out
