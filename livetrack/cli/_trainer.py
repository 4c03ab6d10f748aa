"""The CLI's trainer commands: simulate, presets, check-config, train and evaluate.

No ``from __future__ import annotations`` here: typer reads the annotations.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from livetrack.cli import _options as o
from livetrack.cli._options import console, fail
from livetrack.config import ConfigError


def _bar(unit: str) -> Progress:
    return Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), unit,
        TimeRemainingColumn(), console=console, transient=not sys.stderr.isatty(),
    )  # fmt: skip


def simulate(
    config: Annotated[str, typer.Argument(help="Preset TOML file, or a shipped preset's name.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Movie to write (.ome.tif).")],
    frames: Annotated[int, typer.Option("--frames", "-n", min=1, help="Number of frames.")] = 100,
    seed: Annotated[
        int, typer.Option("--seed", "-s", help="Random seed (same seed, same movie).")
    ] = 0,
) -> None:
    """Simulate a movie from a preset: an OME-TIFF plus its ground truth (.truth.csv)."""
    from livetrack.config import load_simulation_config
    from livetrack.simulation import write_movie

    try:
        cfg = load_simulation_config(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if not output.name.lower().endswith((".tif", ".tiff")):
        raise fail(f"--output {output}: expected a .ome.tif / .tif file name")
    with _bar("frames") as bar:
        task = bar.add_task(f"simulating {cfg.preset.name}", total=frames)
        try:
            movie, truth = write_movie(
                cfg, output, frames, seed, progress=lambda i: bar.update(task, completed=i)
            )
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc}") from None
    print(movie)
    print(truth)


def presets() -> None:
    """List the shipped configuration presets."""
    from livetrack.config import load_simulation_config, presets_dir

    table = Table("name", "modality", "description")
    for path in sorted(presets_dir().glob("*.toml")):
        try:
            cfg = load_simulation_config(path)
        except ConfigError as exc:
            table.add_row(path.stem, "[red]invalid[/]", str(exc).splitlines()[0])
            continue
        table.add_row(path.stem, cfg.preset.modality, cfg.preset.description)
    Console().print(table)


def check_config(
    paths: Annotated[list[str], typer.Argument(help="TOML files (or preset names) to validate.")],
) -> None:
    """Validate configuration files; print every problem with its file, key and value."""
    from livetrack.config import load_simulation_config

    bad = 0
    for p in paths:
        try:
            cfg = load_simulation_config(p)
        except ConfigError as exc:
            bad += 1
            console.print(f"[red]✗[/] {exc}", highlight=False)
            continue
        console.print(
            f"[green]✓[/] {p}: {cfg.preset.name} ({cfg.preset.modality}), "
            f"{cfg.pixel_size_um * 1000:.1f} nm pixels",
            highlight=False,
        )
    if bad:
        raise typer.Exit(1)


def train(
    config: Annotated[
        str, typer.Argument(help="Preset TOML with a training section, or a preset name.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Artifact directory to write.")],
    epochs: Annotated[int | None, typer.Option(help="Override the number of epochs.")] = None,
    steps: Annotated[int | None, typer.Option(help="Override steps per epoch.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train a model on simulated data; writes model.keras + card.json."""
    from livetrack.training import load_training_config
    from livetrack.training import train as run_training

    try:
        total = epochs or load_training_config(config)[1].epochs
        with _bar("epochs") as bar:
            task = bar.add_task("training", total=total, visible=not quiet)

            def on_epoch(epoch: int, logs: dict[str, float]) -> None:
                loss = f"loss {logs.get('loss', float('nan')):.4f}"
                val = f"val_loss {logs.get('val_loss', float('nan')):.4f}"
                bar.update(task, completed=epoch, description=f"training: {loss}, {val}")

            result = run_training(
                config, output, epochs=epochs, steps_per_epoch=steps, resume=resume,
                verbose=0 if quiet else 2, on_epoch=on_epoch,
            )  # fmt: skip
    except ConfigError as exc:
        raise fail(str(exc)) from None
    print(
        f"{result.artifact}: {result.epochs_run} epochs in {result.seconds:.0f} s, "
        f"best val_loss {result.best_val_loss:.4f}"
    )


def adapt(
    movie: Annotated[str, typer.Argument(help="Your movie (any format `process` reads).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Model folder to write.")],
    frames: Annotated[int, typer.Option(min=1, help="First frames to measure.")] = 16,
    epochs: Annotated[int, typer.Option(min=1, help="Fine-tuning epochs.")] = 16,
    steps: Annotated[int, typer.Option(min=1, help="Steps per epoch.")] = 100,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    self_supervised: Annotated[
        bool,
        typer.Option(
            "--self-supervised",
            help="No simulator: learn from the movie's own particles (LodeSTAR), "
            "for particles the simulator cannot render; trains EPOCHS × STEPS steps.",
        ),
    ] = False,
    flips: Annotated[
        bool,
        typer.Option(help="With --self-supervised: the particles look the same mirrored."),
    ] = True,
) -> None:
    """Fit the simulator to your movie, write its preset, fine-tune a detector for it."""
    from livetrack.adapt import AdaptError, adapt_movie
    from livetrack.adapt.rings import RingsMeasured
    from livetrack.detection.lone import ELONGATION_MIN, SPLIT_Z

    if self_supervised:
        _self_supervised(movie, output, frames, epochs * steps, flips, force, quiet)
        return
    try:
        with _bar("epochs") as bar:
            task = bar.add_task("measuring the movie", total=epochs, visible=not quiet)

            def on_epoch(epoch: int, logs: dict[str, float]) -> None:
                val = f"val_loss {logs.get('val_loss', float('nan')):.4f}"
                bar.update(task, completed=epoch, description=f"fine-tuning: {val}")

            result = adapt_movie(
                movie, output, frames=frames, epochs=epochs, steps_per_epoch=steps, force=force,
                verbose=0, on_epoch=on_epoch,
            )  # fmt: skip
    except (AdaptError, ConfigError) as exc:
        raise fail(str(exc)) from None
    m = result.measured
    dark = " dark" if m.polarity == "dark-on-bright" else ""
    seen = (
        f"rings: a sphere of {m.radius_um:.2f} µm, index {m.refractive_index:.3f}, "
        f"{m.z_um:.1f} µm from focus, fitted to {m.crops} particles"
        if isinstance(m, RingsMeasured)
        else f"PSF σ {m.sigma_px:.2f} px from {m.spots}{dark} spots, {m.photons[1]:.0f} "
        f"photons, background {m.background_photons:.1f}/px"
        + ("; the model inverts the frames itself (no --invert)" if dark else "")
    )
    print(
        f"{result.model}: {seen}; "
        f"fine-tuned in {result.seconds:.0f} s (val_loss {result.val_loss:.4f}).\n"
        f"preset: {result.model / 'preset.toml'}; use it: livetrack process {movie} "
        f"--model {result.model}"
    )
    caution = m.caution() if isinstance(m, RingsMeasured) else None
    if caution:
        console.print(f"warning: {caution}", highlight=False)
    cuts = result.cuts
    if cuts is not None and cuts.min_photons > 0:
        print(
            f"left out: {cuts.faint_per_frame:.1f} spots a frame below {cuts.min_photons:.0f} "
            "photons, a fainter population at the noise's level (`process --min-photons 0` "
            "keeps them)"
        )
    if cuts is not None and (cuts.split_lobe_z or cuts.split_elongation):
        print(
            f"the movie's lone spots are not round (as the simulator's are): a spot is split "
            f"in two from a residual lobe of z {cuts.split_lobe_z or SPLIT_Z:.1f} and an "
            f"elongation of {cuts.split_elongation or ELONGATION_MIN:.2f} (card.json)"
        )


def _self_supervised(
    movie: str, output: Path, frames: int, steps: int, flips: bool, force: bool, quiet: bool
) -> None:
    from livetrack.adapt import AdaptError, adapt_self_supervised
    from livetrack.adapt.self_supervised import LIKE_CROPS_SCORE, UNLIKE_SHARE

    try:
        with _bar("steps") as bar:
            task = bar.add_task("finding particles", total=steps, visible=not quiet)

            def on_step(step: int, agreement: float) -> None:
                if step % 50 == 0 or step == steps:
                    note = f"views agree to {agreement:.3f} px²"
                    bar.update(task, completed=step, description=note)

            result = adapt_self_supervised(
                movie, output, frames=frames, steps=steps, flips=flips, force=force,
                on_step=on_step,
            )  # fmt: skip
    except AdaptError as exc:
        raise fail(str(exc)) from None
    f = result.found
    print(
        f"{result.model}: {f.windows} crops of {f.crop} px around particles "
        f"{2 * f.radius_px:.0f} px across ({f.per_frame:.1f} per frame); trained in "
        f"{result.seconds:.0f} s. See {result.model / 'fit.png'}; use it: livetrack process "
        f"{movie} --model {result.model}"
    )
    scores = result.scores
    if scores is not None and scores.unlike_share >= UNLIKE_SHARE:
        print(
            f"two kinds: {scores.unlike:.1f} detections a frame score below "
            f"{LIKE_CROPS_SCORE}, unlike the {scores.like_crops:.1f} that look like its crops: "
            "another kind of particle, or the same ones looking otherwise (out of focus); "
            f"`process --min-score {LIKE_CROPS_SCORE}` keeps only those like the crops"
        )


def evaluate(
    model: Annotated[
        Path | None, typer.Argument(help="Model artifact directory (default: the shipped model).")
    ] = None,
    report: Annotated[Path, typer.Option("--report", help="Folder for the table and PNGs.")] = Path(
        "evaluation"
    ),
    json_out: o.JsonOut = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer photon levels and cases.")] = False,
    write_card: Annotated[
        bool, typer.Option("--write-card", help="Store the figures in the model's card.json.")
    ] = False,
) -> None:
    """Evaluate a detector: RMSE vs photons next to the CRLB and trackpy; F1 vs SNR."""
    import json

    from livetrack.artifact import ArtifactError, save_evaluation
    from livetrack.bench import markdown_table
    from livetrack.detection import Detector
    from livetrack.training.evaluate import evaluate_detector

    try:
        det = Detector(model)
    except ArtifactError as exc:
        raise fail(str(exc)) from None
    result = evaluate_detector(det, report, quick)
    md = f"# Evaluation of {det.card.name}\n\n## Localisation (isolated spots)\n\n"
    md += markdown_table(result["localization"]) + "\n## Detection (dense frames)\n\n"
    md += markdown_table(result["detection"])
    (report / "evaluation.md").write_text(md)
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2))
    if write_card:
        save_evaluation(det.path, det.card, result)
    print(md)
