"""The ``livetrack`` command line: a thin layer that wires the parts together.

No ``from __future__ import annotations`` here: typer reads the annotations.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from livetrack import __version__
from livetrack._cli_options import BrightnessPenalty, Memory, Precision, SearchRange
from livetrack.config import ConfigError

app = typer.Typer(
    name="livetrack",
    help="Real-time particle tracking beside the microscope.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _parse_region(text: str) -> tuple[float, float, float]:
    """``X,Y,R`` in pixels, R > 0; a clear error otherwise."""
    try:
        x, y, r = (float(v) for v in text.split(","))
    except ValueError:
        raise _fail(
            f"--split-near {text!r}: expected X,Y,R in pixels, e.g. 255.5,255.5,32"
        ) from None
    if not r > 0:
        raise _fail(f"--split-near {text!r}: the radius must be positive")
    return x, y, r


def _version(value: bool) -> None:
    if value:
        print(f"livetrack {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Real-time particle tracking beside the microscope."""


@app.command()
def simulate(
    config: Annotated[str, typer.Argument(help="Preset TOML file, or a shipped preset's name.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Movie to write (.ome.tif).")],
    frames: Annotated[int, typer.Option("--frames", "-n", min=1, help="Number of frames.")] = 100,
    seed: Annotated[
        int, typer.Option("--seed", "-s", help="Random seed (same seed, same movie).")
    ] = 0,
) -> None:
    """Simulate a movie from a preset: an OME-TIFF plus its ground truth (.truth.csv)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from livetrack.config import load_simulation_config
    from livetrack.simulation import write_movie

    try:
        cfg = load_simulation_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if not output.name.lower().endswith((".tif", ".tiff")):
        raise _fail(f"--output {output}: expected a .ome.tif / .tif file name")
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        "frames",
        TimeRemainingColumn(),
        console=console,
        transient=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(f"simulating {cfg.preset.name}", total=frames)
        try:
            movie, truth = write_movie(
                cfg, output, frames, seed, progress=lambda i: bar.update(task, completed=i)
            )
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc}") from None
    print(movie)
    print(truth)


@app.command()
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


@app.command("check-config")
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


@app.command()
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
    """Train a detector on simulated data; writes model.keras + card.json."""
    from livetrack.training import train as run_training

    try:
        result = run_training(
            config,
            output,
            epochs=epochs,
            steps_per_epoch=steps,
            resume=resume,
            verbose=0 if quiet else 1,
        )
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    print(
        f"{result.artifact}: {result.epochs_run} epochs in {result.seconds:.0f} s, "
        f"best val_loss {result.best_val_loss:.4f}"
    )


@app.command()
def evaluate(
    model: Annotated[
        Path | None, typer.Argument(help="Model artifact directory (default: the shipped model).")
    ] = None,
    report: Annotated[Path, typer.Option("--report", help="Folder for the table and PNGs.")] = Path(
        "evaluation"
    ),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures as JSON.")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer photon levels and cases.")] = False,
    write_card: Annotated[
        bool, typer.Option("--write-card", help="Store the figures in the model's card.json.")
    ] = False,
) -> None:
    """Evaluate a detector: RMSE vs photons next to the CRLB and trackpy; F1 vs SNR."""
    import json

    from livetrack.artifact import ArtifactError
    from livetrack.artifact import write_card as save_card
    from livetrack.inference.detector import KerasDetector
    from livetrack.training import evaluate as ev

    try:
        det = KerasDetector(model)
    except ArtifactError as exc:
        raise _fail(str(exc)) from None
    photons = (200, 2000, 20000) if quick else ev.PHOTONS
    loc = ev.localization_sweep(det, photons=photons, frames=1 if quick else 2)
    cases = ev.STANDARD_CASES[1:2] if quick else ev.STANDARD_CASES + ev.OFF_CONFIG_CASES
    detn = ev.detection_sweep(det, cases, frames=1 if quick else 3)
    report.mkdir(parents=True, exist_ok=True)
    ev.plot_localization(loc, report / "localization.png")
    ev.plot_detection(detn, report / "detection.png")
    result = {"model": str(det.path), "card": det.card.name, "localization": loc, "detection": detn}
    from livetrack.bench import markdown_table

    md = (
        f"# Evaluation of {det.card.name}\n\n## Localisation (isolated spots)\n\n"
        + markdown_table(loc)
        + "\n## Detection (dense frames)\n\n"
        + markdown_table(detn)
    )
    (report / "evaluation.md").write_text(md)
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2))
    if write_card:
        metrics = {**det.card.metrics, "evaluation": {"localization": loc, "detection": detn}}
        save_card(det.path, det.card.model_copy(update={"metrics": metrics}))
    print(md)


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Small sizes; finishes in minutes.")
    ] = False,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only this part (repeatable).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a markdown report into this folder.")
    ] = None,
) -> None:
    """Measure accuracy and speed side by side with the baselines, in one run."""
    from livetrack.bench import markdown_report, run_bench, write_report

    try:
        result = run_bench(only, quick)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    write_report(result, json_out, report)
    print(markdown_report(result))


@app.command()
def serve(
    model: Annotated[
        Path | None, typer.Option("--model", help="Model artifact (default: the shipped model).")
    ] = None,
    classical: Annotated[
        bool, typer.Option("--classical", help="Use trackpy's locate instead of a trained model.")
    ] = False,
    frames: Annotated[str, typer.Option(help="PULL address for frames.")] = "tcp://127.0.0.1:5555",
    results: Annotated[str, typer.Option(help="PUB address for results.")] = "tcp://127.0.0.1:5556",
    control: Annotated[str, typer.Option(help="REP address for control.")] = "tcp://127.0.0.1:5557",
    policy: Annotated[
        str, typer.Option(help="realtime (newest frame) or lossless (every frame).")
    ] = "realtime",
    queue: Annotated[int, typer.Option(help="Frames that may wait in the service (RCVHWM).")] = 64,
    force_model: Annotated[
        bool, typer.Option("--force-model", help="Use a model whose card does not fit.")
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Allow binding non-loopback addresses without encryption."),
    ] = False,
    keys: Annotated[
        Path | None,
        typer.Option(
            "--keys",
            help="Key folder from `livetrack keys`: CURVE encryption, and only the clients "
            "whose public keys are in KEYS/clients are served.",
        ),
    ] = None,
    precision: Precision = "auto",
    pipeline: Annotated[
        bool,
        typer.Option(help="Real-time: run the next frame's network during this one's read-out."),
    ] = True,
    split: Annotated[
        bool,
        typer.Option(
            help="Find particles hidden in a neighbour's fit (more recall in dense frames, "
            "~2x the read-out time; off by default here: latency first)."
        ),
    ] = False,
    split_near: Annotated[
        str | None,
        typer.Option(
            help="X,Y,R (pixels): find hidden particles only within R of (X, Y), e.g. "
            "around the particle a centring controller keeps at the field's centre; a "
            "fraction of --split's cost."
        ),
    ] = None,
    network_threads: Annotated[
        int | None,
        typer.Option(help="Threads for the network (default: cores − 1, at least 1)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics over HTTP on this port (0: any free port)."),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Interface for --metrics-port (off-loopback needs --insecure).")
    ] = "127.0.0.1",
    search_range: SearchRange = 8.0,
    memory: Memory = 10,
    brightness_penalty: BrightnessPenalty = 1.0,
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Serve detection + linking over ZeroMQ until SIGINT/SIGTERM or a shutdown request."""
    import logging

    from livetrack.artifact import ArtifactError
    from livetrack.inference.service import Service, ServiceConfig
    from livetrack.linking import LinkingConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if policy not in ("realtime", "lossless"):
        raise _fail(f"--policy {policy!r}: expected realtime or lossless")
    region = _parse_region(split_near) if split_near else None
    try:
        if classical:
            from livetrack.inference.classical import TrackpyDetector

            classic = TrackpyDetector()
            classic.warm_up()
            detector: object = classic
        else:
            from livetrack.inference.detector import KerasDetector, set_network_threads

            threads = set_network_threads(network_threads)
            detector = KerasDetector(model, precision=precision, split=split, split_region=region)
            detector.warm_up()
        cfg = ServiceConfig(
            frames=frames,
            results=results,
            control=control,
            policy=policy,  # type: ignore[arg-type]
            queue=queue,
            force_model=force_model,
            insecure=insecure,
            keys=str(keys) if keys is not None else None,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            pipeline=pipeline,
            linking=LinkingConfig(
                search_range_px=search_range, memory=memory, brightness_penalty=brightness_penalty
            ),
        )
        service = Service(detector, cfg)  # type: ignore[arg-type]
    except (ArtifactError, PermissionError, ValueError, RuntimeError, OSError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # zmq bind errors: address in use, bad address
        raise _fail(f"cannot start the service: {exc}") from None
    for name, endpoint in service.endpoints.items():
        console.print(f"{name:8s} {endpoint}", highlight=False)
    if not classical:
        console.print(
            f"network  {detector.precision}, {threads} thread(s)",  # type: ignore[attr-defined]
            highlight=False,
        )
        where = (
            f"within {region[2]:g} px of ({region[0]:g}, {region[1]:g})"
            if region
            else "whole frame"
            if split
            else "off"
        )
        console.print(f"split    {where}", highlight=False)
    console.print(f"policy   {policy}; Ctrl-C to stop", highlight=False)
    stats = service.run(seconds)
    console.print(f"stopped: {stats.snapshot()}", highlight=False)


@app.command()
def keys(
    directory: Annotated[Path, typer.Argument(help="Key directory.")],
    name: Annotated[
        str, typer.Option(help="Key pair name: 'server', or a client's name.")
    ] = "server",
) -> None:
    """Make a CURVE key pair (NAME.key public, NAME.key_secret with mode 0600).

    Clients' public keys go into DIRECTORY/clients on the service's machine.
    """
    from livetrack.security import KeyFileError, generate_keys

    try:
        public, secret = generate_keys(directory, name)
    except (KeyFileError, OSError) as exc:
        raise _fail(str(exc)) from None
    print(public)
    print(secret)


from livetrack._cli_live import acquire, control, demo, soak  # noqa: E402
from livetrack._cli_offline import plot, process  # noqa: E402

app.command()(acquire)
app.command()(control)
app.command()(demo)
app.command()(soak)
app.command()(process)
app.command()(plot)


def main() -> None:
    """Entry point of the ``livetrack`` script."""
    from livetrack._runtime import tune_allocator

    tune_allocator()
    app()


if __name__ == "__main__":
    main()
