"""``livetrack train`` for crop models: ``[training] model = "characteriser"`` or ``"localiser"``.

Both read a crop around one particle and predict quantities each with a
log-variance (Gaussian NLL); they differ in what the crops show and what the
outputs mean.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from livetrack._runtime import package_versions
from livetrack.artifact import MODEL_NAME, Expects, ModelCard, Outputs, Training, write_card
from livetrack.config import SimulationConfig
from livetrack.inference.characterise import decode
from livetrack.simulation import GaussianPSF
from livetrack.training._characterise import (
    PARAMETERS,
    build_characteriser,
    calibrate_sigma,
    gaussian_nll,
    held_out_metrics,
    parameter_ranges,
    render_crops_parallel,
    scales,
)
from livetrack.training._config import TrainingConfig
from livetrack.training._flops import count_flops
from livetrack.training._localise import (
    PARAMETERS as OFFSETS,
)
from livetrack.training._localise import (
    localiser_metrics,
    localiser_ranges,
    render_localiser_crops,
)

STATE = "training_state.json"


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
    import keras

    t_start = time.perf_counter()
    localiser = cfg.model == "localiser"
    names = OFFSETS if localiser else PARAMETERS
    ranges = localiser_ranges(cfg.position_jitter_px) if localiser else parameter_ranges(sim)
    render = render_localiser_crops if localiser else None
    centre, half = scales(ranges, names)
    size = cfg.crop // cfg.downsample
    if verbose:
        print(
            f"rendering {cfg.train_samples} + {cfg.validation_crops} {sim.preset.modality} "
            f"crops ({cfg.crop}² px, {workers} processes)",
            file=sys.stderr,
        )
    train_set = render_crops_parallel(
        sim, cfg.train_samples, cfg.seed + 1, cfg.crop, cfg.downsample,
        cfg.position_jitter_px, workers, render,
    )  # fmt: skip
    val_set = render_crops_parallel(
        sim, cfg.validation_crops, cfg.seed + 2, cfg.crop, cfg.downsample,
        cfg.position_jitter_px, workers, render,
    )  # fmt: skip
    y_train = (train_set.truth - centre) / half
    y_val = (val_set.truth - centre) / half
    out = Path(output)
    ckpt_dir = out / "checkpoint"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    channels = (int(cfg.channels[0]), int(cfg.channels[1]), int(cfg.channels[2]))
    model = build_characteriser(
        size, channels, cfg.dense, cfg.seed, outputs=len(names),
        name="livetrack_localiser" if localiser else "livetrack_characteriser",
    )  # fmt: skip
    initial_epoch = 0
    state_file = ckpt_dir / STATE
    if resume and (ckpt_dir / MODEL_NAME).exists() and state_file.exists():
        model.load_weights(ckpt_dir / MODEL_NAME)
        initial_epoch = int(json.loads(state_file.read_text())["epoch"])
    steps = max(1, cfg.train_samples // cfg.batch_size)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(
                cfg.learning_rate, cfg.epochs * steps, alpha=0.05
            )
        ),
        loss=gaussian_nll(),
        jit_compile=False,
    )

    class _State(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            state_file.write_text(json.dumps({"epoch": epoch + 1, "logs": logs or {}}))
            if on_epoch is not None:
                on_epoch(epoch + 1, dict(logs or {}))

    if verbose:
        print(f"training {cfg.name} from {config_path} on {device}", file=sys.stderr)
    hist = model.fit(
        train_set.images,
        y_train,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        initial_epoch=initial_epoch,
        validation_data=(val_set.images, y_val),
        callbacks=[
            keras.callbacks.ModelCheckpoint(ckpt_dir / MODEL_NAME, save_best_only=False),
            _State(),
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=cfg.patience, restore_best_weights=True
            ),
        ],
        verbose=verbose,
        shuffle=True,
    )
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    # calibrate σ on the validation crops, then measure on crops neither step saw
    val_raw = model.predict(val_set.images, batch_size=256, verbose=0)
    sigma_scale = calibrate_sigma(*decode(val_raw, centre, half), val_set.truth)
    held_set = render_crops_parallel(
        sim, cfg.validation_crops, cfg.seed + 3, cfg.crop, cfg.downsample,
        cfg.position_jitter_px, workers, render,
    )  # fmt: skip
    t0 = time.perf_counter()
    raw = model.predict(held_set.images, batch_size=256, verbose=0)
    per_crop_ms = (time.perf_counter() - t0) * 1e3 / len(raw)
    mean, sigma = decode(raw, centre, half, sigma_scale)
    metrics = (
        localiser_metrics(mean, sigma, held_set.truth, held_set.baseline)
        if localiser
        else held_out_metrics(mean, sigma, held_set.truth)
    )
    metrics["network_ms_per_particle_batched"] = per_crop_ms
    metrics["sigma_scale"] = list(sigma_scale)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_NAME)
    cam = sim.camera
    epochs_run = len(history.get("loss", [])) + initial_epoch
    card = ModelCard(
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
        expects=Expects(
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
            medium_index=sim.optics.medium_index,
        ),
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
            target_centre=tuple(float(v) for v in centre),
            target_half_width=tuple(float(v) for v in half),
            sigma_scale=sigma_scale,
        ),
        training=Training(
            config_file=str(config_path),
            config=cfg.model_dump(mode="json"),
            seed=cfg.seed,
            steps=steps,
            epochs=epochs_run,
            seconds=round(time.perf_counter() - t_start, 1),
            versions=package_versions(("livetrack", "tensorflow", "keras", "numpy")),
            command=f"livetrack train {config_path} -o {out}",
        ),
        metrics={
            "val_loss": min(history.get("val_loss", [float("nan")])),
            "held_out_crops": metrics,
            "ranges": {k: list(v) for k, v in ranges.items()},
            "history": history,
        },
        flops_per_crop=float(count_flops(model, tuple(model.input_shape[1:]))),
        parameters=int(model.count_params()),
    )
    write_card(out, card)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return card, history, epochs_run
