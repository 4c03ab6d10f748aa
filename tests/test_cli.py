from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from livetrack.cli import app

runner = CliRunner()
COMMANDS = sorted(
    c.name or (c.callback.__name__.replace("_", "-") if c.callback else "")
    for c in app.registered_commands
)


def test_the_command_list_is_complete() -> None:
    assert {"simulate", "presets", "check-config", "train", "evaluate", "bench"} <= set(COMMANDS)


def test_top_level_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for c in COMMANDS:
        assert c in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_simulate_writes_ome_tiff_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "movie.ome.tif"
    result = runner.invoke(
        app, ["simulate", "fluorescent_beads", "-o", str(out), "--frames", "3", "--seed", "5"]
    )
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome
        data = tif.asarray()
        ome = tif.ome_metadata or ""
    assert data.shape == (3, 512, 512)
    assert re.search(r'PhysicalSizeX="0\.065"', ome)
    assert re.search(r'TimeIncrement="20(\.0)?"', ome)
    truth = pd.read_csv(tmp_path / "movie.truth.csv")
    assert set(truth["frame"]) == {0, 1, 2}
    assert {"x", "y", "particle", "snr"} <= set(truth.columns)


def test_simulate_bad_config_is_one_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[preset]\nname = "x"\nmodality = "fluorescence"\n[optics]\nwavelength_um = 0.6\n'
    )
    result = runner.invoke(app, ["simulate", str(bad), "-o", str(tmp_path / "m.tif")])
    assert result.exit_code == 2
    assert "numerical_aperture" in result.output
    assert "missing" in result.output
    assert "Traceback" not in result.output


def test_check_config_reports_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[preset\n")
    result = runner.invoke(app, ["check-config", "fluorescent_beads", str(bad)])
    assert result.exit_code == 1
    assert "not valid TOML" in result.output


def test_installed_entry_point_runs() -> None:
    exe = Path(sys.executable).with_name("livetrack")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "livetrack.cli"]
    proc = subprocess.run(
        [*cmd, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("livetrack ")


@pytest.mark.parametrize("bad", ["1,2", "a,b,c", "10,10,0"])
def test_serve_split_near_bad_value_is_one_clear_message(bad: str) -> None:
    result = runner.invoke(app, ["serve", "--split-near", bad, "--seconds", "0.1"])
    assert result.exit_code == 2
    assert "--split-near" in result.output
    assert result.output.count("error:") == 1


def test_process_refuses_a_negative_brightness_penalty(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "process",
            str(tmp_path / "m.tif"),
            "-o",
            str(tmp_path / "t.csv"),
            "--brightness-penalty",
            "-1",
        ],
    )
    assert result.exit_code == 2
    assert "linking options" in result.output
    assert "brightness_penalty" in result.output
