from __future__ import annotations

from pathlib import Path

import pytest

from livetrack.config import ConfigError, load_simulation_config, presets_dir

PRESETS = sorted(p.stem for p in presets_dir().glob("*.toml"))

GOOD = (presets_dir() / "fluorescent_beads.toml").read_text()


def test_presets_exist_for_each_modality() -> None:
    modalities = {load_simulation_config(p).preset.modality for p in PRESETS}
    assert modalities == {"fluorescence", "brightfield", "holography"}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_is_physical(name: str) -> None:
    cfg = load_simulation_config(name)
    assert 0.01 < cfg.pixel_size_um < 1.0
    assert cfg.optics.numerical_aperture < cfg.optics.immersion_index
    assert cfg.camera.exposure_ms <= cfg.camera.frame_interval_ms


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("edit", "must_contain"),
    [
        # (replace old → new in the good file), fragments the message must contain
        (
            ("numerical_aperture = 0.95", "numerical_aperture = 1.2"),
            ["optics", "numerical_aperture", "1.2", "immersion_index"],
        ),
        (
            ("numerical_aperture = 0.95", "numerical_aperture = -1"),
            ["optics.numerical_aperture", "-1", "greater than 0"],
        ),
        (
            ("wavelength_um = 0.60", 'wavelength_um = "green"'),
            ["optics.wavelength_um", "'green'", "number"],
        ),
        (
            ("bit_depth = 16", "bit_depth = 4"),
            ["camera.bit_depth", "4", "greater than or equal to 8"],
        ),
        (
            ("exposure_ms = 10", "exposure_ms = 50"),
            ["camera", "exposure_ms (50.0)", "frame_interval_ms"],
        ),
        (('psf = "gaussian"', 'psf = "bessel"'), ["optics.psf", "'bessel'", "gaussian"]),
        (
            ("magnification = 100", "magnifcation = 100"),
            ["optics.magnifcation", "unknown key", "optics.magnification", "missing"],
        ),
        (
            ("photons = { mean = 2000,", "photons = { mean = -5,"),
            ["particles.photons", "mean (-5.0)", "[min, max]"],
        ),
        (
            ('modality = "fluorescence"', 'modality = "confocal"'),
            ["preset.modality", "'confocal'", "fluorescence"],
        ),
    ],
)
def test_bad_value_names_file_key_value_and_expectation(
    tmp_path: Path, edit: tuple[str, str], must_contain: list[str]
) -> None:
    old, new = edit
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_simulation_config(path)
    msg = str(info.value)
    assert str(path) in msg
    for fragment in must_contain:
        assert fragment in msg, f"{fragment!r} not in:\n{msg}"
    assert "Traceback" not in msg


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("width = 512", "width = = 512"))
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML: .*line \d+"):
        load_simulation_config(path)


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "\n[opticks]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section.*opticks.*expected sections"):
        load_simulation_config(path)


def test_missing_required_section(tmp_path: Path) -> None:
    text = GOOD.split("[optics]")[0]
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match="key 'optics': missing"):
        load_simulation_config(path)


def test_missing_file_and_unknown_preset() -> None:
    with pytest.raises(ConfigError, match=r"not a shipped preset.*fluorescent_beads"):
        load_simulation_config("no_such_preset")


def test_stokes_einstein() -> None:
    cfg = load_simulation_config("fluorescent_beads")
    # 100 nm radius in water at 295 K: D = kT/(6πηa) ≈ 2.16 µm²/s
    assert cfg.motion.stokes_einstein_um2_per_s(0.1) == pytest.approx(2.16, rel=0.01)


def test_imaged_plane_inside_the_spheres_is_refused(tmp_path: Path) -> None:
    text = (presets_dir() / "brightfield_colloids.toml").read_text()
    bad = text.replace("z_um = { min = 1.0, max = 3.0 }", "z_um = { min = 0.2, max = 3.0 }")
    assert bad != text
    with pytest.raises(ConfigError, match=r"inside|into the spheres.*\|z\| > radius"):
        load_simulation_config(_write(tmp_path, bad))
