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


@pytest.mark.slow
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
    # σ calibrated on the validation crops (68.3 % within 1σ there), applied on load
    assert len(card.outputs.sigma_scale) == 3
    assert all(s > 0 for s in card.outputs.sigma_scale)
    assert held["sigma_scale"] == list(card.outputs.sigma_scale)
    for name in ("radius_um", "refractive_index", "z_um"):
        # a tiny model, but calibrated: about 68 % within 1σ (48 crops: ± 0.07)
        assert 0.4 <= held[name]["within_1_sigma"] <= 0.95, (name, held[name])
        assert held[name]["rmse"] > 0
    assert card.training.command.startswith("livetrack train")


def test_characteriser_reads_spheres_in_a_frame_and_detectors_refuse_it(
    tiny: tuple[Path, dict[str, list[float]]],
) -> None:
    from livetrack.detection.detector import Detector
    from livetrack.holography.characterise import Characteriser
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
        Detector(out)


def test_crops_are_centred_on_the_particle() -> None:
    """A sphere's hologram is centro-symmetric: the crop's centre is its centre."""
    from livetrack.detection.normalise import normalise_hologram
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


def test_the_shipped_characteriser_with_the_fit_measures_spheres_in_a_frame() -> None:
    """Network, then fit: one sphere inside, one with its crop cut by the frame's edge."""
    from livetrack.artifact import characteriser_model_dir
    from livetrack.holography.characterise import Characteriser
    from livetrack.simulation.camera import expose
    from livetrack.simulation.lorenzmie import hologram

    sim, _, _ = load_training_config(presets_dir() / "holography_spheres.toml")
    px = sim.pixel_size_um
    x, y = np.array([200.3, 30.4]), np.array([110.6, 140.3])  # apart: the crops see one sphere
    a, m, z = np.array([0.9, 0.7]), np.array([1.59, 1.52]), np.array([12.0, 10.0])
    intensity, _ = hologram(
        (256, 320), x, y, z / px, a, m, pixel_um=px, n_medium=sim.optics.medium_index,
        wavelength_um=sim.optics.wavelength_um, patch_half_width=96,
    )  # fmt: skip
    rng = np.random.default_rng(7)
    frame = expose(intensity * 4000.0, sim.camera, rng)
    ch = Characteriser(characteriser_model_dir())
    found_x, found_y = x + rng.normal(0, 0.7, 2), y + rng.normal(0, 0.7, 2)
    net = ch.characterise(frame, found_x, found_y)
    assert net.position is None
    got = ch.characterise(frame, found_x, found_y, fit=True)
    assert list(got.edge) == [False, True]
    assert got.position is not None
    assert got.reduced_chi2 is not None
    assert np.all(np.abs(got.mean[:, 1] - m) < 1e-3)
    assert np.all(np.abs(got.mean[:, 0] - a) < 5e-3)
    assert np.all(np.abs(got.position - np.column_stack([x, y])) < 0.05)
    assert np.all(got.reduced_chi2 < 1.1)
    assert np.all(got.sigma < net.sigma)  # the fit states (and earns) a smaller σ
    assert {"fit_x", "fit_y", "fit_reduced_chi2"} <= set(got.as_dict())


def test_the_fit_needs_the_medium_index_on_the_card(
    tiny: tuple[Path, dict[str, list[float]]], tmp_path: Path
) -> None:
    import shutil

    from livetrack.artifact import write_card
    from livetrack.holography.characterise import Characteriser

    out, _ = tiny
    assert read_card(out).expects.medium_index == 1.34  # train writes it
    old = tmp_path / "old"
    shutil.copytree(out, old)
    card = read_card(old)
    write_card(
        old,
        card.model_copy(update={"expects": card.expects.model_copy(update={"medium_index": None})}),
    )
    ch = Characteriser(old)
    frame = np.full((80, 80), 100, np.uint8)
    assert ch.characterise(frame, np.array([40.0]), np.array([40.0])).mean.shape == (1, 3)
    with pytest.raises(ArtifactError, match="medium_index"):
        ch.characterise(frame, np.array([40.0]), np.array([40.0]), fit=True)


def test_saturation_is_guessed_from_a_full_scale_maximum() -> None:
    from livetrack.holography.characterise import guess_saturation

    assert guess_saturation(np.array([[3, 255]], np.uint16)) == 255.0
    assert guess_saturation(np.array([[3, 4095]], np.uint16)) == 4095.0
    assert guess_saturation(np.array([[3, 4000]], np.uint16)) == np.inf
    assert guess_saturation(np.array([[3, 127]], np.uint8)) == np.inf


def test_sigma_calibration_puts_68_percent_within_one_sigma() -> None:
    from livetrack.holography.characterise import decode
    from livetrack.training.characteriser import calibrate_sigma

    rng = np.random.default_rng(0)
    truth = rng.uniform(-1, 1, (4000, 2))
    stated = np.full((4000, 2), 0.1)
    mean = truth + rng.normal(0, 1, (4000, 2)) * stated * np.array([1.5, 0.8])  # σ off
    scale = calibrate_sigma(mean, stated, truth)
    assert scale == pytest.approx((1.5, 0.8), rel=0.06)
    raw = np.column_stack([mean, 2 * np.log(stated)])
    _, sigma = decode(raw, (0.0, 0.0), (1.0, 1.0), scale)
    within = np.mean(np.abs(mean - truth) <= sigma, axis=0)
    assert np.allclose(within, 0.6827, atol=0.002)
