from __future__ import annotations

from pathlib import Path

import pytest

from livetrack.config import SimulationConfig, load_simulation_config

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"


def pytest_configure(config: pytest.Config) -> None:
    """Tune the allocator as the CLI does: the tests run adapt and train in this process."""
    from livetrack.runtime import tune_allocator

    tune_allocator()


@pytest.fixture(scope="session")
def beads() -> SimulationConfig:
    return load_simulation_config("fluorescent_beads")


def small(
    cfg: SimulationConfig, width: int = 96, height: int = 80, **particles: object
) -> SimulationConfig:
    """A copy of a preset with a small field (fast tests)."""
    cam = cfg.camera.model_copy(update={"width": width, "height": height})
    parts = cfg.particles.model_copy(update=particles) if particles else cfg.particles
    return cfg.model_copy(update={"camera": cam, "particles": parts})
