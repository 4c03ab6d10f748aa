"""The characterisation model: tiny real training, the artifact, crops, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livetrack.artifact import ArtifactError, read_card
from livetrack.config import presets_dir
from livetrack.training import load_training_config

TINY = """
[training]
model = "characteriser"
name = "tiny-characteriser"
crop = 64
downsample = 2
channels = [4, 8, 8]
dense = 16
batch_size = 32
epochs = 4
patience = 4
learning_rate = 3e-3
train_samples = 192
validation_crops = 48
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[float]]]:
    from livetrack.training import train

    text = (presets_dir() / "holography_spheres.toml").read_text()
    cfg = tmp_path_factory.mktemp("cfg") / "tiny_holo.toml"
    cfg.write_text(text.split("[training]")[0] + TINY)
    out = tmp_path_factory.mktemp("models") / "char"
    result = train(cfg, out, verbose=0, workers=2)
    return out, result.history


def test_tiny_characteriser_trains_and_states_its_accuracy(
    tiny: tuple[Path, dict[str, list[float]]],
) -> None:
    out, history = tiny
    assert history["loss"][-1] < history["loss"][0]
    card = read_card(out)
    assert card.outputs.kind == "characteriser"
    assert card.outputs.crop_px == 64
    held = card.metrics["held_out_crops"]
    assert held["crops"] == 48
    for name in ("radius_um", "refractive_index", "z_um"):
        assert 0 <= held[name]["within_1_sigma"] <= 1
        assert held[name]["rmse"] > 0
    assert card.training.command.startswith("livetrack train")


def test_characteriser_reads_spheres_in_a_frame_and_detectors_refuse_it(
    tiny: tuple[Path, dict[str, list[float]]],
) -> None:
    from livetrack.inference.characterise import Characteriser
    from livetrack.inference.detector import KerasDetector
    from livetrack.simulation.scene import simulate_movie

    out, _ = tiny
    ch = Characteriser(out)
    sim, _, _ = load_training_config(presets_dir() / "holography_spheres.toml")
    movie = simulate_movie(sim, 1, seed=4)
    truth = movie.truth
    got = ch.characterise(movie.frames[0], truth["x"].to_numpy(), truth["y"].to_numpy())
    assert got.mean.shape == got.sigma.shape == (len(truth), 3)
    assert np.all(np.isfinite(got.mean))
    assert np.all(got.sigma > 0)
    assert set(got.as_dict()) >= {"radius_um", "radius_um_sigma", "z_um_sigma"}
    empty = ch.characterise(movie.frames[0], np.zeros(0), np.zeros(0))
    assert empty.mean.shape == (0, 3)
    with pytest.raises(ArtifactError, match="not a detector"):
        KerasDetector(out)


def test_crops_are_centred_on_the_particle() -> None:
    """A sphere's hologram is centro-symmetric: the crop's centre is its centre."""
    from livetrack.inference._normalise import normalise_hologram
    from livetrack.simulation.lorenzmie import hologram

    sim, _, _ = load_training_config(presets_dir() / "holography_spheres.toml")
    px = sim.pixel_size_um
    frame, _ = hologram(
        (200, 240), np.array([131.0]), np.array([77.0]), np.array([10.0 / px]),
        np.array([1.0]), np.array([1.55]), pixel_um=px, n_medium=sim.optics.medium_index,
        wavelength_um=sim.optics.wavelength_um,
    )  # fmt: skip
    img = normalise_hologram(frame[77 - 32 : 77 + 32, 131 - 32 : 131 + 32], 1)
    assert np.allclose(img[1:, 1:], img[1:, 1:][::-1, ::-1], atol=0.05)
    assert np.allclose(img, img.T, atol=0.2)  # nearly round (the polarisation breaks it)
