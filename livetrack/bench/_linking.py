"""Benchmark section ``linking``: our online linker next to ``trackpy.link``.

Both link the same detections with the same search range and memory (our default,
10 frames; trackpy also with the 2 frames of earlier tables): first those of our
shipped detector, then (for contrast) those of trackpy ``locate`` with its minmass
tuned on the truth. Scores are the ISBI 2012 measures against the
simulated truth. Speed is
measured per frame: ours streaming frame by frame, trackpy's ``link`` on the table.
A second, detector-free speed case links truth positions plus 0.1 px noise at
500 particles per frame. Rows on the true positions (every particle, exact) give
the ceiling of frame-to-frame linking on the same movie: what identity swaps where
particles meet cost, apart from any detector.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from livetrack.linking import LinkingConfig, OnlineLinker
from livetrack.linking.scores import tracking_scores
from livetrack.simulation.psf import GaussianPSF
from livetrack.simulation.scenarios import Scenario
from livetrack.training.baselines import (
    trackpy_detect_movie,
    trackpy_diameter,
    tune_trackpy_minmass,
)

MEMORY = LinkingConfig().memory
SHORT_MEMORY = 2  # earlier tables' memory, for trackpy


def _ours(dets: pd.DataFrame, cfg: LinkingConfig) -> tuple[pd.DataFrame, float]:
    linker = OnlineLinker(cfg)
    parts = []
    elapsed = 0.0
    for _, g in dets.groupby("frame", sort=True):
        x, y = g["x"].to_numpy(), g["y"].to_numpy()
        f = g["photons"].to_numpy() if "photons" in g else None
        t0 = time.perf_counter()
        step = linker.link(int(g["frame"].to_numpy()[0]), x, y, f)
        elapsed += time.perf_counter() - t0
        parts.append(g.assign(particle=step.particle))
    return pd.concat(parts, ignore_index=True), elapsed * 1e3 / max(dets["frame"].nunique(), 1)


def _trackpy(dets: pd.DataFrame, search: float, memory: int = MEMORY) -> tuple[pd.DataFrame, float]:
    import trackpy

    trackpy.quiet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        out = trackpy.link(dets, search, memory=memory)
        ms = (time.perf_counter() - t0) * 1e3 / max(dets["frame"].nunique(), 1)
    return out, ms


def _our_detections(movie: np.ndarray) -> pd.DataFrame:
    from livetrack.detection.detector import Detector
    from livetrack.training.evaluate import detect_movie

    return detect_movie(Detector(), movie)


def _row(
    name: str, sc: Scenario, truth: pd.DataFrame, dets: pd.DataFrame, penalty: float = 1.0
) -> dict[str, Any]:
    cfg = LinkingConfig(
        search_range_px=sc.search_range_px, memory=MEMORY, brightness_penalty=penalty
    )
    ours, ms = _ours(dets, cfg)
    ref, tp_ms = _trackpy(dets, sc.search_range_px)
    s = tracking_scores(truth, ours)
    t = tracking_scores(truth, ref)
    short = tracking_scores(truth, _trackpy(dets, sc.search_range_px, SHORT_MEMORY)[0])
    return {
        "scenario": name,
        "particles": sc.particles,
        "snr": sc.snr,
        "frames": int(dets["frame"].nunique()),
        "jsc": s.jsc,
        "alpha": s.alpha,
        "beta": s.beta,
        "jsc_theta": s.jsc_theta,
        "trackpy_jsc": t.jsc,
        "trackpy_alpha": t.alpha,
        "trackpy_beta": t.beta,
        "trackpy_jsc_theta": t.jsc_theta,
        "trackpy_memory2_jsc": short.jsc,
        "trackpy_memory2_alpha": short.alpha,
        "ms_per_frame": ms,
        "trackpy_ms_per_frame": tp_ms,
        "detector": "livetrack",
    }


def bench_linking(quick: bool) -> list[dict[str, Any]]:
    """Rows for the ``linking`` section (see module docstring)."""
    frames = 20 if quick else 100
    rows: list[dict[str, Any]] = []
    for n in (100, 500):
        sc = Scenario(f"brownian-{n}", n, 4.0, frames, seed=n)
        movie, truth = sc.render()
        ours = _our_detections(movie)
        rows.append(_row(f"brownian {n} SNR 4", sc, truth, ours))
        if n == 100:
            keep = ours["frame"] % 10 != 5
            kept_truth = truth[truth["frame"] % 10 != 5]
            rows.append(_row("brownian 100 SNR 4, 10% frames skipped", sc, kept_truth, ours[keep]))
            sigma = GaussianPSF.from_optics(sc.config().optics).sigma_px
            d = trackpy_diameter(sigma)
            tp_dets = trackpy_detect_movie(movie, d, tune_trackpy_minmass(movie, truth, d))
            row = _row("brownian 100 SNR 4 (trackpy detections)", sc, truth, tp_dets)
            row["detector"] = "trackpy.locate (minmass tuned on truth)"
            rows.append(row)
            # the ceiling: the true positions, every particle in every frame. What is
            # lost here is identity swapped where particles meet (the Brownian step,
            # 2 px per axis, is no smaller than their closest approach), which no
            # frame-to-frame linker can tell apart
            exact = truth.drop(columns="particle")
            row = _row("brownian 100, true positions (linking ceiling)", sc, truth, exact)
            row["detector"] = "truth (exact positions)"
            rows.append(row)
    if not quick:  # the other SNRs, and directed motion (flow or drift)
        # slower particles (1 px per axis per frame): identity is rarely ambiguous,
        # so what is left is the detector's misses; its ceiling next to it
        sc = Scenario("brownian-100-step1", 100, 4.0, frames, step_px=1.0, seed=100)
        movie, truth = sc.render()
        rows.append(_row("brownian 100 SNR 4, 1 px steps", sc, truth, _our_detections(movie)))
        row = _row(
            "brownian 100, 1 px steps, true positions (linking ceiling)",
            sc,
            truth,
            truth.drop(columns="particle"),
        )
        row["detector"] = "truth (exact positions)"
        rows.append(row)
        for snr in (1.0, 2.0, 7.0):
            sc = Scenario(f"brownian-100-snr{snr:g}", 100, snr, frames, seed=100 + int(snr))
            movie, truth = sc.render()
            rows.append(_row(f"brownian 100 SNR {snr:g}", sc, truth, _our_detections(movie)))
        # particles of unlike brightness (±30 %): the brightness penalty on and off
        sc = Scenario("spread-100", 100, 4.0, frames, photons_spread=0.3, seed=130)
        movie, truth = sc.render()
        ours = _our_detections(movie)
        for w in (1.0, 0.0):
            name = f"brownian 100 SNR 4, brightness ±30 %, brightness penalty {w:g}"
            rows.append(_row(name, sc, truth, ours, penalty=w))
        sc = Scenario("directed-100", 100, 4.0, frames, drift_px=(1.5, 0.5), seed=150)
        movie, truth = sc.render()
        rows.append(
            _row(
                "directed 100 SNR 4 (1.5, 0.5 px/frame + Brownian)",
                sc,
                truth,
                _our_detections(movie),
            )
        )
    # detector-free speed case: exact positions + 0.1 px noise, 500 per frame
    sc = Scenario("positions-500", 500, 10.0, frames, seed=7)
    rng = np.random.default_rng(7)
    truth = _positions(sc, rng)
    dets = truth.drop(columns="particle").assign(
        x=truth["x"] + rng.normal(0, 0.1, len(truth)), y=truth["y"] + rng.normal(0, 0.1, len(truth))
    )
    row = _row("positions 500 (no detector)", sc, truth, dets)
    row["detector"] = "truth + 0.1 px noise"
    rows.append(row)
    return rows + from_data_rows(quick)


def _imperfect(
    sc: Scenario, rng: np.random.Generator, missed: float, false: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """True positions with 0.1 px noise, a share missed and false ones added (a poor detector)."""
    truth = _positions(sc, rng)
    dets = truth.drop(columns="particle").assign(
        x=truth["x"] + rng.normal(0, 0.1, len(truth)), y=truth["y"] + rng.normal(0, 0.1, len(truth))
    )
    dets = dets[rng.random(len(dets)) >= missed]
    k = int(false * len(dets))
    fake = pd.DataFrame(
        {
            "frame": rng.integers(0, sc.frames, k),
            "x": rng.uniform(0, sc.size, k),
            "y": rng.uniform(0, sc.size, k),
        }
    )
    both = pd.concat([dets, fake]).sort_values("frame", kind="stable")
    return truth, both.reset_index(drop=True)


def step_msd(tracks: pd.DataFrame) -> float:
    """Mean squared displacement between consecutive frames of the same track (px²)."""
    t = tracks.sort_values(["particle", "frame"])
    d = t.groupby("particle")[["x", "y", "frame"]].diff()
    one = d["frame"] == 1
    return float((d.loc[one, "x"] ** 2 + d.loc[one, "y"] ** 2).mean())


def from_data_rows(quick: bool) -> list[dict[str, Any]]:
    """The fixed defaults (8 px, 10 frames) against the search range and memory from data.

    Dense Brownian movies seen by a poor detector (30 % of particles missed, 15 % false
    detections): the lag-1 MSD of the tracks over the true one (2 s² + 4 × 0.1² px²),
    which a diffusion coefficient inherits, and the ISBI scores.
    """
    from livetrack.linking.from_data import linking_from_motion, measure_motion

    rows = []
    frames = 30 if quick else 60
    for n, step in ((600, 1.0), (1500, 0.5)) if not quick else ((600, 1.0),):
        sc = Scenario(f"imperfect-{n}", n, 10.0, frames, step_px=step, seed=n)
        truth, dets = _imperfect(sc, np.random.default_rng(n), 0.3, 0.15)
        first = [(g["x"].to_numpy(), g["y"].to_numpy()) for _, g in dets.groupby("frame")]
        motion = measure_motion(first[:32], (sc.size, sc.size))
        data, _ = linking_from_motion(LinkingConfig(), motion)
        true_msd = 2 * step**2 + 4 * 0.1**2
        for how, cfg in (("defaults", LinkingConfig()), ("from data", data)):
            linked, ms = _ours(dets, cfg)
            s = tracking_scores(truth, linked)
            rows.append(
                {
                    "scenario": f"{n} particles, {step:g} px steps, 30 % missed, 15 % false",
                    "linking": f"{how}: {cfg.search_range_px:g} px, memory {cfg.memory}",
                    "measured_step_px": motion.step_px if motion else None,
                    "msd_over_truth": step_msd(linked) / true_msd,
                    "jsc": s.jsc,
                    "alpha": s.alpha,
                    "ms_per_frame": ms,
                }
            )
    return rows


def _positions(sc: Scenario, rng: np.random.Generator) -> pd.DataFrame:
    """Ground-truth Brownian positions without rendering (for linker speed only)."""
    from livetrack.simulation import ParticleSystem

    ps = ParticleSystem(sc.config(), rng)
    out = []
    for f in range(sc.frames):
        if f:
            ps.step(sc.config().frame_interval_s)
        x, y = ps.positions_px()
        inside = (x >= 0) & (x < sc.size) & (y >= 0) & (y < sc.size)
        out.append(
            pd.DataFrame(
                {"frame": f, "particle": ps.state.particle[inside], "x": x[inside], "y": y[inside]}
            )
        )
    return pd.concat(out, ignore_index=True)
