"""How the particles of a movie look, next to what a model was trained for: width, polarity.

The frame's autocorrelation peaks at lag 0 with the width of its spots (√2 × theirs,
for Gaussian spots); white noise adds to lag 0 alone, so lag 0 is extrapolated from
lags 1 and 2. Read on the first frame, it tells a fluorescence model's user that the
particles are far wider (large beads, rings) or narrower than what it knows.

Polarity: after a light smoothing, the pixels more than 3 noise σ above the median
against those as far below it. Fluorescent particles only rise above a dark
background, absorbing ones only sink below a bright one, brightfield and holographic
images do both (rings).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from livetrack.artifact import Polarity
from livetrack.detection.normalise import without_ramp

#: the autocorrelation's half-maximum radius over a Gaussian spot's σ (1.665), and what
#: the spots' own fitted light adds on simulated frames (the read is ~18 % wide there)
_HALF_MAX_PER_SIGMA = 1.665 * 1.18
#: widths the detector handles (off-config checks: 0.75–1.35 × the card's), with margin
WIDTH_RANGE = (0.6, 1.5)


def apparent_sigma(frame: NDArray[Any], max_lag: int = 40) -> float:
    """The σ (px) a Gaussian spot would need to give this frame's autocorrelation width."""
    f = np.asarray(frame, np.float64)
    # less uneven illumination, whose autocorrelation is as wide as the frame: a 30 %
    # ramp across 512 px read σ 20 px for spots of 3.3
    f = without_ramp(f - np.median(f))
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


#: excess beyond this many σ counts as a particle's (noise alone: ~8e-4 per pixel)
_TAIL_SIGMA = 3.0
#: a side holding this share of the excess decides the polarity
_ONE_SIDED = 0.85
_MEANING = {
    "bright-on-dark": "bright particles on a dark background",
    "dark-on-bright": "dark particles on a bright background",
    "interference": "interference patterns (darker and brighter) on a bright background",
}


def apparent_polarity(frame: NDArray[Any]) -> Polarity | None:
    """How particles stand out in this frame (None: nothing stands out from the noise)."""
    f = np.asarray(frame, np.float64)
    # lightly smoothed, less the slow background (uneven illumination is no particle)
    s = ndimage.gaussian_filter(f, 1.0) - ndimage.gaussian_filter(f, 12.0)
    med = float(np.median(s))
    scale = 1.4826 * float(np.median(np.abs(s - med)))
    if not scale > 0:
        return None
    z = (s - med) / scale
    above = float(np.clip(z - _TAIL_SIGMA, 0, None).sum())
    below = float(np.clip(-z - _TAIL_SIGMA, 0, None).sum())
    if above + below < 0.01 * z.size:  # about 13× what noise alone gives
        return None
    share = above / (above + below)
    if share >= _ONE_SIDED:
        return "bright-on-dark"
    if share <= 1 - _ONE_SIDED:
        return "dark-on-bright"
    return "interference"


def movie_polarity(frames: NDArray[Any], first: int = 8) -> Polarity | None:
    """The polarity most of the ``first`` frames show (None: none shows any).

    A movie's first frame may be blank or dark (a shutter opening, a camera settling),
    or show nothing standing out by chance: it alone does not decide.
    """
    seen: list[Polarity] = []
    for f in frames[:first]:
        if (p := apparent_polarity(f)) is not None:
            seen.append(p)
    return Counter(seen).most_common(1)[0][0] if seen else None


_FLIPPED: dict[str, Polarity] = {
    "bright-on-dark": "dark-on-bright",
    "dark-on-bright": "bright-on-dark",
}
_WHAT_TO_DO = {
    ("dark-on-bright", "bright-on-dark"): "add --invert",
    ("dark-on-bright", "interference"): "try --invert with a fluorescence model (the default)",
    ("bright-on-dark", "interference"): "use a fluorescence model (the default)",
    ("interference", "bright-on-dark"): (
        "use a brightfield model (--model brightfield-colloid-detector), or --classical"
    ),
}


def polarity_warning(frame: NDArray[Any], card: Any, invert: bool) -> str | None:
    """A warning when the movie's particles stand out otherwise than the model expects.

    ``frame``: the movie's own (before ``--invert``, which ``invert`` says is asked for).
    """
    seen = apparent_polarity(frame)
    if seen is None:
        return None
    after = _FLIPPED.get(seen, seen) if invert else seen
    want = card.expects.particle_polarity
    if after == want:
        return None
    looks = f"the particles look like {_MEANING[seen]}"
    expects = f"the model '{card.name}' ({card.expects.modality}) expects {_MEANING[want]}"
    if invert:
        undo = ": leave --invert out" if seen == want else ""
        return f"{looks}; --invert makes them {_MEANING[after]}, but {expects}{undo}"
    todo = _WHAT_TO_DO.get((seen, want))
    return f"{looks}, but {expects}" + (f": {todo}" if todo else "")
