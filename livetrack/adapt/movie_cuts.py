"""The read-out's cuts an adapted model takes from its own movie, after training.

Two things the simulator cannot tell, read by running the fine-tuned detector on the
movie's frames:

- **A fainter population at the noise's level.** Many real samples hold, besides the
  particles, faint spots at the edge of detection (free dye, out-of-focus or
  unspecific fluorescence). A trained detector finds them, a classical tool takes
  them for noise, and a user means the particles. Where the spots' photons fall
  into two populations with a sparse gap between, and the fainter one sits at the
  noise's level (median fitted SNR ≤ :data:`FAINT_SNR`), the card's ``min_photons``
  is set at the gap's bright end, as an expert sets trackpy's ``minmass`` in the gap
  of its mass histogram. Two populations both well above the noise (monomers and
  dimers) are kept.
- **Spots that are not round.** The split takes a residual lobe or a stretched spot
  for a second particle (:mod:`livetrack.detection.lone`). Where the movie's lone
  spots typically (their median) show more of either than the simulator's lone spots
  of the same brightness (astigmatism, an aberrated PSF, motion blur), that split
  threshold is raised by the larger of the medians' and the 95th percentiles' ratios.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: the fainter population is cut only if its median fitted SNR (ISBI) is at most this
FAINT_SNR = 3.0
#: ... holds at least this share of the spots, and the brighter one this share
FAINT_SHARE = 0.05
KEPT_SHARE = 0.2
#: ... the two are apart by Ashman's D ≥ this (one Gaussian split in two gives 2.65)
SEPARATION_D = 3.0
#: ... and the density in the gap is at most this share of the brighter population's
#: peak, and :data:`FAINT_GAP_DEPTH` of the fainter's. A faint population at the
#: noise's level may be broad, a step below the particles rather than a peak: on the
#: real single molecules, one adapted model's faint spots peak at 63 photons (the
#: gap 0.40 of that peak), another's spread flat over 50–250 (0.63 of it, 0.20 of the
#: particles' peak); one population spread evenly in log-photons reads ~1 of both
GAP_DEPTH = 0.5
FAINT_GAP_DEPTH = 0.75
#: the gap spans the points this close to its least density
GAP_FLAT = 1.2
#: a spot statistic of the movie's lone spots must exceed the simulator's by this
#: factor (their medians, at the movie's brighter half's photons) before a split
#: threshold is raised: 1.6 and 2.9 on the real single molecules (lobe z, elongation),
#: 2.9 and 5.5 on the real beads, 1.14 and 1.27 on a simulated movie of round spots
SHAPE_RATIO = 1.5
#: simulated frames compared with the movie's
SIM_FRAMES = 4


@dataclass(frozen=True)
class MovieCuts:
    """What the card takes, and the numbers behind it (for the report)."""

    min_photons: float
    faint_per_frame: float  # spots a frame below min_photons
    split_lobe_z: float | None
    split_elongation: float | None
    lone_spots: int

    def outputs(self) -> dict[str, Any]:
        """The card's ``outputs`` fields these set."""
        return {"min_photons": self.min_photons, "split_lobe_z": self.split_lobe_z,
                "split_elongation": self.split_elongation}  # fmt: skip


def brightness_gap(photons: NDArray[np.float64], snr: NDArray[np.float64]) -> float | None:
    """The photons in the gap above a faint population at the noise's level, or None.

    ``photons`` and ``snr``: per spot, its fitted photons and fitted SNR.
    """
    ok = np.asarray(photons) > 0
    v, q = np.log(np.asarray(photons, np.float64)[ok]), np.asarray(snr, np.float64)[ok]
    n = len(v)
    if n < 50:
        return None
    order = np.argsort(v)
    s, q = v[order], q[order]
    # Otsu's split of the log-photons: the one of most between-class variance
    c = np.cumsum(s)
    k = np.arange(1, n)
    between = k * (n - k) * (c[:-1] / k - (c[-1] - c[:-1]) / (n - k)) ** 2
    i = int(np.argmax(between)) + 1
    lo, hi = s[:i], s[i:]
    if i < FAINT_SHARE * n or n - i < KEPT_SHARE * n or np.median(q[:i]) > FAINT_SNR:
        return None
    if np.sqrt(2.0) * (hi.mean() - lo.mean()) / np.sqrt(lo.var() + hi.var()) < SEPARATION_D:
        return None
    # the gap: the least dense point between the two medians, on a density smoothed by
    # the classes' own spread (the whole sample's would smooth the gap away)
    bw = 1.06 * np.sqrt((i * lo.var() + (n - i) * hi.var()) / n) * n**-0.2
    grid = np.linspace(s[0], s[-1], 400)
    density = np.exp(-0.5 * ((grid[:, None] - s[None, :]) / bw) ** 2).sum(axis=1)
    between_medians = np.flatnonzero((grid >= np.median(lo)) & (grid <= np.median(hi)))
    j = int(between_medians[np.argmin(density[between_medians])])
    if density[j] > min(GAP_DEPTH * density[j:].max(), FAINT_GAP_DEPTH * density[: j + 1].max()):
        return None
    # the cut at the gap's bright end: below a broad faint population's flat density,
    # the least dense point may fall anywhere in it
    low = between_medians[density[between_medians] <= GAP_FLAT * density[j]]
    return float(np.exp(grid[low.max()]))


def _in_band(lone: Any, band: tuple[float, float]) -> tuple[Any, Any]:
    keep = (lone.photons >= band[0]) & (lone.photons <= band[1])
    return lone.z[keep], lone.elongation[keep]


def _raised(movie: NDArray[np.float64], sim: NDArray[np.float64], default: float) -> float | None:
    """The split threshold for a statistic whose lone-spot values are ``movie``, or None.

    The medians tell whether the movie's spots differ from the simulator's (the tails
    also hold lone spots beside a particle the detector missed, in a dense movie as in
    a simulated one); the 95th percentiles, how far the threshold must rise.
    """
    if len(movie) < 10 or len(sim) < 10:
        return None
    typical = float(np.median(movie) / max(np.median(sim), 1e-9))
    if typical <= SHAPE_RATIO:
        return None
    tail = float(np.percentile(movie, 95) / max(np.percentile(sim, 95), 1e-9))
    return default * max(typical, tail)


def movie_cuts(model: Path, seen: NDArray[np.float64], preset: Path) -> MovieCuts:
    """The cuts for the model in ``model`` from the movie's frames ``seen`` (model camera)."""
    from livetrack.config import load_simulation_config
    from livetrack.detection.detections import fit_snr
    from livetrack.detection.detector import Detector
    from livetrack.detection.lone import (
        ELONGATION_MIN,
        SPLIT_Z,
        LoneSpots,
        lone_in_frame,
        lone_spots,
    )
    from livetrack.simulation import simulate_movie

    det = Detector(model, split=False, min_photons=0.0)
    read = det.card.expects.read_noise_photons
    photons, snr, parts = [], [], []
    for k, frame in enumerate(seen):  # one reading: the faint population and lone spots
        d = det.detect(frame, index=k)
        if len(d.x):
            photons.append(d.photons)
            snr.append(fit_snr(d.photons, d.background, float(np.median(d.sigma)), read))
            parts.append(lone_in_frame(det, frame, d))
    all_photons = np.concatenate(photons) if photons else np.zeros(0)
    floor = brightness_gap(all_photons, np.concatenate(snr) if snr else np.zeros(0))
    sim = simulate_movie(load_simulation_config(preset), SIM_FRAMES, seed=0).frames
    lone = LoneSpots.joined(parts)
    # compared at the same brightness: a spot's shape is the less certain the fainter
    band = tuple(np.percentile(lone.photons, [50, 95])) if len(lone.photons) else (0.0, 0.0)
    movie_z, movie_el = _in_band(lone, band)
    sim_z, sim_el = _in_band(lone_spots(det, sim), band)
    return MovieCuts(
        min_photons=0.0 if floor is None else round(floor, 1),
        faint_per_frame=0.0 if floor is None else float(np.sum(all_photons < floor)) / len(seen),
        split_lobe_z=_raised(movie_z, sim_z, SPLIT_Z),
        split_elongation=_raised(movie_el, sim_el, ELONGATION_MIN),
        lone_spots=len(lone.z),
    )
