"""Configuration: TOML presets validated on load.

Shared by every part; imports nothing from the parts.
"""

from livetrack.config._loader import (
    ConfigError,
    load_simulation_config,
    presets_dir,
    read_toml,
    resolve_config_path,
    validate_config,
)
from livetrack.config._models import (
    Camera,
    Distribution,
    Holography,
    Illumination,
    Motion,
    Optics,
    Particles,
    PresetInfo,
    SimulationConfig,
    Trap,
    Uniform,
    Zernike,
)

__all__ = [
    "Camera",
    "ConfigError",
    "Distribution",
    "Holography",
    "Illumination",
    "Motion",
    "Optics",
    "Particles",
    "PresetInfo",
    "SimulationConfig",
    "Trap",
    "Uniform",
    "Zernike",
    "load_simulation_config",
    "presets_dir",
    "read_toml",
    "resolve_config_path",
    "validate_config",
]
