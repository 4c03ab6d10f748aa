"""``livetrack train`` for crop models: ``[training] model = "characteriser"`` or ``"localiser"``.

Both read a crop around one particle and predict quantities each with a
log-variance (Gaussian NLL); they differ in what the crops show and what the
outputs mean.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livetrack.artifact import (
    MODEL_NAME,
    Expects,
    ModelCard,
    Outputs,
    Training,
    modality_polarity,
    write_card,
)
from livetrack.config import SimulationConfig
from livetrack.holography.characterise import decode
from livetrack.runtime import package_versions
from livetrack.simulation import GaussianPSF
from livetrack.training._config import TrainingConfig
from livetrack.training._fit import callbacks, prepare
from livetrack.training._flops import count_flops
from livetrack.training.characteriser import (
    PARAMETERS,
    build_characteriser,
    calibrate_sigma,
    gaussian_nll,
    held_out_metrics,
    parameter_ranges,
    render_crops_parallel,
    scales,
)
from livetrack.training.localiser import (
    PARAMETERS as OFFSETS,
)
from livetrack.training.localiser import (
    localiser_metrics,
    localiser_ranges,
    particle_radius_range,
    render_localiser_crops,
)


@dataclass(frozen=True)
class _Task:
    """What the crops show and what the network predicts: a localiser or a characteriser."""

    localiser: bool
    names: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]
    centre: np.ndarray
    half: np.ndarray
    render: Any  # crop renderer (None: the characteriser's holograms)

    @classmethod
    def of(cls, sim: SimulationConfig, cfg: TrainingConfig) -> _Task:
        localiser = cfg.model == "localiser"
        names = tuple(OFFSETS if localiser else PARAMETERS)
        ranges = localiser_ranges(cfg.position_jitter_px) if localiser else parameter_ranges(sim)
        centre, half = scales(ranges, names)
        return cls(
            localiser, names, ranges, centre, half, render_localiser_crops if localiser else None
        )

    def crops(
        self, sim: SimulationConfig, cfg: TrainingConfig, n: int, seed: int, workers: int
    ) -> Any:
        return render_crops_parallel(
            sim, n, seed, cfg.crop, cfg.downsample, cfg.position_jitter_px, workers, self.render
        )

    def targets(self, truth: np.ndarray) -> np.ndarray:
        return np.asarray((truth - self.centre) / self.half)


def _model(task: _Task, cfg: TrainingConfig, ckpt_dir: Path, resume: bool) -> tuple[Any, int, int]:
    """The network, compiled (resumed when asked); the first epoch and the steps per epoch."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    channels = (int(cfg.channels[0]), int(cfg.channels[1]), int(cfg.channels[2]))
    model = build_characteriser(
        cfg.crop // cfg.downsample, channels, cfg.dense, cfg.seed, outputs=len(task.names),
        name="livetrack_localiser" if task.localiser else "livetrack_characteriser",
    )  # fmt: skip
    steps = max(1, cfg.train_samples // cfg.batch_size)
    return model, prepare(model, cfg, steps, gaussian_nll(), ckpt_dir, resume), steps


def _held_out(
    model: Any, task: _Task, val_set: Any, sim: SimulationConfig, cfg: TrainingConfig, workers: int
) -> tuple[dict[str, Any], tuple[float, ...]]:
    """Calibrate σ on the validation crops, then measure on crops neither step saw."""
    val_raw = model.predict(val_set.images, batch_size=256, verbose=0)
    sigma_scale = calibrate_sigma(*decode(val_raw, task.centre, task.half), val_set.truth)
    held_set = task.crops(sim, cfg, cfg.validation_crops, cfg.seed + 3, workers)
    t0 = time.perf_counter()
    raw = model.predict(held_set.images, batch_size=256, verbose=0)
    per_crop_ms = (time.perf_counter() - t0) * 1e3 / len(raw)
    mean, sigma = decode(raw, task.centre, task.half, sigma_scale)
    metrics = (
        localiser_metrics(mean, sigma, held_set.truth, held_set.baseline)
        if task.localiser
        else held_out_metrics(mean, sigma, held_set.truth)
    )
    metrics["network_ms_per_particle_batched"] = per_crop_ms
    metrics["sigma_scale"] = list(sigma_scale)
    if task.localiser:
        metrics["particle_radius_px"] = list(particle_radius_range(held_set.images[..., 0]))
    return metrics, sigma_scale


def train_characteriser(
    sim: SimulationConfig,
    cfg: TrainingConfig,
    config_path: Path,
    output: Path,
    *,
    device: str,
    resume: bool = False,
    workers: int = 2,
    verbose: int = 1,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[ModelCard, dict[str, list[float]], int]:
    """Render the crops, fit the network, measure it on held-out crops, write the artifact.

    Returns the card, the loss history and the epochs run (including resumed ones).
    """
    t_start = time.perf_counter()
    task = _Task.of(sim, cfg)
    if verbose:
        print(
            f"rendering {cfg.train_samples} + {cfg.validation_crops} {sim.preset.modality} "
            f"crops ({cfg.crop}² px, {workers} processes)",
            file=sys.stderr,
        )
    train_set = task.crops(sim, cfg, cfg.train_samples, cfg.seed + 1, workers)
    val_set = task.crops(sim, cfg, cfg.validation_crops, cfg.seed + 2, workers)
    out = Path(output)
    ckpt_dir = out / "checkpoint"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    model, initial_epoch, steps = _model(task, cfg, ckpt_dir, resume)
    if verbose:
        print(f"training {cfg.name} from {config_path} on {device}", file=sys.stderr)
    hist = model.fit(
        train_set.images, task.targets(train_set.truth), batch_size=cfg.batch_size,
        epochs=cfg.epochs, initial_epoch=initial_epoch,
        validation_data=(val_set.images, task.targets(val_set.truth)),
        callbacks=callbacks(cfg, ckpt_dir, on_epoch), verbose=verbose, shuffle=True,
    )  # fmt: skip
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    metrics, sigma_scale = _held_out(model, task, val_set, sim, cfg, workers)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_NAME)
    epochs_run = len(history.get("loss", [])) + initial_epoch
    seconds = time.perf_counter() - t_start
    run = Run(config_path, out, steps, epochs_run, seconds)
    card = _card(sim, cfg, run, model, task, sigma_scale, history, metrics)
    write_card(out, card)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return card, history, epochs_run


@dataclass(frozen=True)
class Run:
    """How one training went: its config file, output, steps per epoch, epochs, seconds."""

    config_path: Path
    output: Path
    steps: int
    epochs: int
    seconds: float


def _card(
    sim: SimulationConfig,
    cfg: TrainingConfig,
    run: Run,
    model: Any,
    task: _Task,
    sigma_scale: tuple[float, ...],
    history: dict[str, list[float]],
    metrics: dict[str, Any],
) -> ModelCard:
    """What the crop model expects, outputs, how it was trained and how well it did."""
    localiser, names = task.localiser, task.names
    return ModelCard(
        name=cfg.name,
        description=(
            f"One particle's centre (x, y, each with σ) in a {cfg.crop} px crop "
            f"({sim.preset.name}, {sim.preset.modality}); Gaussian-NLL trained on "
            "simulated crops"
            if localiser
            else "Radius, refractive index and height (each with σ) of a sphere from a crop "
            f"of its in-line hologram ({sim.preset.name}); Gaussian-NLL trained on "
            "Lorenz–Mie holograms"
        ),
        expects=_expects(sim, cfg, localiser),
        outputs=Outputs(
            kind="localiser" if localiser else "characteriser",
            stride=1,
            channels=(*names, *(f"logvar_{p}" for p in names)),
            refinement="none",
            columns=("x", "y", "x_sigma", "y_sigma")
            if localiser
            else (*names, *(f"{p}_sigma" for p in names)),
            crop_px=cfg.crop,
            downsample=cfg.downsample,
            target_centre=tuple(float(v) for v in task.centre),
            target_half_width=tuple(float(v) for v in task.half),
            sigma_scale=sigma_scale,
            particle_radius_px=tuple(metrics["particle_radius_px"]) if localiser else None,
        ),
        training=Training(
            config_file=str(run.config_path),
            config=cfg.model_dump(mode="json"),
            seed=cfg.seed,
            steps=run.steps,
            epochs=run.epochs,
            seconds=round(run.seconds, 1),
            versions=package_versions(("livetrack", "tensorflow", "keras", "numpy")),
            command=f"livetrack train {run.config_path} -o {run.output}",
        ),
        metrics={
            "val_loss": min(history.get("val_loss", [float("nan")])),
            "held_out_crops": metrics,
            "ranges": {k: list(v) for k, v in task.ranges.items()},
            "history": history,
        },
        flops_per_crop=float(count_flops(model, tuple(model.input_shape[1:]))),
        parameters=int(model.count_params()),
    )


def _expects(sim: SimulationConfig, cfg: TrainingConfig, localiser: bool) -> Expects:
    cam = sim.camera
    return Expects(
        modality=sim.preset.modality,
        pixel_size_um=sim.pixel_size_um,
        wavelength_um=sim.optics.wavelength_um,
        numerical_aperture=sim.optics.numerical_aperture,
        psf_sigma_px=GaussianPSF.from_optics(sim.optics).sigma_px,
        normalisation=(
            Expects.model_fields["normalisation"].default
            if localiser
            else f"(crop − offset) / median − 1, block mean ×{cfg.downsample}; "
            f"medium index {sim.optics.medium_index}"
        ),
        input_multiple=1,
        camera_offset_adu=cam.offset_adu,
        camera_gain_adu_per_e=cam.gain_adu_per_e,
        camera_quantum_efficiency=cam.quantum_efficiency,
        camera_read_noise_e=cam.read_noise_e,
        polarity=modality_polarity(sim.preset.modality),
        medium_index=sim.optics.medium_index,
    )
