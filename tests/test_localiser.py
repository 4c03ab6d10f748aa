"""The single-particle localiser: tiny real training, the shipped model, real colloids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from livetrack.artifact import ArtifactError, localiser_model_dir, read_card
from livetrack.config import presets_dir
from livetrack.training import load_training_config

from .conftest import REAL_DATA

TINY = """
[training]
model = "localiser"
name = "tiny-localiser"
crop = 32
downsample = 1
position_jitter_px = 4.0
channels = [4, 8, 8]
dense = 16
batch_size = 32
epochs = 3
patience = 3
learning_rate = 3e-3
train_samples = 160
validation_crops = 32
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from livetrack.training import train

    text = (presets_dir() / "trapped_colloid.toml").read_text()
    cfg = tmp_path_factory.mktemp("cfg") / "tiny_trap.toml"
    cfg.write_text(text.split("[training]")[0] + TINY)
    out = tmp_path_factory.mktemp("models") / "loc"
    result = train(cfg, out, verbose=0, workers=2)
    assert result.history["loss"][-1] < result.history["loss"][0]
    return out


@pytest.mark.slow
def test_tiny_localiser_trains_and_states_its_accuracy_beside_radial_symmetry(tiny: Path) -> None:
    card = read_card(tiny)
    assert card.outputs.kind == "localiser"
    assert card.outputs.crop_px == 32
    assert card.outputs.columns == ("x", "y", "x_sigma", "y_sigma")
    held = card.metrics["held_out_crops"]
    assert held["crops"] == 32
    for axis in ("dx_px", "dy_px"):
        # a tiny model, but calibrated: about 68 % within 1σ (32 crops: ± 0.08)
        assert 0.35 <= held[axis]["within_1_sigma"] <= 0.95, (axis, held[axis])
        assert held[axis]["rmse"] > 0
    # radial symmetry measured on the same crops, for comparison
    assert 0 < held["radial_symmetry_rmse_px"] < 1


def test_crop_models_are_refused_where_they_do_not_belong(tiny: Path) -> None:
    from livetrack.detection.detector import Detector
    from livetrack.holography.characterise import Characteriser
    from livetrack.single.localiser import CropLocaliser

    with pytest.raises(ArtifactError, match="not a detector"):
        Detector(tiny)
    with pytest.raises(ArtifactError, match="not a characteriser"):
        Characteriser(tiny)
    with pytest.raises(ArtifactError, match="not a single-particle localiser"):
        CropLocaliser(localiser_model_dir().parent / "default")


def test_process_cli_uses_a_localiser_only_with_single(tiny: Path, tmp_path: Path) -> None:
    from livetrack.cli import app
    from livetrack.simulation import write_movie

    sim, _, _ = load_training_config(presets_dir() / "trapped_colloid.toml")
    sim = sim.model_copy(
        update={"camera": sim.camera.model_copy(update={"width": 64, "height": 64})}
    )
    path, _ = write_movie(sim, tmp_path / "trap.ome.tif", 6, seed=2)
    runner = CliRunner()
    res = runner.invoke(
        app, ["process", str(path), "-o", str(tmp_path / "t.csv"), "--model", str(tiny)]
    )
    assert res.exit_code != 0
    assert "a localiser model, not a detector" in res.output
    assert "--single" in res.output
    out = tmp_path / "t2.csv"
    res = runner.invoke(
        app, ["process", str(path), "-o", str(out), "--single", "31", "--model", str(tiny)]
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert len(table) == 6
    assert table["particle"].nunique() == 1


def test_shipped_localiser_on_held_out_crops_is_accurate_and_honest() -> None:
    """Fresh simulated crops (a seed training never saw): sub-0.2 px, σ calibrated."""
    from livetrack.single.localiser import CropLocaliser
    from livetrack.training.localiser import localiser_metrics, render_localiser_crops

    loc = CropLocaliser(localiser_model_dir())
    sim, cfg, _ = load_training_config(presets_dir() / "trapped_colloid.toml")
    crops = render_localiser_crops(sim, 200, [4242, 7], cfg.crop, 1, cfg.position_jitter_px)
    mean, sigma = loc.predict(crops.images)
    m = localiser_metrics(mean, sigma, crops.truth, crops.baseline)
    assert m["rmse_px"] < 0.2
    for axis in ("dx_px", "dy_px"):
        assert 0.45 < m[axis]["within_1_sigma"] < 0.9


@pytest.mark.skipif(not (REAL_DATA / "brightfield_colloids").exists(), reason="no real movies")
def test_shipped_localiser_agrees_with_trackpy_on_real_brightfield_colloids() -> None:
    """Real colloids, one per 64 px crop (a trap-like field) around each reference track.

    No ground truth exists; trackpy's ``locate_brightfield_ring`` is the reference.
    The localiser must agree with it about as well as radial symmetry does.
    """
    from livetrack.single.detector import SingleParticleDetector

    base = REAL_DATA / "brightfield_colloids"
    movie = tifffile.imread(base / "brightfield.tif")
    ref = pd.read_csv(base / "trackpy_brightfield_ring_tracks.csv")
    h = 32
    detectors = {
        "cnn": SingleParticleDetector(31, localiser_model_dir()),
        "radial": SingleParticleDetector(31, template=False),
        "template": SingleParticleDetector(),  # the default: sized, its own template
    }
    spread = {}
    for name, det in detectors.items():
        err = []
        for _, g in ref.groupby("particle"):
            x0 = int(np.clip(round(g["x"].iloc[0]), h, movie.shape[2] - h))
            y0 = int(np.clip(round(g["y"].iloc[0]), h, movie.shape[1] - h))
            det.prepare(movie[g["frame"].to_numpy(int), y0 - h : y0 + h, x0 - h : x0 + h])
            for r in g.itertuples():
                d = det.detect(movie[int(r.frame), y0 - h : y0 + h, x0 - h : x0 + h])
                assert len(d) == 1
                err.append((d.x[0] + x0 - h - r.x, d.y[0] + y0 - h - r.y))
        e = np.asarray(err)
        assert np.all(np.hypot(*e.T) < 2.0)  # every frame: the same particle, near trackpy's
        spread[name] = float(np.sqrt(np.mean(e.std(axis=0) ** 2)))
    assert spread["cnn"] < 0.5
    assert spread["cnn"] < 1.5 * spread["radial"]
    assert spread["template"] < 1.1 * spread["radial"]
