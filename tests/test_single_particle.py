"""Single-particle mode: the crop sized from the particle, its own template, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from livetrack.cli import app
from livetrack.single.detector import SingleParticleDetector
from livetrack.single.size import crop_for, particle_extent

from .conftest import REAL_DATA

TRAPPED = REAL_DATA / "deeptrack_videos"


def _bead_with_tail(
    x: float, y: float, size: int, rng: np.random.Generator, noise: float
) -> np.ndarray:
    """A ringed bead (radius ~6 px) with a bright rod attached on one side (a bacterium)."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    r = np.hypot(xx - x, yy - y)
    bead = 60 * np.exp(-(r**2) / 18) - 25 * np.exp(-((r - 7) ** 2) / 3)
    rod = 45 * np.exp(-((xx - x - 11) ** 2) / 30 - (yy - y - 3) ** 2 / 4)
    return 100 + bead + rod + rng.normal(0, noise, (size, size))


def test_the_crop_holds_the_whole_particle() -> None:
    rng = np.random.default_rng(0)
    frame = _bead_with_tail(40.0, 42.0, 96, rng, 2.0)
    x, y, radius = particle_extent(frame)
    assert abs(x - 40) <= 2
    assert abs(y - 42) <= 2
    assert 7 <= radius <= 22  # the ring (7 px) at least, not the whole frame
    assert crop_for(frame) % 2 == 1
    assert crop_for(frame) >= 2 * radius
    assert crop_for(frame[:20, :20]) <= 19  # never wider than the frame


def test_an_asymmetric_particle_is_tracked_by_its_template() -> None:
    """Radial symmetry is pulled about by the rod; the particle's own image is not."""
    rng = np.random.default_rng(1)
    truth = np.column_stack([48 + rng.normal(0, 0.8, 120), 48 + rng.normal(0, 0.8, 120)])
    movie = np.stack([_bead_with_tail(x, y, 96, rng, 6.0) for x, y in truth])
    out = {}
    for name, det in (("template", SingleParticleDetector()),
                      ("radial", SingleParticleDetector(template=False))):  # fmt: skip
        det.prepare(movie)
        xy = np.array([(d.x[0], d.y[0]) for d in map(det.detect, movie)])
        err = xy - truth
        out[name] = float(np.sqrt(np.mean((err - err.mean(axis=0)) ** 2)))
    assert out["template"] < 0.1
    assert out["template"] < 0.5 * out["radial"], out


@pytest.mark.skipif(not TRAPPED.exists(), reason="no real movies")
def test_single_auto_on_the_real_trapped_bead(tmp_path: Path) -> None:
    """One track; the clean video's variance within 10 % of radial symmetry on the whole bead."""
    from livetrack.offline.job import ProcessOptions, process_movie

    movie = TRAPPED / "trapped_particle_good_gray.tif"
    table = process_movie(movie, options=ProcessOptions(single="auto"))
    assert table["particle"].nunique() == 1
    assert len(table) == 100
    whole = SingleParticleDetector(81, template=False)
    frames = tifffile.imread(movie)
    ref = np.array([(d.x[0], d.y[0]) for d in map(whole.detect, frames)]).var(axis=0)
    ratio = table[["x", "y"]].to_numpy().var(axis=0) / ref
    assert np.all(np.abs(ratio - 1) < 0.1), ratio
    assert "template" in table.attrs["livetrack"]["detector"]


@pytest.mark.skipif(not TRAPPED.exists(), reason="no real movies")
def test_a_localiser_refuses_a_particle_outside_its_sizes(tmp_path: Path) -> None:
    movie = TRAPPED / "trapped_particle_good_gray.tif"
    out = tmp_path / "t.csv"
    args = ["process", str(movie), "-o", str(out), "--single", "31"]
    r = CliRunner().invoke(app, [*args, "--model", "trapped-colloid-localiser"])
    assert r.exit_code == 2
    assert "outside the 9–19 px" in r.output
    assert "--single auto" in r.output
    assert not out.exists()
    r = CliRunner().invoke(app, ["process", str(movie), "-o", str(out), "--single", "auto"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["process", str(movie), "-o", str(out), "--single", "big"])
    assert r.exit_code == 2
    assert "expected auto or a crop side" in r.output


def test_a_detector_finds_the_particle_and_its_own_template_fits_it(tmp_path: Path) -> None:
    """``process --single auto --model DETECTOR``: as an adapted rings model on a trap."""
    import json

    import pandas as pd

    from livetrack.config import load_simulation_config
    from livetrack.simulation import simulate_movie

    cfg = load_simulation_config("brightfield_colloid_detector")
    cam = cfg.camera.model_copy(update={"width": 128, "height": 128})
    one = cfg.particles.model_copy(update={"number": 1})
    movie = simulate_movie(cfg.model_copy(update={"camera": cam, "particles": one}), 40, seed=8)
    assert len(movie.truth) == 40  # the seed keeps the colloid inside the field
    path, out = tmp_path / "trap.tif", tmp_path / "trap.csv"
    tifffile.imwrite(path, movie.frames, photometric="minisblack")
    args = ["process", str(path), "-o", str(out), "--single", "auto"]
    r = CliRunner().invoke(app, [*args, "--model", "brightfield-colloid-detector"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out).sort_values("frame")
    truth = movie.truth.sort_values("frame")
    assert len(table) == 40
    assert table["particle"].nunique() == 1
    err = table[["x", "y"]].to_numpy() - truth[["x", "y"]].to_numpy()
    assert np.sqrt(np.mean((err - err.mean(axis=0)) ** 2)) < 0.05  # noise-free-ish: ~0.01
    assert np.abs(err.mean(axis=0)).max() < 0.3  # the network's origin is the colloid's
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert "+ template" in json.dumps(sidecar)


@pytest.mark.skipif(not TRAPPED.exists(), reason="no real movies")
def test_a_detector_that_finds_no_particle_for_single_says_so_and_writes_nothing(
    tmp_path: Path,
) -> None:
    movie = TRAPPED / "trapped_particle_good_gray.tif"
    out = tmp_path / "t.csv"
    args = ["process", str(movie), "-o", str(out), "--single", "auto"]
    # trained on other colloids, it sees no particle in this trap
    r = CliRunner().invoke(app, [*args, "--model", "brightfield-colloid-detector"])
    assert r.exit_code == 2
    assert "found no particle in the first 32 frames" in r.output
    assert "livetrack adapt" in r.output
    assert not out.exists()
    r = CliRunner().invoke(app, [*args, "--model", "holography-characteriser"])
    assert r.exit_code == 2
    assert "a characteriser model, not a localiser or a detector" in r.output
    assert "--self-supervised" in r.output
