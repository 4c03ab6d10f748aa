"""``livetrack train``: train the detector on simulated crops and write the artifact."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
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
from livetrack.runtime import package_versions, quiet_tensorflow_start
from livetrack.simulation import GaussianPSF
from livetrack.training._config import TrainingConfig, load_training_config
from livetrack.training._data import Batch, make_batch
from livetrack.training._fit import callbacks, prepare
from livetrack.training._flops import count_flops
from livetrack.training._threshold import calibrate_threshold, crop_threshold, held_out_metrics


@dataclass(frozen=True)
class TrainResult:
    """Where the artifact went and how training ended."""

    artifact: Path
    epochs_run: int
    best_val_loss: float
    history: dict[str, list[float]]
    seconds: float


def _setup_device() -> str:
    """Use a GPU with mixed precision when one is present; CPU otherwise."""
    quiet_tensorflow_start()
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
        return f"GPU ({len(gpus)}), mixed_float16"
    return f"CPU ({os.cpu_count()} cores)"


def _dataset(sim: SimulationConfig, cfg: TrainingConfig, workers: int) -> Any:
    """An endless tf.data stream of batches, generated in ``workers`` parallel streams."""
    import tensorflow as tf

    c, g = cfg.crop, cfg.crop // 4

    def stream(worker: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([cfg.seed, 1 + int(worker)])
        while True:
            b = make_batch(sim, cfg, rng, cfg.batch_size)
            yield b.images, b.targets

    sig = (
        tf.TensorSpec((cfg.batch_size, c, c, 1), tf.float32),
        tf.TensorSpec((cfg.batch_size, g, g, 4), tf.float32),
    )
    ds = tf.data.Dataset.range(workers).interleave(
        lambda w: tf.data.Dataset.from_generator(stream, output_signature=sig, args=(w,)),
        cycle_length=workers,
        num_parallel_calls=workers,
        deterministic=True,
    )
    return ds.prefetch(2)


def validation_batch(
    sim: SimulationConfig, cfg: TrainingConfig, truths: list[dict[str, np.ndarray]] | None = None
) -> Batch:
    """The fixed-seed held-out crops (their truth appended to ``truths``)."""
    return make_batch(sim, cfg, np.random.default_rng([cfg.seed, 0]), cfg.validation_crops, truths)


def _with_overrides(cfg: TrainingConfig, epochs: int | None, steps: int | None) -> TrainingConfig:
    given = {"epochs": epochs, "steps_per_epoch": steps}
    return cfg.model_copy(update={k: v for k, v in given.items() if v is not None})


@dataclass
class _Data:
    """What the detector trains and validates on."""

    fit: dict[str, Any]  # keras fit's data arguments
    val: Batch
    val_truths: list[dict[str, np.ndarray]]
    steps: int  # per epoch
    scene: bool  # a fixed set of rendered scenes (brightfield, holography)


def _training_data(sim: SimulationConfig, cfg: TrainingConfig, workers: int, verbose: int) -> _Data:
    """Fluorescence frames drawn on the fly, or a fixed set of Lorenz–Mie scenes."""
    if sim.preset.modality == "fluorescence":
        val_truths: list[dict[str, np.ndarray]] = []
        val = validation_batch(sim, cfg, val_truths)
        data = {"x": _dataset(sim, cfg, workers), "steps_per_epoch": cfg.steps_per_epoch}
        return _Data(data | {"shuffle": False}, val, val_truths, cfg.steps_per_epoch, False)
    # Lorenz–Mie particles are too slow to draw on the fly: a fixed set is rendered first
    from livetrack.training._scene_crops import render_scene_crops_parallel

    if verbose:
        print(
            f"rendering {cfg.train_samples} + {cfg.validation_crops} "
            f"{sim.preset.modality} crops ({cfg.crop}² px, {workers} processes)",
            file=sys.stderr,
        )
    spread = cfg.randomisation.particles_per_crop
    crops = render_scene_crops_parallel(sim, cfg.train_samples, cfg.seed, cfg.crop, spread, workers)
    held = render_scene_crops_parallel(
        sim, cfg.validation_crops, cfg.seed + 1, cfg.crop, spread, workers
    )
    data = {"x": crops.images, "y": crops.targets, "batch_size": cfg.batch_size, "shuffle": True}
    steps = len(crops.images) // cfg.batch_size
    return _Data(data, Batch(held.images, held.targets), held.truths, steps, True)


def _compiled_detector(
    cfg: TrainingConfig, steps: int, ckpt_dir: Path, resume: bool, init_from: Path | None
) -> tuple[Any, int]:
    """The network (from ``init_from``'s weights if given), compiled; and the first epoch."""
    import keras

    from livetrack.training._model import build_detector, detector_loss

    keras.utils.set_random_seed(cfg.seed)
    model = build_detector(cfg.channels, cfg.seed)
    if init_from is not None:
        model.load_weights(Path(init_from) / MODEL_NAME)
    loss = detector_loss(cfg.positive_weight)
    return model, prepare(model, cfg, steps, loss, ckpt_dir, resume)


def _held_out(
    model: Any, data: _Data, sim: SimulationConfig, cfg: TrainingConfig
) -> dict[str, Any]:
    """The score threshold, calibrated, and the held-out crops' figures at it."""
    val_out = model.predict(data.val.images, batch_size=64, verbose=0)
    if data.scene:  # no full-frame scenarios for Lorenz–Mie scenes: the held-out crops
        chosen = crop_threshold(val_out, data.val_truths, cfg.crop)
    else:
        chosen = calibrate_threshold(model, sim, cfg.seed, own=cfg.calibrate_on == "preset")
    return {
        "held_out_crops": held_out_metrics(val_out, data.val_truths, cfg.crop, chosen["threshold"]),
        "threshold_calibration": chosen,
    }


def _detector_card(
    sim: SimulationConfig,
    cfg: TrainingConfig,
    path: Path,
    out: Path,
    model: Any,
    history: dict[str, list[float]],
    metrics: dict[str, Any],
    epochs: int,
    steps: int,
    seconds: float,
) -> ModelCard:
    """What the trained detector expects, outputs, how it was trained and how well it did."""
    scene = sim.preset.modality != "fluorescence"
    cam = sim.camera
    return ModelCard(
        name=cfg.name,
        description=(
            f"Stride-4 detector trained on simulated {sim.preset.modality} frames "
            f"({sim.preset.name})"
        ),
        expects=Expects(
            modality=sim.preset.modality,
            pixel_size_um=sim.pixel_size_um,
            wavelength_um=sim.optics.wavelength_um,
            numerical_aperture=sim.optics.numerical_aperture,
            psf_sigma_px=GaussianPSF.from_optics(sim.optics).sigma_px,
            camera_offset_adu=cam.offset_adu,
            camera_gain_adu_per_e=cam.gain_adu_per_e,
            camera_quantum_efficiency=cam.quantum_efficiency,
            camera_read_noise_e=cam.read_noise_e,
            polarity=modality_polarity(sim.preset.modality),
        ),
        # Lorenz–Mie particles are no Gaussian spots: the network's positions stand
        outputs=Outputs(
            threshold=metrics["threshold_calibration"]["threshold"],
            refinement="none" if scene else "gaussian_mle",
        ),
        training=Training(
            config_file=str(path),
            config=cfg.model_dump(mode="json"),
            seed=cfg.seed,
            steps=steps,
            epochs=epochs,
            seconds=round(seconds, 1),
            versions=package_versions(("livetrack", "tensorflow", "keras", "numpy")),
            command=f"livetrack train {path} -o {out}",
        ),
        metrics={
            "val_loss": min(history.get("val_loss", [float("nan")])),
            **metrics,
            "history": history,
        },
        flops_per_512=float(count_flops(model, (512, 512, 1))),
        parameters=int(model.count_params()),
    )


def train(
    config_path: str | Path,
    output: str | Path,
    *,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    resume: bool = False,
    workers: int = 2,
    verbose: int = 1,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train the detector described by a preset's ``[training]`` section.

    Parameters
    ----------
    config_path
        Preset TOML (or shipped preset name).
    output
        Artifact directory to write (``model.keras`` + ``card.json``).
    epochs, steps_per_epoch
        Override the config (tests train for seconds).
    resume
        Continue from the checkpoint in ``output/checkpoint`` if there is one.
    verbose
        0: silent; 1: what is happening, and Keras's progress bar; 2: a line per epoch.
    on_epoch
        Called after each epoch with its number (from 1) and its losses.
    init_from
        A detector artifact to start from (fine-tuning; ``livetrack adapt`` uses it).
    """
    t_start = time.perf_counter()
    sim, cfg, path = load_training_config(config_path)
    cfg = _with_overrides(cfg, epochs, steps_per_epoch)
    device = _setup_device()
    out = Path(output)
    if cfg.model in ("characteriser", "localiser"):
        from livetrack.training._train_characteriser import train_characteriser

        card, history, epochs_run = train_characteriser(
            sim, cfg, path, out, device=device, resume=resume, workers=workers,
            verbose=verbose, on_epoch=on_epoch,
        )  # fmt: skip
        seconds = time.perf_counter() - t_start
        return TrainResult(out, epochs_run, card.metrics["val_loss"], history, seconds)
    data = _training_data(sim, cfg, workers, verbose)
    ckpt_dir = out / "checkpoint"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    init = Path(init_from) if init_from is not None else None
    model, initial_epoch = _compiled_detector(cfg, data.steps, ckpt_dir, resume, init)
    if verbose:
        print(f"training {cfg.name} from {path} on {device}", file=sys.stderr)
    hist = model.fit(
        **data.fit,
        epochs=cfg.epochs,
        initial_epoch=initial_epoch,
        validation_data=(data.val.images, data.val.targets),
        validation_batch_size=64,
        callbacks=callbacks(cfg, ckpt_dir, on_epoch),
        verbose=verbose,
    )
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    metrics = _held_out(model, data, sim, cfg)
    epochs_run = len(history.get("loss", []))
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_NAME)
    seconds = time.perf_counter() - t_start
    card = _detector_card(
        sim, cfg, path, out, model, history, metrics, epochs_run + initial_epoch, data.steps,
        seconds,
    )  # fmt: skip
    write_card(out, card)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return TrainResult(
        out, epochs_run, min(history.get("val_loss", [float("nan")])), history, seconds
    )
