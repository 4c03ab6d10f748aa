"""What the simulator needs, read from a few frames of the user's own movie.

Bright spots (fluorescence, or anything that images as a bright blob on a dark
background): candidates are the local maxima of a band-passed frame well above its
noise; the isolated ones are fitted with a pixel-integrated Gaussian on a constant
background (width, position, total signal all free). From those fits and the frames:

- the PSF width (the median fitted σ) and its spread;
- the camera: offset and gain from the background pixels' mean and temporal variance
  (``livetrack.detection.camera``, as ``process`` reads it); the gain needs background
  levels that differ. When the data cannot tell it (a flat field, an 8-bit video), the
  movie is described in *effective* electrons: a background of
  :data:`EFFECTIVE_BACKGROUND_E` (more where the background ramps steeply, so the ramp
  stays below :data:`MAX_EFFECTIVE_GRADIENT` of it) whose Poisson and read noise is the
  measured noise, and spots with the measured peak SNR — the level, the noise, the ramp
  and the SNR are the movie's, which is what a detector that normalises its input sees;
- the particles' signal (photons) and the background (photons/px) with its gradient;
- the density, and the frame-to-frame step (``livetrack.linking.from_data``).

Dark spots (absorbing particles on a bright background) are measured on the movie
inverted about each frame's median (:func:`inverted`), as the adapted model will see
them; the camera is read from the movie as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, optimize, special
from scipy.spatial import cKDTree

from livetrack.detection.appearance import apparent_sigma, movie_polarity
from livetrack.detection.camera import estimate_camera
from livetrack.linking.from_data import measure_motion

#: candidates must stand this many noise σ above the band-passed frame
PEAK_SIGMAS = 5.0
#: fits a measurement needs; fewer and ``adapt`` says what it found instead
MIN_SPOTS = 12
#: fits kept (the brightest isolated candidates first): bounds the time
MAX_FITS = 600
#: the background, in effective electrons, of a movie whose gain cannot be read
EFFECTIVE_BACKGROUND_E = 20.0
#: the steepest background ramp (relative, across the field) an effective description
#: gives: a steeper one is described on a higher background (training randomises up
#: to 1.5× it, and the simulator takes ramps below 1)
MAX_EFFECTIVE_GRADIENT = 0.6


class AdaptError(ValueError):
    """A movie ``adapt`` cannot fit, with what was found in it."""


@dataclass(frozen=True)
class Measured:
    """The movie's optics, camera and sample as the simulator describes them."""

    frames: int
    shape: tuple[int, int]
    polarity: str | None
    sigma_px: float
    sigma_spread: float  # relative (robust) spread of the fitted widths
    spots: int  # isolated spots fitted
    photons: tuple[float, float, float]  # 10th, 50th, 90th percentile per spot
    background_photons: float
    gradient: tuple[float, float]  # relative change across the field, x and y
    offset_adu: float
    gain_adu_per_e: float
    camera_from: str  # where offset and gain came from: data, or effective (see above)
    noise_adu: float  # the background's noise (σ per pixel)
    peak_snr: tuple[float, float, float]  # spots' central pixel over the noise, percentiles
    per_frame: float  # candidates per frame
    step_px: float | None  # per-axis frame-to-frame step (None: too few pairs)

    def as_record(self) -> dict[str, Any]:
        """Plain numbers for the card and the report."""
        out = asdict(self)
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def _band_pass(frame: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    smooth = ndimage.gaussian_filter(frame, sigma)
    wide = ndimage.uniform_filter(frame, int(8 * sigma) | 1)
    out: NDArray[np.float64] = smooth - wide
    return out


def candidates(frame: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    """(N, 3): x, y, band-passed height of the local maxima well above the noise."""
    bp = _band_pass(frame, sigma)
    noise = 1.4826 * np.median(np.abs(bp - np.median(bp))) + 1e-12
    size = 2 * int(np.ceil(1.5 * sigma)) + 1
    peaks = (bp == ndimage.maximum_filter(bp, size)) & (bp > PEAK_SIGMAS * noise)
    y, x = np.nonzero(peaks)
    return np.column_stack([x, y, bp[y, x]]).astype(np.float64)


def spot_model(p: NDArray[np.float64], xx: NDArray[np.float64], yy: NDArray[np.float64]) -> Any:
    """A pixel-integrated Gaussian of total ``n`` on background ``b``: the simulator's spot."""
    x0, y0, s, n, b = p
    r = np.sqrt(2.0) * s
    ex = 0.5 * (special.erf((xx + 0.5 - x0) / r) - special.erf((xx - 0.5 - x0) / r))
    ey = 0.5 * (special.erf((yy + 0.5 - y0) / r) - special.erf((yy - 0.5 - y0) / r))
    return b + n * ex * ey


def fit_spot(
    frame: NDArray[np.float64], x: float, y: float, sigma: float
) -> tuple[float, float, float, float, float] | None:
    """x, y, σ, total signal and background (ADU) of the spot near (x, y); None: no fit."""
    r = int(np.ceil(3.0 * sigma)) + 1
    xi, yi = round(x), round(y)
    h, w = frame.shape
    if xi < r or yi < r or xi >= w - r or yi >= h - r:
        return None
    crop = frame[yi - r : yi + r + 1, xi - r : xi + r + 1]
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    b0 = float(np.median(np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])))
    p0 = np.array([0.0, 0.0, sigma, max(float(crop.sum() - b0 * crop.size), 1.0), b0])
    lo = [-1.5, -1.5, 0.3, 0.0, -np.inf]
    hi = [1.5, 1.5, 3.0 * sigma, np.inf, np.inf]
    try:
        res = optimize.least_squares(
            lambda p: (spot_model(p, xx, yy) - crop).ravel(), p0, bounds=(lo, hi), x_scale="jac"
        )
    except ValueError:
        return None
    dx, dy, s, n, b = res.x
    if not res.success or n <= 0 or s >= 2.9 * sigma:
        return None
    return xi + dx, yi + dy, float(s), float(n), float(b)


def isolated(c: NDArray[np.float64], distance: float) -> NDArray[np.float64]:
    """The candidates (rows x, y, …) with no other within ``distance`` px."""
    if len(c) < 2:
        return c
    d, _ = cKDTree(c[:, :2]).query(c[:, :2], k=2)
    kept: NDArray[np.float64] = c[d[:, 1] > distance]
    return kept


def _effective_background(ramp_sigmas: float, read2: float) -> float:
    """The effective background (e) that keeps a ramp of ``ramp_sigmas`` noise σ gentle.

    Gentle: across the field at most :data:`MAX_EFFECTIVE_GRADIENT` of the background
    (read noise² ``read2``, e²). The ramp is ``z σ = z √(B + r²)`` electrons;
    ``z √(B + r²) ≤ G B`` solved for B.
    """
    z2, g2 = ramp_sigmas**2, MAX_EFFECTIVE_GRADIENT**2
    steep = (z2 + np.sqrt(z2 * z2 + 4.0 * g2 * z2 * read2)) / (2.0 * g2)
    return float(max(EFFECTIVE_BACKGROUND_E, steep))


def _ramp(frame: NDArray[np.float64]) -> tuple[float, float]:
    """The background's change across the field (ADU), x and y (over its level: ``gradient``)."""
    h, w = frame.shape
    by, bx = max(h // 8, 1), max(w // 8, 1)
    blocks = frame[: h // by * by, : w // bx * bx].reshape(h // by, by, w // bx, bx)
    med = np.median(blocks, axis=(1, 3))
    yy, xx = np.mgrid[0 : med.shape[0], 0 : med.shape[1]].astype(np.float64)
    a = np.column_stack([np.ones(med.size), xx.ravel() / med.shape[1], yy.ravel() / med.shape[0]])
    coef, *_ = np.linalg.lstsq(a, med.ravel(), rcond=None)
    return float(coef[1]), float(coef[2])


def _noise(stack: NDArray[np.float64], found: list[NDArray[np.float64]], r: float) -> float:
    """The background's per-pixel noise σ (ADU): over time and between neighbours.

    The larger of the two: a compressed video can hold its background still from frame
    to frame, and the rounding of integer pixels leaves at least 1/√12.
    """
    free = np.ones(stack.shape[1:], bool)
    for c in found:
        for x, y in c[:, :2].astype(int):
            free[max(y - int(r), 0) : y + int(r) + 1, max(x - int(r), 0) : x + int(r) + 1] = False
    temporal = float(np.median(stack[:, free].std(axis=0, ddof=1))) if len(stack) >= 3 else 0.0
    d = (stack[0][:, 1:] - stack[0][:, :-1])[free[:, 1:] & free[:, :-1]] / np.sqrt(2.0)
    spatial = float(1.4826 * np.median(np.abs(d - np.median(d)))) if len(d) else 0.0
    return max(temporal, spatial, 1.0 / float(np.sqrt(12.0)))


def central_fraction(sigma: float) -> float:
    """The share of a pixel-integrated Gaussian spot's light in its central pixel."""
    return float(special.erf(0.5 / (np.sqrt(2.0) * sigma)) ** 2)


def _fit_isolated(
    stack: NDArray[np.float64], found: list[NDArray[np.float64]], sigma: float
) -> tuple[list[tuple[float, float, float, float, float]], list[float]]:
    """Fits of the brightest isolated candidates (at most MAX_FITS), and their heights."""
    fits, heights = [], []
    for t, c in enumerate(found):
        iso = isolated(c, 4.0 * sigma)
        for x, y, height in iso[np.argsort(-iso[:, 2])][: MAX_FITS // len(stack) + 1]:
            got = fit_spot(stack[t], x, y, sigma)
            if got is not None:
                fits.append(got)
                heights.append(float(height))
    return fits, heights


def inverted(stack: NDArray[np.float64]) -> NDArray[np.float64]:
    """Dark particles made bright: ``2 B − f`` with ``B`` each frame's median (ADU).

    The same as ``e → 2 B − e`` in electrons (the offset stays), as ``process`` inverts
    for a model that takes dark particles (``in_model_camera``).
    """
    out: NDArray[np.float64] = 2.0 * np.median(stack, axis=(1, 2), keepdims=True) - stack
    return out


def measure_movie(frames: NDArray[Any], base_card: Any) -> Measured:
    """Read what the simulator needs from ``frames`` (T, H, W); raise :class:`AdaptError`.

    ``base_card``: the card of the shipped model ``adapt`` starts from; its camera
    stands where the data cannot tell (a movie of one frame, a crowded field).
    """
    stack = np.asarray(frames, np.float64)
    if stack.ndim != 3 or len(stack) == 0:
        raise AdaptError(f"expected frames (T, H, W), got an array of shape {stack.shape}")
    polarity = movie_polarity(stack)
    if polarity == "interference":  # rings: a Gaussian spot would describe them wrongly
        raise AdaptError(
            "the particles show rings (an interference pattern, as in brightfield or "
            "holography): measure_movie measures bright spots; `livetrack adapt` fits rings "
            "with the simulator's Lorenz–Mie optics (livetrack.adapt.rings)"
        )
    # the camera is read from the movie as it is; everything else from the spots as
    # the model will see them
    seen = inverted(stack) if polarity == "dark-on-bright" else stack
    guess = apparent_sigma(seen[0])
    guess = float(np.clip(guess if np.isfinite(guess) else 2.0, 0.7, 8.0))
    found = [candidates(f, guess) for f in seen]
    fits, heights = _fit_isolated(seen, found, guess)
    # particles, not the noise's or a compression's bumps: a fair share of a fitted spot's
    floor = 0.3 * float(np.median(heights)) if heights else np.inf
    per_frame = float(np.mean([np.sum(c[:, 2] >= floor) for c in found]))
    if len(fits) < MIN_SPOTS:
        raise AdaptError(
            f"found {len(fits)} isolated spots in {len(stack)} frames ({per_frame:.1f} "
            f"candidates a frame, apparent width {guess:.1f} px); adapt needs {MIN_SPOTS}: "
            "is this a movie of particles in focus, with more than a few per frame?"
        )
    f = np.asarray(fits)
    # the middle half by signal: the faintest scatter with the noise, the brightest are
    # often two spots too close to be told apart
    lo, hi = np.percentile(f[:, 3], [25, 75])
    middle = f[(f[:, 3] >= lo) & (f[:, 3] <= hi)]
    sigma = float(np.median(middle[:, 2]))
    q25, q75 = np.percentile(middle[:, 2], [25, 75])
    spots = [(c[:, 0], c[:, 1]) for c in found]
    # the camera as `process` reads it; when it cannot tell the gain (a flat
    # background), effective electrons below keep the movie's level, noise and SNR
    expects = base_card.expects.model_copy(update={"psf_sigma_px": sigma})
    cam = estimate_camera(stack, spots, base_card.model_copy(update={"expects": expects}))
    noise = _noise(seen, found, 4.0 * sigma)
    snr = f[:, 3] * central_fraction(sigma) / noise
    level = float(np.median(stack[0]))
    camera_from = f"offset: {cam.offset_from}, gain: {cam.gain_from}"
    qe = base_card.expects.camera_quantum_efficiency
    gain, offset = cam.gain_adu_per_e, cam.offset_adu
    ramp = _ramp(seen[0])
    photons = f[:, 3] / gain / qe
    if cam.gain_from != "data":  # effective electrons: the movie's level, noise and SNR
        read2 = base_card.expects.camera_read_noise_e**2
        background_e = _effective_background(max(map(abs, ramp)) / noise, read2)
        noise_e = float(np.sqrt(background_e + read2))
        gain = noise / noise_e
        offset = level - gain * background_e
        photons = snr * noise_e / central_fraction(sigma) / qe
        camera_from = "effective electrons (the gain cannot be read from this movie)"
    motion = measure_motion(spots, stack.shape[1:]) if len(stack) > 1 else None
    return Measured(
        frames=len(stack),
        shape=(int(stack.shape[1]), int(stack.shape[2])),
        polarity=polarity,
        sigma_px=sigma,
        sigma_spread=float((q75 - q25) / 1.349 / sigma),
        spots=len(f),
        photons=tuple(float(v) for v in np.percentile(photons, [10, 50, 90])),  # type: ignore[arg-type]
        background_photons=max((level - offset) / gain / qe, 0.0) if gain > 0 else 0.0,
        gradient=(ramp[0] / span, ramp[1] / span) if (span := level - offset) > 0 else (0.0, 0.0),
        offset_adu=offset,
        gain_adu_per_e=gain,
        camera_from=camera_from,
        noise_adu=noise,
        peak_snr=tuple(float(v) for v in np.percentile(snr, [10, 50, 90])),  # type: ignore[arg-type]
        per_frame=per_frame,
        step_px=None if motion is None else motion.step_px,
    )
