"""The read-out's cuts an adapted model takes from its movie: the faint floor, the split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from livetrack.adapt.movie_cuts import FAINT_SNR, brightness_gap


def _population(
    rng: np.random.Generator, n: int, median: float, spread: float, snr_per_photon: float
) -> tuple[np.ndarray, np.ndarray]:
    photons = median * np.exp(rng.normal(0.0, spread, n))
    return photons, photons * snr_per_photon


def test_a_faint_population_at_the_noises_level_is_cut_in_its_gap_and_no_other() -> None:
    rng = np.random.default_rng(11)
    # particles ~1000 photons (SNR ~10) and faint spots ~70 (SNR ~0.7) with a gap between
    bright, bright_snr = _population(rng, 150, 1000.0, 0.5, 0.01)
    faint, faint_snr = _population(rng, 60, 70.0, 0.25, 0.01)
    floor = brightness_gap(np.r_[bright, faint], np.r_[bright_snr, faint_snr])
    assert floor is not None
    assert np.percentile(faint, 95) < floor < np.percentile(bright, 5)
    # a faint population spread flat over the noise's level, a step below the particles
    # (no peak of its own for a gap to be deep beside): cut at the step
    step = np.random.default_rng(0)
    near, near_snr = _population(step, 170, 800.0, 0.5, 0.01)
    spread = np.exp(step.uniform(np.log(50.0), np.log(250.0), 57))
    floor = brightness_gap(np.r_[near, spread], np.r_[near_snr, spread * 0.01])
    assert floor is not None
    assert spread.max() < floor < np.percentile(near, 10)
    # one population, however spread, has no gap to cut in
    one, one_snr = _population(rng, 300, 500.0, 0.8, 0.01)
    assert brightness_gap(one, one_snr) is None
    flat = np.exp(rng.uniform(np.log(50), np.log(5000), 300))
    assert brightness_gap(flat, flat * 0.01) is None
    # monomers and dimers, both well above the noise: kept, though a gap lies between
    mono, mono_snr = _population(rng, 150, 600.0, 0.1, 2 * FAINT_SNR / 600.0)
    di, di_snr = _population(rng, 150, 1800.0, 0.1, 2 * FAINT_SNR / 600.0)
    assert brightness_gap(np.r_[mono, di], np.r_[mono_snr, di_snr]) is None
    # the same faint spots farther above the noise are particles too
    assert brightness_gap(np.r_[bright, faint], np.r_[bright_snr, faint_snr * 10]) is None
    assert brightness_gap(faint[:20], faint_snr[:20]) is None  # too few to tell


def _frame(
    spots: list[tuple[float, float, float, float, float]], rng: np.random.Generator
) -> np.ndarray:
    """Camera counts (offset 100, 1 ADU/e) of elliptical spots (x, y, photons, σx, σy)."""
    k = np.arange(160, dtype=float)
    light = np.full((160, 160), 20.0)
    for x, y, n, sx, sy in spots:
        ex = 0.5 * (
            special.erf((k + 0.5 - x) / (np.sqrt(2) * sx))
            - special.erf((k - 0.5 - x) / (np.sqrt(2) * sx))
        )
        ey = 0.5 * (
            special.erf((k + 0.5 - y) / (np.sqrt(2) * sy))
            - special.erf((k - 0.5 - y) / (np.sqrt(2) * sy))
        )
        light += n * ey[:, None] * ex[None, :]
    return (100 + rng.poisson(light)).astype(np.uint16)


def _with_card(tmp_path: Path, name: str, **outputs: object) -> Path:
    """A copy of the shipped model whose card's outputs are changed."""
    from livetrack.artifact import default_model_dir

    model = tmp_path / name
    shutil.copytree(default_model_dir(), model)
    card = json.loads((model / "card.json").read_text())
    card["outputs"].update(outputs)
    (model / "card.json").write_text(json.dumps(card))
    return model


def test_the_cards_split_thresholds_and_photon_floor_are_the_detectors(tmp_path: Path) -> None:
    from livetrack.detection.detector import Detector

    rng = np.random.default_rng(5)
    card_sigma = Detector().card.expects.psf_sigma_px
    grid = [(30.0 + 33 * i, 30.0 + 33 * j) for i in range(4) for j in range(4)]
    # lone spots stretched as an astigmatic microscope stretches them, bright
    stretched = [(x, y, 6000.0, card_sigma, 1.5 * card_sigma) for x, y in grid]
    frame = _frame(stretched, rng)
    shipped = Detector()
    assert len(shipped.detect(frame).x) > len(grid)  # lone spots taken for pairs
    model = _with_card(
        tmp_path, "stretched", split_lobe_z=200.0, split_elongation=0.9, min_photons=1500.0
    )
    told = Detector(model, min_photons=0.0)
    found = told.detect(frame)
    assert len(found.x) == len(grid)
    # the card's floor drops spots with fewer photons; an explicit floor overrides it
    faint = [(x + 16, y + 16, 600.0, card_sigma, card_sigma) for x, y in grid[:6]]
    mixed = _frame(stretched + faint, rng)
    assert len(told.detect(mixed).x) == len(grid) + len(faint)
    kept = Detector(model).detect(mixed)
    assert len(kept.x) == len(grid)
    assert (kept.photons >= 1500.0).all()


def test_process_takes_the_floor_from_the_card_or_the_option(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from livetrack.cli import app

    movie = Path(__file__).parents[1] / "livetrack" / "bench" / "real" / "beads_two_views.tif"
    out = tmp_path / "beads.csv"
    r = CliRunner().invoke(app, ["process", str(movie), "-o", str(out)])
    assert r.exit_code == 0, r.output
    every = pd.read_csv(out)
    assert json.loads(out.with_suffix(".json").read_text())["min_photons"] == 0.0
    floor = float(np.median(every["photons"]))
    r = CliRunner().invoke(
        app, ["process", str(movie), "-o", str(out), "--min-photons", f"{floor}"]
    )
    assert r.exit_code == 0, r.output
    kept = pd.read_csv(out)
    assert 0 < len(kept) < len(every)
    assert (kept["photons"] >= floor).all()
    assert json.loads(out.with_suffix(".json").read_text())["min_photons"] == pytest.approx(floor)
    r = CliRunner().invoke(
        app, ["process", str(movie), "-o", str(out), "--min-photons", "1", "--classical"]
    )
    assert r.exit_code == 2
    assert "--classical has --minmass" in r.output


def test_serve_takes_the_floor_from_the_card_or_the_option_and_keeps_it_across_swaps(
    tmp_path: Path,
) -> None:
    from livetrack.service.settings import ServeSettings, build_detector
    from tests.test_service import start

    floored = _with_card(tmp_path, "floored", min_photons=1500.0)
    det, line = build_detector(ServeSettings(model=str(floored)))
    assert det.min_photons == 1500.0
    assert "≥ 1500 photons" in line  # the start-up lines say what is left out
    det, line = build_detector(ServeSettings(model=str(floored), min_photons=0.0))
    assert det.min_photons == 0.0
    assert "photons" not in line
    # a model swapped in keeps the option's floor, not its own card's
    running = start(det, policy="lossless", min_photons=200.0)
    try:
        reply = running.control.request("load_model", timeout_ms=60000, path=str(floored))
        assert reply["ok"], reply
        assert running.service.detector.min_photons == 200.0
    finally:
        running.stop()
    with pytest.raises(ValueError, match="not --classical"):
        build_detector(ServeSettings(classical=True, min_photons=10.0))
    learnt = _with_card(tmp_path, "learnt", kind="lodestar")
    with pytest.raises(ValueError, match="--min-score drops its weaker"):
        build_detector(ServeSettings(model=str(learnt), min_photons=10.0))


def test_process_refuses_a_floor_for_a_model_that_fits_no_photons(tmp_path: Path) -> None:
    from livetrack.offline.job import ProcessError, ProcessOptions, process_movies

    learnt = _with_card(tmp_path, "learnt", kind="lodestar")
    movie = Path(__file__).parents[1] / "livetrack" / "bench" / "real" / "beads_two_views.tif"
    opts = ProcessOptions(model=str(learnt), min_photons=10.0)
    with pytest.raises(ProcessError, match="fits none"):
        process_movies([str(movie)], tmp_path / "out.csv", opts)
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.slow
def test_adapt_on_real_single_molecules_agrees_with_an_expert_trackpy(tmp_path: Path) -> None:
    import tifffile

    import livetrack
    from livetrack.adapt import adapt_movie
    from livetrack.bench._fluorescence import EDGE_PX, REAL, expert_spots
    from livetrack.bench._lodestar import interior_matched

    movie = REAL / "pmhc_af647.tif"
    frames = tifffile.imread(movie)
    # as a user runs it: a shorter fine-tuning leaves the faint population's gap too
    # shallow to tell in 10 frames (16 epochs: the gap's density 0.40 of its peaks;
    # 4 epochs of 50 steps: 0.59)
    result = adapt_movie(movie, tmp_path / "pmhc", verbose=0)
    cuts = result.cuts
    assert cuts is not None
    # the faint spots at the noise's level are left out, and the movie's elliptical
    # spots (σ ~1.0 × 1.25 px) keep their lone spots whole
    assert cuts.min_photons > 0
    assert cuts.faint_per_frame >= 1
    assert cuts.split_lobe_z is not None
    assert cuts.split_elongation is not None
    table = livetrack.process_movie(movie, None, model=result.model)
    assert (table["photons"] >= cuts.min_photons).all()
    ours, theirs = interior_matched(table, expert_spots(frames), frames.shape, EDGE_PX)
    assert ours >= 0.95, (ours, theirs)
    assert theirs >= 0.95, (ours, theirs)
