"""Benchmark section ``lodestar``: ``adapt --self-supervised`` on the real movies.

Each movie goes through ``livetrack adapt MOVIE --self-supervised`` and ``livetrack
process MOVIE --model DIR`` as a user runs them (defaults; ``--single auto`` for the
trapped bead), and the result is set beside a reference written apart from it:

- DeepTrack's Brownian beads (bright cores in dark rings, no reference shipped), and
  the same movie inverted (dark particles, against the same reference):
  trackpy ``locate`` with diameter 15 and ``minmass`` at the Otsu threshold of the
  log-masses (the gap between particles and noise, as an expert reads the mass
  histogram). Features matched within 1 px both ways, in the interior (12 px from
  the edge, where trackpy drops cut particles) and overall; each set of features
  linked alike (trackpy ``link``, 8 px, memory 3) gives a diffusion coefficient
  (lag-1–4 MSD slope), and their ratio;
- DeepTrack's low-SNR beads (``brownian_particles_bad.mp4``, read as ``process``
  reads a video; left out without OpenCV), against the same expert trackpy;
- DeepTrack's bacteria among packed microspheres (an MP4): the bacteria, LodeSTAR's
  crops, kept by ``process --min-score``, against trackpy tuned to the bacteria;
- trackpy's five brightfield colloids, against the same expert trackpy ``locate``
  (within 1 px both ways) and against trackpy's ``locate_brightfield_ring``
  reference tracks (a circle fitted to the dark ring, which sits ~0.5–0.8 px off
  every centre estimator in x on this movie, radial symmetry and ``locate``
  alike): matched within 1 and 2 px, each particle's constant offset and the
  frame-to-frame spread around it;
- DeepTrack's trapped bead (clean, noisy), one particle: position variance over the
  template-fit reference's (``template_reference``) and the correlation.

And the time per 512² frame beside the shipped detector's, in one run: the rings'
model on a frame of noise (the least the shipped read-out does), and a model adapted
on the service speed bench's simulated beads on those frames, with the share of the
true beads each finds within 1 px.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.spatial import cKDTree

#: the movies, inside the folder given as ``bench --real-data``
RINGS = "deeptrack_videos/brownian_particles_gray.tif"
COLLOIDS = "brightfield_colloids/brightfield.tif"
COLLOID_REFERENCE = "brightfield_colloids/trackpy_brightfield_ring_tracks.csv"
NOISY = "deeptrack_videos/brownian_particles_bad.mp4"
BACTERIA = "deeptrack_videos/brownian_particles_and_bacteria.mp4"
#: the bacteria score ~1 (0.996 ± 0.017), the microspheres' centres 0.67 ± 0.17
BACTERIA_MIN_SCORE = 0.9
#: trackpy ``locate`` (diameter, ``minmass``) tuned to the bacteria: the mask holds a
#: whole rod (~14 px long: radius of gyration 4.2 px), and the floor sits in the gap
#: between the microspheres' masses, < 790, and the bacteria's, > 890 (the frames as
#: read, uint8). A mask of 11 px centres on part of a rod, hopping between its ends:
#: frame-to-frame jitter 0.56 px along the rods against 0.29 px at 15 (second
#: differences of the tracks)
BACTERIA_TRACKPY = (15, 840.0)
TRAPPED = ("deeptrack_videos/trapped_particle_good_gray.tif",
           "deeptrack_videos/trapped_particle_bad_gray.tif")  # fmt: skip
EDGE_PX = 12.0


def _matched(a: pd.DataFrame, b: pd.DataFrame, gate: float) -> tuple[float, NDArray[np.float64]]:
    """Share of ``a``'s rows with a row of ``b`` within ``gate`` px in their frame, and offsets."""
    hit, total, offsets = 0, 0, []
    for f, rows in a.groupby("frame"):
        other = b[b["frame"] == f][["x", "y"]].to_numpy()
        total += len(rows)
        if len(other):
            d, i = cKDTree(other).query(rows[["x", "y"]].to_numpy())
            hit += int((d <= gate).sum())
            offsets.append(rows[["x", "y"]].to_numpy()[d <= gate] - other[i[d <= gate]])
    return hit / max(total, 1), np.concatenate(offsets) if offsets else np.zeros((0, 2))


def otsu(values: NDArray[np.float64], bins: int = 256) -> float:
    """Otsu's threshold: the cut that best splits ``values`` into two classes."""
    counts, edges = np.histogram(values, bins)
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1]
    w1 = counts.sum() - w0
    m0 = np.cumsum(counts * mids)[:-1] / np.maximum(w0, 1)
    m1 = (np.sum(counts * mids) - np.cumsum(counts * mids)[:-1]) / np.maximum(w1, 1)
    return float(edges[1:-1][int(np.argmax(w0 * w1 * (m0 - m1) ** 2))])


def expert_trackpy(frames: NDArray[np.generic]) -> pd.DataFrame:
    """Trackpy ``locate`` as an expert tunes it: diameter 15, ``minmass`` at the Otsu gap."""
    import trackpy

    trackpy.quiet()
    feats = trackpy.batch(np.asarray(frames, np.float64), 15, minmass=0, processes=1)
    out: pd.DataFrame = feats[np.log(feats["mass"]) >= otsu(np.log(feats["mass"].to_numpy()))]
    return out


def _diffusion(features: pd.DataFrame) -> float:
    """D (px²/frame) from features linked by trackpy alike: the lag-1–4 ensemble MSD slope / 4."""
    import trackpy

    tracks = trackpy.link(features[["frame", "x", "y"]], 8, memory=3)
    msd = trackpy.emsd(tracks, mpp=1.0, fps=1.0, max_lagtime=4)
    return float(np.polyfit(msd.index.to_numpy(float), msd.to_numpy(float), 1)[0] / 4)


def _adapted(
    movie: Path, folder: Path, quick: bool, single: bool, min_score: float | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``process``'s table with the adapted model; adapt's time and unlike share.

    The share of the detections unlike the model's crops is what makes ``adapt`` name
    two kinds.
    """
    from livetrack.adapt import adapt_self_supervised
    from livetrack.offline.process import DetectorSpec, track_movie

    t0 = time.perf_counter()
    result = adapt_self_supervised(movie, folder, steps=200 if quick else 1500)
    seconds = time.perf_counter() - t0
    spec = DetectorSpec(
        model=str(result.model), single_crop="auto" if single else None, min_score=min_score
    )
    table, _, _ = track_movie(movie, spec)
    unlike = result.scores.unlike_share if result.scores is not None else None
    return table, {"adapt_s": seconds, "unlike_share": unlike}


def ring_movie(movie: Path, tmp: Path, dark: bool) -> tuple[NDArray[np.generic], Path]:
    """The movie's frames, and the file to run on: the movie, or (``dark``) its inverted copy."""
    import tifffile

    frames = tifffile.imread(movie)
    if not dark:
        return frames, movie
    source = tmp / f"dark-{movie.name}"
    tifffile.imwrite(source, np.iinfo(frames.dtype).max - frames)
    return frames, source


def interior_matched(
    ours: pd.DataFrame, ref: pd.DataFrame, shape: tuple[int, ...], edge: float = EDGE_PX
) -> tuple[float, float]:
    """Ours matched by ``ref`` and ``ref`` by ours within 1 px, ``edge`` px from the edge."""
    h, w = shape[-2:]

    def inner(d: pd.DataFrame) -> pd.DataFrame:
        x, y = d["x"], d["y"]
        ok = (x >= edge) & (y >= edge) & (x <= w - 1 - edge) & (y <= h - 1 - edge)
        out: pd.DataFrame = d[ok]
        return out

    return _matched(inner(ours), inner(ref), 1.0)[0], _matched(inner(ref), inner(ours), 1.0)[0]


def _rings(movie: Path, tmp: Path, quick: bool, dark: bool = False) -> dict[str, Any]:
    """``dark``: the movie inverted (dark cores in bright rings), against the same trackpy."""
    frames, source = ring_movie(movie, tmp, dark)
    ours, adapted = _adapted(source, tmp / ("dark" if dark else "rings"), quick, False)
    ref = expert_trackpy(frames)
    return {
        "movie": "DeepTrack Brownian beads (rings)" + (", inverted" if dark else ""),
        **adapted, **_against_expert(ours, ref, frames.shape),
        "diffusion_ratio": _diffusion(ours) / _diffusion(ref),
    }  # fmt: skip


def _against_expert(
    ours: pd.DataFrame, ref: pd.DataFrame, shape: tuple[int, ...]
) -> dict[str, Any]:
    """Features a frame, and matched within 1 px both ways: interior and overall."""
    ours_in, theirs_in = interior_matched(ours, ref, shape)
    return {
        "per_frame": len(ours) / shape[0], "reference_per_frame": len(ref) / shape[0],
        "ours_matched_interior": ours_in, "reference_matched_interior": theirs_in,
        "ours_matched_all": _matched(ours, ref, 1.0)[0],
        "reference_matched_all": _matched(ref, ours, 1.0)[0],
    }  # fmt: skip


def _noisy(movie: Path, tmp: Path, quick: bool) -> list[dict[str, Any]]:
    """The low-SNR beads' row, or none without the video or OpenCV."""
    from livetrack.offline.movies import MovieReader

    if not movie.is_file() or importlib.util.find_spec("cv2") is None:
        return []
    reader = MovieReader(movie)
    frames = reader.read(0, reader.info.n_frames)
    reader.close()
    ours, adapted = _adapted(movie, tmp / "noisy", quick, False)
    ref = expert_trackpy(frames)
    return [{"movie": "DeepTrack noisy beads (rings, MP4)", **adapted,
             **_against_expert(ours, ref, frames.shape)}]  # fmt: skip


def _bacteria(movie: Path, tmp: Path, quick: bool) -> list[dict[str, Any]]:
    """The bacteria among packed microspheres: the bright bacteria, the kind LodeSTAR learnt.

    Against trackpy ``locate`` tuned to the bacteria (:data:`BACTERIA_TRACKPY`), and,
    as a column, with a mask narrower than a bacterium (diameter 11, ``minmass`` 650).
    """
    import trackpy as tp

    from livetrack.offline.movies import MovieReader

    if not movie.is_file() or importlib.util.find_spec("cv2") is None:
        return []
    reader = MovieReader(movie)
    frames = reader.read(0, reader.info.n_frames)
    reader.close()
    ours, adapted = _adapted(movie, tmp / "bacteria", quick, False, BACTERIA_MIN_SCORE)

    def located(diameter: int, minmass: float) -> pd.DataFrame:
        feats = [tp.locate(f, diameter, minmass=minmass).assign(frame=k)
                 for k, f in enumerate(frames)]  # fmt: skip
        out: pd.DataFrame = pd.concat(feats, ignore_index=True)
        return out

    ref = located(*BACTERIA_TRACKPY)
    narrow = interior_matched(ours, located(11, 650.0), frames.shape)
    return [{"movie": f"DeepTrack bacteria (--min-score {BACTERIA_MIN_SCORE})",
             **adapted, **_against_expert(ours, ref, frames.shape),
             "reference_within_2px": _matched(ref, ours, 2.0)[0],
             "narrow_mask_matched_interior": "{:.3f} / {:.3f}".format(*narrow)}]  # fmt: skip


def _colloids(movie: Path, reference: Path, tmp: Path, quick: bool) -> dict[str, Any]:
    import tifffile

    ours, adapted = _adapted(movie, tmp / "colloids", quick, False)
    located = expert_trackpy(tifffile.imread(movie))
    ref = pd.read_csv(reference)
    within2, _ = _matched(ref, ours, 2.0)
    spread, constant = [], []
    for _, rows in ref.groupby("particle"):
        _, off = _matched(rows, ours, 2.0)
        constant.append(-off.mean(axis=0))  # ours − reference
        spread.append(off.std(axis=0))
    c, s = np.array(constant), np.array(spread)
    return {
        "movie": "trackpy brightfield colloids", **adapted,
        "per_frame": len(ours) / ref["frame"].nunique(), "tracks": int(ours["particle"].nunique()),
        "trackpy_locate_matched_1px": _matched(located, ours, 1.0)[0],
        "ours_matched_by_locate_1px": _matched(ours, located, 1.0)[0],
        "reference_matched_1px": _matched(ref, ours, 1.0)[0], "reference_matched_2px": within2,
        "ours_matched_2px": _matched(ours, ref, 2.0)[0],
        "offset_x_px": f"{c[:, 0].min():+.2f} to {c[:, 0].max():+.2f}",
        "offset_y_px": f"{c[:, 1].min():+.2f} to {c[:, 1].max():+.2f}",
        "spread_px": float(np.median(s)),
    }  # fmt: skip


def _trapped(movie: Path, tmp: Path, quick: bool) -> dict[str, Any]:
    from livetrack.bench._single import against_reference

    ours, adapted = _adapted(movie, tmp / movie.stem, quick, True)
    return {"movie": f"DeepTrack trapped bead ({movie.stem.split('_')[2]})",
            **adapted, **against_reference(ours, movie)}  # fmt: skip


def _speed(model: Path, repeats: int) -> dict[str, Any]:
    """Time per 512² frame (ms): the self-supervised model beside the shipped detector."""
    from livetrack.detection.detector import Detector
    from livetrack.detection.lodestar import LodestarDetector

    frame = (100 + np.random.default_rng(0).poisson(20.0, (512, 512))).astype(np.uint16)
    row: dict[str, Any] = {"movie": "ms per 512² frame (the rings' model; shipped detector)"}
    detectors = (("lodestar_ms", LodestarDetector(model)),  # one read: serve
                 ("lodestar_4_views_ms", LodestarDetector(model, views=4)),  # process
                 ("shipped_ms", Detector()))  # fmt: skip
    for name, det in detectors:
        det.detect(frame)
        t0 = time.perf_counter()
        for _ in range(repeats):
            det.detect(frame)
        row[name] = (time.perf_counter() - t0) * 1e3 / repeats
    return row


def _speed_with_particles(tmp: Path) -> dict[str, Any]:
    """Time per frame on the service speed bench's movie (100 beads in 512²).

    Both models find the particles there: a LodeSTAR model adapted on it beside the
    shipped detector.
    """
    import tifffile

    from livetrack.adapt import adapt_self_supervised
    from livetrack.detection.detector import Detector
    from livetrack.detection.lodestar import LodestarDetector
    from livetrack.simulation.scenarios import Scenario

    frames, truth = Scenario("speed", 100, 7.0, 20, size=512, seed=512).render()
    tifffile.imwrite(tmp / "beads.tif", frames)
    model = adapt_self_supervised(tmp / "beads.tif", tmp / "beads")
    row: dict[str, Any] = {"movie": "ms per 512² frame, 100 simulated beads (each model's own)"}
    for name, det in (("lodestar", LodestarDetector(model.model)), ("shipped", Detector())):
        found = [det.detect(f) for f in frames]  # and warmed up
        t0 = time.perf_counter()
        for f in frames:
            det.detect(f)
        row[f"{name}_ms"] = (time.perf_counter() - t0) * 1e3 / len(frames)
        got = pd.concat(
            pd.DataFrame({"frame": i, "x": d.x, "y": d.y}) for i, d in enumerate(found)
        )  # fmt: skip
        row[f"{name}_truth_matched_1px"] = _matched(truth, got, 1.0)[0]
    return row


def bench_lodestar(quick: bool, real_data: Path | None = None) -> list[dict[str, Any]]:
    """One row per real movie (see the module's docstring); skipped without the movies."""
    if real_data is None or not (real_data / RINGS).is_file():
        return [{"skipped": "needs --real-data (the folder shared/data/real)"}]
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        rows = [_rings(real_data / RINGS, tmp, quick), _speed(tmp / "rings", 5 if quick else 50)]
        if quick:
            return rows
        rows.append(_speed_with_particles(tmp))
        rows.append(_rings(real_data / RINGS, tmp, quick, dark=True))
        rows += _noisy(real_data / NOISY, tmp, quick)
        rows += _bacteria(real_data / BACTERIA, tmp, quick)
        rows.append(_colloids(real_data / COLLOIDS, real_data / COLLOID_REFERENCE, tmp, quick))
        rows += [_trapped(real_data / t, tmp, quick) for t in TRAPPED]
    return rows
