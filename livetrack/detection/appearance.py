"""How wide the particles of a movie look, next to the PSF a model was trained for.

The frame's autocorrelation peaks at lag 0 with the width of its spots (√2 × theirs,
for Gaussian spots); white noise adds to lag 0 alone, so lag 0 is extrapolated from
lags 1 and 2. Read on the first frame, it tells a fluorescence model's user that the
particles are far wider (large beads, rings) or narrower than what it knows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

#: the autocorrelation's half-maximum radius over a Gaussian spot's σ (1.665), and what
#: the spots' own fitted light adds on simulated frames (the read is ~18 % wide there)
_HALF_MAX_PER_SIGMA = 1.665 * 1.18
#: widths the detector handles (off-config checks: 0.75–1.35 × the card's), with margin
WIDTH_RANGE = (0.6, 1.5)


def apparent_sigma(frame: NDArray[Any], max_lag: int = 40) -> float:
    """The σ (px) a Gaussian spot would need to give this frame's autocorrelation width."""
    f = np.asarray(frame, np.float64)
    f = f - np.median(f)
    ac = np.fft.irfft2(np.abs(np.fft.rfft2(f)) ** 2, s=f.shape)
    h, w = f.shape
    yy, xx = np.meshgrid(np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w, indexing="ij")
    r = np.rint(np.hypot(yy, xx)).astype(int).ravel()
    prof = (np.bincount(r, ac.ravel()) / np.maximum(np.bincount(r), 1))[: max_lag + 1]
    if prof[1] <= 0 or prof[2] <= 0:
        return float("nan")
    peak = prof[1] * (prof[1] / prof[2]) ** (1 / 3)  # Gaussian in r²: lag 0 from 1 and 2
    below = np.nonzero(prof[1:] < 0.5 * peak)[0]
    return float((below[0] + 1 if len(below) else max_lag) / _HALF_MAX_PER_SIGMA)


def width_warning(frame: NDArray[Any], card: Any) -> str | None:
    """A warning when a fluorescence model meets particles far wider or narrower than its PSF."""
    e = card.expects
    if e.modality != "fluorescence":
        return None  # a brightfield or holography card's width is no spot's
    sigma = apparent_sigma(frame)
    ratio = sigma / e.psf_sigma_px
    if not np.isfinite(ratio) or WIDTH_RANGE[0] <= ratio <= WIDTH_RANGE[1]:
        return None
    look = "wider" if ratio > 1 else "narrower"
    return (
        f"the particles look {ratio:.1f}× {look} than the PSF the model '{card.name}' was "
        f"trained for (σ {sigma:.1f} px against {e.psf_sigma_px:.2f}): it may find parts "
        "of them, or miss them; see docs/real-data.md"
    )
