"""``livetrack adapt``: a movie whose optics and camera are not the shipped preset's is
measured, its preset written, a detector fine-tuned for it (seconds here), and the
result used by ``process``; movies it cannot fit say why and leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from livetrack.adapt import AdaptError, adapt_movie, measure_movie
from livetrack.adapt.measure import central_fraction
from livetrack.artifact import default_model_dir, read_card
from livetrack.config import SimulationConfig, load_simulation_config
from livetrack.simulation import simulate_movie
from livetrack.simulation.psf import GaussianPSF


def off_preset(
    beads: SimulationConfig, psf_scale: float, size: int = 192, number: int = 40
) -> SimulationConfig:
    """The bead preset with another PSF width, another camera, another brightness."""
    optics = beads.optics.model_copy(
        update={"wavelength_um": beads.optics.wavelength_um * psf_scale}
    )
    camera = beads.camera.model_copy(
        update={"width": size, "height": size, "offset_adu": 400.0, "gain_adu_per_e": 1.0}
    )
    photons = beads.particles.photons.model_copy(update={"mean": 900.0, "std": 250.0, "min": 300.0})
    particles = beads.particles.model_copy(update={"number": number, "photons": photons})
    light = beads.illumination.model_copy(update={"background_photons": 25.0})
    update = {"optics": optics, "camera": camera, "particles": particles, "illumination": light}
    return beads.model_copy(update=update)


@pytest.mark.parametrize("psf_scale", [0.65, 1.5])
def test_the_movie_is_measured_as_the_simulator_made_it(
    beads: SimulationConfig, psf_scale: float
) -> None:
    cfg = off_preset(beads, psf_scale)
    movie = simulate_movie(cfg, 6, seed=2)
    m = measure_movie(movie.frames, read_card(default_model_dir()))
    true_sigma = GaussianPSF.from_optics(cfg.optics).sigma_px
    assert m.sigma_px == pytest.approx(true_sigma, rel=0.08)  # defocus widens a few
    # a flat field cannot tell the gain: the movie is described in effective electrons
    # whose level, noise and spot SNR are the movie's
    assert m.camera_from.startswith("effective")
    noise = np.sqrt(25.0 + 1.5**2)  # ADU (gain 1): Poisson background and read noise
    assert m.noise_adu == pytest.approx(noise, rel=0.1)
    assert m.offset_adu + m.gain_adu_per_e * m.background_photons == pytest.approx(425, abs=2)
    assert m.gain_adu_per_e * np.sqrt(m.background_photons + 1.5**2) == pytest.approx(
        m.noise_adu, rel=1e-6
    )
    assert m.peak_snr[1] == pytest.approx(900.0 * central_fraction(true_sigma) / noise, rel=0.3)
    assert m.per_frame == pytest.approx(40, rel=0.3)
    assert m.spots >= 12


def test_a_movie_without_particles_is_refused_with_what_was_found(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    empty = (rng.poisson(30.0, (5, 128, 128)) + 100).astype(np.uint16)
    path = tmp_path / "empty.tif"
    tifffile.imwrite(path, empty, photometric="minisblack")
    with pytest.raises(AdaptError, match=r"found \d+ isolated spots in 5 frames"):
        adapt_movie(path, tmp_path / "model", epochs=1, steps_per_epoch=1, verbose=0)
    assert not (tmp_path / "model").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["empty.tif"]  # nothing half-written


def _dark_movie(frames: int, seed: int) -> tuple[np.ndarray, Any, float]:
    """Absorbing spots of the shipped PSF's width on a bright field (the bench's simulator)."""
    from livetrack.bench._offconfig import off_config_movie

    sigma = read_card(default_model_dir()).expects.psf_sigma_px
    return off_config_movie(
        1.2, 0.0, 4.0, frames, seed, sigma, n=40, size=192, background_e=1000.0, dark=True
    )


def test_dark_particles_are_measured_as_the_model_will_see_them() -> None:
    movie, _, sigma = _dark_movie(4, 1)
    m = measure_movie(movie, read_card(default_model_dir()))
    assert m.polarity == "dark-on-bright"
    assert m.sigma_px == pytest.approx(sigma, rel=0.08)
    assert m.per_frame == pytest.approx(40, rel=0.3)
    assert m.peak_snr[1] == pytest.approx(4.0, rel=0.3)


@pytest.mark.parametrize("dark", [False, True], ids=["bright", "dark"])
def test_a_steep_ramp_on_a_bright_background_gives_a_preset_that_trains(
    tmp_path: Path, dark: bool
) -> None:
    """A ramp of ~9 noise σ across a 1000 e field: in real electrons where the gain can
    be read (the dark movie), else on an effective background high enough that the
    ramp stays below the simulator's limit (the bright one); the width is the spots'."""
    from livetrack.adapt.measure import MAX_EFFECTIVE_GRADIENT
    from livetrack.adapt.preset import adapted_preset, write_preset
    from livetrack.bench._offconfig import off_config_movie

    card = read_card(default_model_dir())
    movie, _, sigma = off_config_movie(
        1.6, 0.3, 3.0, 4, 400, card.expects.psf_sigma_px, background_e=1000.0, dark=dark
    )
    m = measure_movie(movie, card)
    assert m.sigma_px == pytest.approx(sigma, rel=0.05)  # not the ramp's width
    if dark:
        assert m.camera_from == "offset: data, gain: data"
        assert m.gain_adu_per_e == pytest.approx(2.0, rel=0.05)
        assert max(map(abs, m.gradient)) == pytest.approx(0.3, rel=0.1)
    else:
        assert m.camera_from.startswith("effective")
        assert max(map(abs, m.gradient)) == pytest.approx(MAX_EFFECTIVE_GRADIENT, rel=0.05)
    # the ramp in noise σ is the movie's: 0.3 × 1000 e × 2 ADU/e over its noise
    ramp_sigmas = max(map(abs, m.gradient)) * m.background_photons * m.gain_adu_per_e
    assert ramp_sigmas / m.noise_adu == pytest.approx(600 / np.sqrt(1000 * 4 + 16), rel=0.15)
    data = adapted_preset(m, "steep", "movie.tif", None, None, 1, 1)
    load_simulation_config(write_preset(data, tmp_path / "preset.toml", m, "movie.tif"))


@pytest.mark.slow
def test_a_model_adapted_to_dark_particles_inverts_the_frames_itself(tmp_path: Path) -> None:
    from livetrack.detection.camera import in_model_camera
    from livetrack.linking.scores import detection_scores
    from livetrack.offline.process import DetectorSpec, track_movie

    movie, truth, _ = _dark_movie(6, 2)
    path = tmp_path / "dark.tif"
    tifffile.imwrite(path, movie, photometric="minisblack")
    result = adapt_movie(path, tmp_path / "dark", epochs=1, steps_per_epoch=3, verbose=0)
    card = read_card(result.model)
    assert card.expects.polarity == "dark-on-bright"
    assert card.expects.inverts
    assert (result.model / "fit.png").stat().st_size > 0
    # no --invert: the card asks for it, in process as in serve (in_model_camera)
    adapted, _, _ = track_movie(path, DetectorSpec(model=str(result.model)))
    s = detection_scores(truth, adapted, gate=2.0)
    assert s.recall >= 0.9
    assert s.precision >= 0.9
    shipped, _, _ = track_movie(path, DetectorSpec())
    assert detection_scores(truth, shipped, gate=2.0).recall < 0.1  # what users had before
    frame = movie[0].astype(np.float32)
    seen = in_model_camera(frame, card.expects.camera_offset_adu, None, card)
    assert np.corrcoef(seen.ravel(), frame.ravel())[0, 1] < -0.99
    import livetrack

    located = livetrack.locate(movie[0], result.model)  # the Python API too
    assert detection_scores(truth[truth.frame == 0], located, gate=2.0).recall >= 0.9


def test_the_simulators_sphere_is_fitted_to_a_movie_of_its_rings() -> None:
    from livetrack.adapt.rings import measure_rings

    cfg = load_simulation_config("brightfield_colloid_detector")
    p = cfg.particles
    parts = p.model_copy(update={
        "number": 10, "radius_um": p.radius_um.model_copy(update={"mean": 1.0, "std": 0.0}),
        "refractive_index": p.refractive_index.model_copy(update={"mean": 1.45, "std": 0.0}),
        "z_um": p.z_um.model_copy(update={"min": 3.0, "max": 3.0}),
    })  # fmt: skip
    cam = cfg.camera.model_copy(update={"width": 256, "height": 256})
    movie = simulate_movie(cfg.model_copy(update={"camera": cam, "particles": parts}), 6, seed=2)
    measured, (mean, fitted) = measure_rings(movie.frames, None)
    assert measured.crops >= 30
    assert measured.residual < 0.08  # of the particle's range: the look is reproduced
    # radius, index and height trade off (the fit has no coherence blur): the radius and
    # index come out near the truth, the height less so (1.4 µm here)
    assert abs(measured.radius_um - 1.0) < 0.15
    assert abs(measured.refractive_index - 1.45) < 0.04
    assert mean.shape == fitted.shape
    assert measured.agreement > 0.98  # one kind of particle
    assert measured.caution() is None


def test_particles_at_many_focal_planes_are_flagged_not_averaged_silently() -> None:
    from livetrack.adapt.rings import MIN_AGREEMENT, measure_rings

    cfg = load_simulation_config("brightfield_colloid_detector")
    p = cfg.particles
    parts = p.model_copy(update={"number": 10, "z_um": p.z_um.model_copy(
        update={"min": 2.0, "max": 15.0})})  # fmt: skip
    cam = cfg.camera.model_copy(update={"width": 256, "height": 256})
    movie = simulate_movie(cfg.model_copy(update={"camera": cam, "particles": parts}), 6, seed=2)
    measured, _ = measure_rings(movie.frames, None)
    assert measured.agreement < MIN_AGREEMENT
    message = measured.caution()
    assert message is not None
    assert "differ" in message
    assert "--self-supervised" in message
    assert measured.as_record()["agreement"] == measured.agreement  # on the card too


@pytest.mark.parametrize("z_um", [10.0, 1.5])
def test_particles_that_differ_are_trained_for_over_a_spread_of_heights_and_contrasts(
    tmp_path: Path, z_um: float
) -> None:
    from dataclasses import replace

    from livetrack.adapt.rings import RingsMeasured, rings_preset, write_rings_preset

    one_kind = RingsMeasured(
        frames=16, shape=(400, 400), crops=25, half_px=11, pixel_um=0.152,
        pixel_from="assumed", radius_um=1.3, refractive_index=1.45, z_um=z_um,
        reduced_chi2=1.0, residual=0.05, background_adu=125.0, per_frame=2.0, agreement=0.99,
    )  # fmt: skip
    particles = {}
    for m in (one_kind, replace(one_kind, agreement=0.85)):
        data = rings_preset(m, "t", "movie.tif", 1, 1)
        path = write_rings_preset(data, tmp_path / f"{m.agreement}.toml", m, "movie.tif")
        cfg = load_simulation_config(path)  # the simulator takes it as it is
        particles[m.spread] = cfg.particles
        medium = cfg.optics.medium_index
    one, many = particles[False], particles[True]
    # dark and bright cores: the index on both sides of the medium's, as above and below focus
    assert many.refractive_index.min < medium < many.refractive_index.max
    assert not one.refractive_index.min < medium < one.refractive_index.max
    assert (many.z_um.max - many.z_um.min) > 4 * (one.z_um.max - one.z_um.min)
    assert many.radius_um.min < 0.6 * 1.3 < 1.4 * 1.3 < many.radius_um.max  # fitted 1.3
    for p in (one, many):  # the focal plane outside every sphere, even if fitted near
        assert p.z_um.min > p.radius_um.max
    assert "differ" in (tmp_path / "0.85.toml").read_text()


def test_too_few_rings_to_fit_are_refused_with_what_was_found() -> None:
    from livetrack.adapt.rings import measure_rings

    cfg = load_simulation_config("brightfield_colloid_detector")
    cam = cfg.camera.model_copy(update={"width": 96, "height": 96})
    parts = cfg.particles.model_copy(update={"number": 1})
    movie = simulate_movie(cfg.model_copy(update={"camera": cam, "particles": parts}), 2, seed=1)
    with pytest.raises(AdaptError, match=r"found \d+ isolated rings in 2 frames"):
        measure_rings(movie.frames, None)


def test_a_movie_of_rings_is_refused_not_fitted_wrongly() -> None:
    from .conftest import REAL_DATA

    path = REAL_DATA / "deeptrack_videos" / "brownian_particles_gray.tif"
    if not path.exists():
        pytest.skip("the real movies are not here")
    with pytest.raises(AdaptError, match="rings"):  # bright cores in dark rings
        measure_movie(tifffile.imread(path)[:4], read_card(default_model_dir()))


@pytest.mark.slow
def test_adapt_fits_real_rings_and_process_finds_the_experts_beads(tmp_path: Path) -> None:
    from livetrack.bench._lodestar import _matched, expert_trackpy
    from livetrack.offline.process import DetectorSpec, track_movie

    from .conftest import REAL_DATA

    path = REAL_DATA / "deeptrack_videos" / "brownian_particles_gray.tif"
    if not path.exists():
        pytest.skip("the real movies are not here")
    result = adapt_movie(path, tmp_path / "rings", epochs=4, steps_per_epoch=50, verbose=0)
    card = read_card(result.model)
    assert card.metrics["adaptation"]["base_model"] == "brightfield-colloid-detector"
    assert card.expects.modality == "brightfield"
    assert card.outputs.refinement == "radial_symmetry"  # the rings centred on themselves
    assert card.outputs.symmetry_half_px == card.metrics["adaptation"]["measured"]["half_px"]
    assert card.outputs.min_symmetry_f > 0  # and what is not a ring is dropped
    assert (result.model / "fit.png").stat().st_size > 0
    load_simulation_config(result.model / "preset.toml")  # editable, and it loads
    frames = tifffile.imread(path)[:10]
    tifffile.imwrite(tmp_path / "ten.tif", frames)
    ours, _, _ = track_movie(tmp_path / "ten.tif", DetectorSpec(model=str(result.model)))
    ref = expert_trackpy(frames)
    inner = ref[(ref.x > 12) & (ref.y > 12) & (ref.x < 487) & (ref.y < 487)]
    assert _matched(inner, ours, 1.0)[0] >= 0.9  # the shipped brightfield detector: 0.11


@pytest.mark.slow
def test_adapt_writes_preset_picture_and_a_model_process_uses(
    tmp_path: Path, beads: SimulationConfig
) -> None:
    cfg = off_preset(beads, 1.5)
    movie = simulate_movie(cfg, 8, seed=3)
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, movie.frames, photometric="minisblack")
    out = tmp_path / "models" / "wide"
    result = adapt_movie(path, out, epochs=1, steps_per_epoch=3, verbose=0)
    assert result.model == out
    assert {p.name for p in out.iterdir()} >= {"model.keras", "card.json", "preset.toml", "fit.png"}
    assert [p.name for p in out.parent.iterdir()] == ["wide"]  # the work folder is gone
    # the preset is a valid, editable preset whose simulator has the measured width
    preset = load_simulation_config(out / "preset.toml")
    assert GaussianPSF.from_optics(preset.optics).sigma_px == pytest.approx(
        result.measured.sigma_px, rel=1e-3
    )
    assert preset.camera.offset_adu == pytest.approx(result.measured.offset_adu, abs=0.01)
    card = read_card(out)
    assert card.expects.psf_sigma_px == pytest.approx(result.measured.sigma_px, rel=1e-3)
    assert card.metrics["adaptation"]["movie"] == str(path)
    assert card.training.command.startswith("livetrack adapt")
    # the adapted model is a model like any other: process takes it
    table = tmp_path / "wide.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "livetrack.cli", "process", str(path), "-o", str(table),
         "--model", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert table.stat().st_size > 100
    # a second adapt into the same folder is refused unless forced
    with pytest.raises(AdaptError, match="exists"):
        adapt_movie(path, out, epochs=1, steps_per_epoch=1, verbose=0)


def test_the_command_says_what_it_found_and_writes_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from livetrack.cli import app

    rng = np.random.default_rng(1)
    path = tmp_path / "empty.tif"
    tifffile.imwrite(
        path, (rng.poisson(30.0, (4, 96, 96)) + 100).astype(np.uint16), photometric="minisblack"
    )
    result = CliRunner().invoke(app, ["adapt", str(path), "-o", str(tmp_path / "m"), "--quiet"])
    assert result.exit_code != 0
    assert "isolated spots in 4 frames" in result.output
    assert not (tmp_path / "m").exists()


def test_an_adapted_models_threshold_is_calibrated_on_its_own_movies_frames(
    tmp_path: Path,
) -> None:
    """The preset says so, and the calibration then scores the preset's own frames."""
    from livetrack.adapt.preset import adapted_preset, write_preset
    from livetrack.bench._offconfig import off_config_movie
    from livetrack.detection.detector import Detector
    from livetrack.training._config import load_training_config
    from livetrack.training._threshold import calibrate_threshold

    card = read_card(default_model_dir())
    movie, _, _ = off_config_movie(1.0, 0.0, 3.0, 4, 7, card.expects.psf_sigma_px, n=60, size=128)
    m = measure_movie(movie, card)
    data = adapted_preset(m, "own", "movie.tif", None, None, 1, 1)
    sim, cfg, _ = load_training_config(write_preset(data, tmp_path / "p.toml", m, "m.tif"))
    assert cfg.calibrate_on == "preset"
    model = Detector(precision="float32").model  # the shipped network stands for the adapted
    own = calibrate_threshold(model, sim, 0, own=True)
    standard = calibrate_threshold(model, sim, 0)
    assert len(own["f1_by_case"]) == 1  # the preset's own frames
    assert len(standard["f1_by_case"]) == 6  # SNR 2, 4, 7 at two densities
    assert own["mean_f1"] > 0.75  # spots like the model's own, at the movie's SNR 3
    assert 0.3 <= own["threshold"] <= 0.9
