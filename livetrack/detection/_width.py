"""The PSF width shared by a frame's spots, fitted by Fisher scoring with their positions.

The spots' own blocks (x, y, N, b) are eliminated per spot (Schur complement), so
one compiled loop does the whole frame; it shares :mod:`._newton`'s pixel kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numpy as np
from numba import njit
from numpy.typing import NDArray

from livetrack.detection._newton import _NO_VALID, _own_model, _solve, _terms

FloatArray = NDArray[np.float64]


def _width_py(
    data: FloatArray,
    kx0: FloatArray,
    ky0: FloatArray,
    x: FloatArray,
    y: FloatArray,
    nph: FloatArray,
    b: FloatArray,
    sigma: float,
    iterations: int,
    valid: FloatArray,
    has_valid: bool,
) -> tuple[float, float]:
    """Fisher scoring of one width shared by all spots, with each spot's x, y, N, b.

    Each spot's (x, y, N, b) block is eliminated (Schur complement), so the width's
    step and information are sums over spots; then every spot takes its own step
    given the width's. Returns the width and its Fisher information.
    """
    n, w = data.shape[0], data.shape[2]
    ex, dex, dsx = np.empty(w), np.empty(w), np.empty(w)
    ey, dey, dsy = np.empty(w), np.empty(w), np.empty(w)
    mu = np.empty((w, w))
    ndex = np.empty(w)
    grad = np.empty(5)
    fisher = np.empty((5, 5))
    a4 = np.empty((4, 4))
    r4 = np.empty(4)
    u = np.empty((n, 4))
    v = np.empty((n, 4))
    info = 0.0
    for _ in range(iterations):
        total_g = 0.0
        total_d = 0.0
        for i in range(n):
            _own_model(
                kx0[i], ky0[i], x[i], y[i], sigma, nph[i], b[i], ex, dex, dsx, ey, dey, dsy, mu
            )
            _terms(data, valid, has_valid, i, mu, ex, dex, dsx, ey, dey, dsy, nph[i], ndex,
                   True, grad, fisher)  # fmt: skip
            for k in range(2):  # u = A⁻¹ g, v = A⁻¹ c (A: the spot's own block)
                for r in range(4):
                    r4[r] = grad[r] if k == 0 else fisher[r, 4]
                    for c in range(4):
                        a4[r, c] = fisher[r, c]
                _solve(a4, r4, u[i] if k == 0 else v[i])
            cu = 0.0
            cv = 0.0
            for r in range(4):
                cu += fisher[r, 4] * u[i, r]
                cv += fisher[r, 4] * v[i, r]
            total_g += grad[4] - cu
            total_d += fisher[4, 4] - cv
        if total_d <= 0.0:
            return sigma, 0.0
        info = total_d
        step = min(max(total_g / total_d, -0.15 * sigma), 0.15 * sigma)
        for i in range(n):
            x[i] += min(max(u[i, 0] - v[i, 0] * step, -1.0), 1.0)
            y[i] += min(max(u[i, 1] - v[i, 1] * step, -1.0), 1.0)
            nph[i] = max(nph[i] + u[i, 2] - v[i, 2] * step, 1.0)
            b[i] = max(b[i] + u[i, 3] - v[i, 3] * step, 1e-3)
        sigma += step
        if abs(step) < 1e-4 * sigma:
            break
    return sigma, info


_width = cast(Callable[..., tuple[float, float]], njit(cache=True)(_width_py))


def pooled_width(
    data: FloatArray,
    kx: FloatArray,
    ky: FloatArray,
    x: FloatArray,
    y: FloatArray,
    nph: FloatArray,
    b: FloatArray,
    sigma0: float,
    iterations: int = 8,
    valid: FloatArray | None = None,
) -> tuple[float, float]:
    """Maximum-likelihood PSF width shared by the spots, and its standard error.

    The spots' x, y, N, b (float64 arrays) are updated in place, as by
    :func:`newton`; the standard error is ∞ where the width is not determined.
    """
    for a in (x, y, nph, b):
        if a.dtype != np.float64 or not a.flags.c_contiguous:
            raise TypeError(f"pooled_width updates float64 arrays in place, got {a.dtype}")
    sigma, info = _width(
        np.ascontiguousarray(data, np.float64),
        np.ascontiguousarray(kx[:, 0], np.float64),
        np.ascontiguousarray(ky[:, 0], np.float64),
        x, y, nph, b, float(sigma0), int(iterations),
        np.ascontiguousarray(valid, np.float64) if valid is not None else _NO_VALID,
        valid is not None,
    )  # fmt: skip
    return float(sigma), (1.0 / math.sqrt(info) if info > 0 else math.inf)
