"""The public verbs and `serve --config`: the library does what the CLI does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import livetrack
from livetrack.cli import app
from livetrack.config import ConfigError, SimulationConfig
from livetrack.service.settings import load_serve_settings
from livetrack.simulation import write_movie

from .conftest import small


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory, beads: SimulationConfig) -> Path:
    path = tmp_path_factory.mktemp("api") / "beads.ome.tif"
    write_movie(small(beads, 96, 80, number=8), path, 6, seed=11)
    return path


def test_process_movie_writes_what_the_cli_writes(movie: Path, tmp_path: Path) -> None:
    args = ["--classical", "--diameter", "7", "--minmass", "50"]
    cli_out = tmp_path / "cli" / "t.csv"
    result = CliRunner().invoke(app, ["process", str(movie), "-o", str(cli_out), *args])
    assert result.exit_code == 0, result.output
    api_out = tmp_path / "api" / "t.csv"
    table = livetrack.process_movie(movie, api_out, classical=True, diameter=7, minmass=50)
    cli_table = pd.read_csv(cli_out)
    pd.testing.assert_frame_equal(
        pd.read_csv(api_out), cli_table, check_dtype=False, check_exact=False, atol=1e-9
    )
    assert len(table) == len(cli_table) > 0
    cli_side = json.loads(cli_out.with_suffix(".json").read_text())
    api_side = json.loads(api_out.with_suffix(".json").read_text())
    assert set(cli_side) == set(api_side)
    for key in ("detector", "frames", "rows", "tracks", "linking", "pixel_size_um"):
        assert api_side[key] == cli_side[key], key
    assert table.attrs["livetrack"]["rows"] == len(table)


def test_process_movie_without_an_output_writes_nothing(movie: Path, tmp_path: Path) -> None:
    table = livetrack.process_movie(movie, classical=True)
    assert {"frame", "particle", "x", "y"} <= set(table.columns)
    assert sorted(table["frame"].unique().tolist()) == list(range(6))
    assert table.attrs["livetrack"]["frames"] == 6
    assert not list(tmp_path.iterdir())


def test_locate_and_link_give_trackpy_shaped_tables(beads: SimulationConfig) -> None:
    sim = livetrack.simulate(small(beads, 96, 80, number=6), frames=3, seed=4)
    features = livetrack.batch(sim.frames)
    assert list(features.columns[:3]) == ["frame", "x", "y"]
    first = features[features["frame"] == 0]
    truth = sim.truth[sim.truth["frame"] == 0]
    # every bright true particle has a detection within a pixel
    d = np.hypot(
        truth["x"].to_numpy()[:, None] - first["x"].to_numpy(),
        truth["y"].to_numpy()[:, None] - first["y"].to_numpy(),
    )
    bright = truth["snr"].to_numpy() > 5
    assert (d.min(axis=1)[bright] < 1.0).all()
    tracks = livetrack.link(features, search_range=5, memory=0)
    assert not tracks.duplicated(["particle", "frame"]).any()  # one row per track and frame
    assert tracks["particle"].nunique() < len(tracks)  # detections were linked across frames
    assert len(features) == len(tracks)


def test_serve_settings_come_from_the_file_and_the_command_line_overrides(tmp_path: Path) -> None:
    f = tmp_path / "service.toml"
    f.write_text(
        '[service]\npolicy = "lossless"\nqueue = 16\nsplit_near = [10.0, 12.0, 5.0]\n'
        "[linking]\nmemory = 3\n"
    )
    s = load_serve_settings(f, {"queue": 32, "model": None, "linking": {"search_range_px": 4.0}})
    assert s.policy == "lossless"
    assert s.queue == 32  # the command line wins
    assert s.split_near == (10.0, 12.0, 5.0)
    assert s.linking.memory == 3
    assert s.linking.search_range_px == 4.0
    assert s.service_config().linking == s.linking


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[service]\npolicy = "fast"\n', "policy"),
        ("[service]\nqueue = 0\n", "queue"),
        ("[service]\nsplit_near = [1.0, 2.0, 0.0]\n", "split_near"),
        ("[service]\nnonsense = 1\n", "nonsense"),
        ("[linking]\nmemory = -1\n", "memory"),
    ],
)
def test_a_bad_serve_file_is_one_clear_message(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=key) as err:
        load_serve_settings(f)
    assert "bad.toml" in str(err.value)
    result = CliRunner().invoke(app, ["serve", "--config", str(f), "--seconds", "0.1"])
    assert result.exit_code == 2
    assert result.output.count("error:") == 1
    assert key in result.output


def test_a_command_whose_extra_is_missing_says_which(tmp_path: Path) -> None:
    # the light install has no pandas: hide it from this process
    code = (
        "import sys; sys.modules['pandas'] = None; sys.argv = ['livetrack', 'process', "
        f"{str(tmp_path / 'm.tif')!r}, '-o', {str(tmp_path / 't.csv')!r}]; "
        "from livetrack.cli import main; main()"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "livetrack[track]" in p.stderr
    assert "Traceback" not in p.stderr
