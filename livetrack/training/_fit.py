"""What every model's training shares: resume from a checkpoint, the schedule, the callbacks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livetrack.artifact import MODEL_NAME
from livetrack.training._config import TrainingConfig

#: the checkpoint's record of the last finished epoch (for ``--resume``)
STATE = "training_state.json"


def prepare(
    model: Any, cfg: TrainingConfig, steps: int, loss: Any, ckpt_dir: Path, resume: bool
) -> int:
    """Resume the weights when asked and a checkpoint is there; compile with a cosine schedule.

    Returns the epoch training starts from.
    """
    import keras

    initial_epoch = 0
    state_file = ckpt_dir / STATE
    if resume and (ckpt_dir / MODEL_NAME).exists() and state_file.exists():
        model.load_weights(ckpt_dir / MODEL_NAME)
        initial_epoch = int(json.loads(state_file.read_text())["epoch"])
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate, cfg.epochs * steps, alpha=0.05
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, jit_compile=False)
    return initial_epoch


def callbacks(
    cfg: TrainingConfig,
    ckpt_dir: Path,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
) -> list[Any]:
    """Checkpoint every epoch (with its number, for ``--resume``), report it, stop early."""
    import keras

    state_file = ckpt_dir / STATE

    class _State(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            state_file.write_text(json.dumps({"epoch": epoch + 1, "logs": logs or {}}))
            if on_epoch is not None:
                on_epoch(epoch + 1, dict(logs or {}))

    return [
        keras.callbacks.ModelCheckpoint(ckpt_dir / MODEL_NAME, save_best_only=False),
        _State(),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.patience, restore_best_weights=True
        ),
    ]
