"""The ``[training]`` section of a preset: model size, schedule, domain randomisation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from livetrack.config import (
    SimulationConfig,
    load_simulation_config,
    read_toml,
    resolve_config_path,
    validate_config,
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Randomisation(_Frozen):
    """Ranges of the physical parameters drawn for every training crop."""

    sigma_scale: tuple[float, float] = (0.8, 1.25)
    photons: tuple[float, float] = (80.0, 30000.0)  # log-uniform
    background_photons: tuple[float, float] = (2.0, 60.0)  # log-uniform
    particles_per_crop: tuple[int, int] = (0, 10)
    gradient: Annotated[float, Field(ge=0, lt=1)] = 0.3
    read_noise_e: tuple[float, float] = (0.5, 3.0)
    gain_adu_per_e: tuple[float, float] = (0.5, 4.0)
    offset_adu: tuple[float, float] = (0.0, 400.0)
    z_um: tuple[float, float] = (-0.3, 0.3)
    min_snr_label: Annotated[float, Field(ge=0)] = 1.0  # weaker particles are ignored in the loss

    @model_validator(mode="after")
    def _ordered(self) -> Randomisation:
        for name in (
            "sigma_scale",
            "photons",
            "background_photons",
            "particles_per_crop",
            "read_noise_e",
            "gain_adu_per_e",
            "offset_adu",
            "z_um",
        ):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: min {lo} exceeds max {hi}")
        return self


class TrainingConfig(_Frozen):
    """How to train the detector."""

    model: Literal["detector", "characteriser", "localiser"] = "detector"
    name: str = "detector"
    channels: tuple[int, int, int] = (24, 32, 32)
    crop: Annotated[int, Field(ge=16, le=512, multiple_of=4)] = 64
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 32
    steps_per_epoch: Annotated[int, Field(ge=1)] = 200
    epochs: Annotated[int, Field(ge=1)] = 40
    learning_rate: Annotated[float, Field(gt=0, lt=1)] = 2e-3
    patience: Annotated[int, Field(ge=1)] = 6
    validation_crops: Annotated[int, Field(ge=8)] = 512
    positive_weight: Annotated[float, Field(gt=0)] = 4.0
    seed: int = 0
    randomisation: Randomisation = Randomisation()
    # characteriser and localiser: crops of this size around each particle,
    # block-averaged by ``downsample``; ``train_samples`` crops rendered once, the
    # position jittered as much as the detector errs (localiser: as far as the
    # particle may be from the crop's centre). A brightfield or holography
    # detector also trains on ``train_samples`` rendered crops (steps_per_epoch
    # is then train_samples / batch_size)
    downsample: Annotated[int, Field(ge=1, le=8)] = 2
    train_samples: Annotated[int, Field(ge=16)] = 20000
    position_jitter_px: Annotated[float, Field(ge=0)] = 1.5
    dense: Annotated[int, Field(ge=4)] = 128
    # the frames the score threshold is calibrated on: the standard ones (SNR 2, 4 and
    # 7 at two densities) or the preset's own (``adapt``: the movie's SNR and density)
    calibrate_on: Literal["scenarios", "preset"] = "scenarios"


def load_training_config(path: str | Path) -> tuple[SimulationConfig, TrainingConfig, Path]:
    """Load a preset and its ``[training]`` section (defaults when absent)."""
    p = resolve_config_path(path)
    sim = load_simulation_config(p)
    data = read_toml(p).get("training", {})
    return sim, validate_config(data, TrainingConfig, f"{p} [training]"), p
