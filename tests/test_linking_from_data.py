"""Search range and memory read from a movie's own detections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livetrack.bench._linking import from_data_rows
from livetrack.linking import LinkingConfig
from livetrack.linking.from_data import (
    MIN_PAIRS,
    Motion,
    linking_from_motion,
    measure_motion,
)


def _brownian(n: int, frames: int, step: float, size: int, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, size, n), rng.uniform(0, size, n)
    out = []
    for _ in range(frames):
        out.append((x.copy(), y.copy()))
        x, y = x + rng.normal(0, step, n), y + rng.normal(0, step, n)
    return out


@pytest.mark.parametrize("step", [0.3, 1.0, 3.0])
def test_the_step_and_density_are_measured(step: float) -> None:
    m = measure_motion(_brownian(300, 20, step, 512, seed=1), (512, 512))
    assert m is not None
    # mutual nearest neighbours lose the longest steps once they near the spacing
    # (~30 px here): 3 px steps read 7 % short; the search range of 4 σ still holds
    # 99.9 % of the true steps
    assert m.step_px == pytest.approx(step, rel=0.05 if step < 3 else 0.1)
    assert m.density_per_px2 == pytest.approx(300 / 512**2, rel=1e-6)


def test_wrong_pairs_do_not_widen_the_search() -> None:
    """A quarter of each frame's detections replaced by random ones (a poor detector)."""
    rng = np.random.default_rng(2)
    frames = []
    for x, y in _brownian(400, 20, 1.0, 512, seed=2):
        k = rng.random(len(x)) < 0.25
        x, y = x.copy(), y.copy()
        x[k], y[k] = rng.uniform(0, 512, k.sum()), rng.uniform(0, 512, k.sum())
        frames.append((x, y))
    m = measure_motion(frames, (512, 512))
    assert m is not None
    assert m.step_px == pytest.approx(1.0, rel=0.1)


def test_too_few_particles_keep_the_defaults_and_say_why() -> None:
    few = _brownian(3, 5, 1.0, 512, seed=3)
    assert MIN_PAIRS > 3 * 4
    assert measure_motion(few, (512, 512)) is None
    cfg, record = linking_from_motion(LinkingConfig(), None)
    assert cfg == LinkingConfig()
    assert record["search_range_from"] == "default"
    assert "fewer than" in record["measured"]


def test_sparse_keeps_memory_dense_shortens_it_and_options_win() -> None:
    sparse = Motion(step_px=1.0, density_per_px2=1e-5, pairs=100, frames=32)
    dense = Motion(step_px=1.0, density_per_px2=5e-3, pairs=100, frames=32)
    cfg, rec = linking_from_motion(LinkingConfig(), sparse)
    assert (cfg.search_range_px, cfg.memory) == (4.0, LinkingConfig().memory)
    assert rec["search_range_from"] == rec["memory_from"] == "data"
    cfg, _ = linking_from_motion(LinkingConfig(), dense)
    assert cfg.memory < 4  # fewer than one other particle where a missed track looks
    assert dense.density_per_px2 * np.pi * cfg.search_range_px**2 * (cfg.memory + 1) <= 1.0
    given = LinkingConfig(search_range_px=6.0)
    cfg, rec = linking_from_motion(given, dense)
    assert cfg.search_range_px == 6.0
    assert rec["search_range_from"] == "option"
    assert rec["memory_from"] == "data"


def test_a_dense_movie_is_not_over_linked() -> None:
    """The issue's case: a poor detector in a dense movie; the MSD a D is read from."""
    defaults, data = from_data_rows(quick=True)
    assert abs(data["msd_over_truth"] - 1) < 0.1
    assert abs(data["msd_over_truth"] - 1) < abs(defaults["msd_over_truth"] - 1)


def test_process_states_the_linking_it_used(tmp_path: Path, beads: Any) -> None:
    from livetrack.offline.job import ProcessOptions, process_movie
    from livetrack.simulation.io import write_movie

    from .conftest import small

    cfg = small(beads, 160, 160, number=40)
    path = tmp_path / "m.ome.tif"
    write_movie(cfg, path, 12, seed=4)
    rec = process_movie(path).attrs["livetrack"]["linking"]
    assert rec["search_range_from"] == "data"
    assert rec["memory_from"] == "data"
    assert rec["measured"]["pairs"] >= MIN_PAIRS
    assert rec["search_range_px"] == pytest.approx(4 * rec["measured"]["step_px"], abs=0.06)
    opts = ProcessOptions(linking=LinkingConfig(memory=2))
    rec = process_movie(path, options=opts).attrs["livetrack"]["linking"]
    assert rec["memory"] == 2
    assert rec["memory_from"] == "option"
    fixed = ProcessOptions(linking_from_data=False)
    rec = process_movie(path, options=fixed).attrs["livetrack"]["linking"]
    assert rec["search_range_px"] == LinkingConfig().search_range_px
    assert "search_range_from" not in rec
