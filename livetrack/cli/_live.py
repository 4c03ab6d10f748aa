"""The live commands of the CLI: ``acquire``, ``control`` and ``demo``.

Registered on the app in :mod:`livetrack.cli`. No ``from __future__ import
annotations`` here: typer reads the annotations.
"""

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from livetrack.cli._options import console, fail


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _numbers(text: str | None, n: int, what: str, form: str) -> tuple[float, ...] | None:
    """``n`` comma-separated numbers, or one clear error naming the option and its form."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise fail(f"{what} {text!r}: expected {n} numbers '{form}'")
    return values


def acquire(
    simulate: Annotated[
        str | None,
        typer.Option(help="Simulated microscope from this preset (file or shipped name)."),
    ] = "demo",
    mm_config: Annotated[
        Path | None,
        typer.Option("--mm-config", help="A Micro-Manager configuration (real rig)."),
    ] = None,
    frames: Annotated[str | None, typer.Option(help="The service's frame address.")] = None,
    actuation: Annotated[
        str | None, typer.Option(help="Bind this address for actuation ('' for none).")
    ] = None,
    mda: Annotated[
        Path | None, typer.Option(help="Run this useq MDA sequence (YAML/JSON) instead.")
    ] = None,
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated sample.")] = 0,
    interval_ms: Annotated[
        float | None, typer.Option(help="Simulated camera: frame interval (ms).")
    ] = None,
    pin_centre: Annotated[
        bool,
        typer.Option("--pin-centre", help="Log the true path of the particle nearest the centre."),
    ] = False,
    stats_json: Annotated[Path | None, typer.Option(help="Write the session's figures.")] = None,
    last_frame: Annotated[Path | None, typer.Option(help="Save the last frame (.npy).")] = None,
) -> None:
    """Acquire frames and stream them to the service (never blocking the camera)."""
    from livetrack.acquisition import run_session
    from livetrack.acquisition.setup import open_core
    from livetrack.config import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        core, acq, sample = open_core(simulate or "demo", mm_config, seed, interval_ms, pin_centre)
        sequence = None
        if mda is not None:
            import useq

            sequence = useq.MDASequence.from_file(mda)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        raise fail(str(exc)) from None
    update = {k: v for k, v in (("frames", frames), ("actuation", actuation)) if v is not None}
    acq = acq.model_copy(update=update)
    console.print(f"camera {core.getCameraDevice()} → {acq.frames}", highlight=False)
    result = run_session(
        core,
        acq,
        seconds=seconds,
        stop=_stop_on_signals(),
        mda_sequence=sequence,
        sample=sample,
        last_frame_path=last_frame,
    )
    if stats_json is not None:
        result.to_json(stats_json)
    console.print(f"frames {result.frames}; actuation {result.actuation}", highlight=False)


def control(
    config: Annotated[
        str, typer.Argument(help="Preset with a controller section (file or shipped name).")
    ] = "demo",
    results: Annotated[str, typer.Option(help="The service's results address.")] = (
        "tcp://127.0.0.1:5556"
    ),
    actuation: Annotated[
        str | None, typer.Option(help="The acquisition's actuation address.")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="centre, trap or none.")] = None,
    particle: Annotated[int | None, typer.Option(help="Follow this track id.")] = None,
    target: Annotated[str | None, typer.Option(help="Hold the particle at x,y (px).")] = None,
    kp: Annotated[float | None, typer.Option(help="Proportional gain.")] = None,
    ki: Annotated[float | None, typer.Option(help="Integral gain.")] = None,
    enter: Annotated[
        str | None,
        typer.Option(help="Trigger when a track enters x0,y0,x1,y1 (px): snap an MDA frame."),
    ] = None,
    seconds: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures.")] = None,
) -> None:
    """Close the loop: follow a particle and act through the acquisition process."""
    from livetrack.acquisition import run_control_loop
    from livetrack.acquisition.setup import controller_from_preset
    from livetrack.config import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    region = _numbers(enter, 4, "--enter", "x0,y0,x1,y1")
    target_px = _numbers(target, 2, "--target", "x,y")
    given = {"mode": mode, "particle": particle, "target_px": target_px, "kp": kp, "ki": ki}
    try:
        ctl, actuator = controller_from_preset(config, given, actuation, region)
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    stop = _stop_on_signals()
    console.print(f"controller listening on {results}, mode {ctl.cfg.mode}", highlight=False)
    stats = run_control_loop(ctl, results, seconds, should_stop=stop.is_set)
    actuator.close()
    summary = {**stats.summary(), "sent": actuator.sent, "dropped": actuator.dropped}
    if json_out is not None:
        json_out.write_text(
            json.dumps({**summary, "t_s": list(stats.error_t_s), "error_px": list(stats.error_px)})
        )
    console.print(f"controller {summary}", highlight=False)


def demo(
    seconds: Annotated[
        float, typer.Option(help="Seconds per phase (with and without feedback).")
    ] = 20.0,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the PNG and JSON.")] = (
        Path("livetrack-demo")
    ),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the figures here too.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated sample.")] = 0,
    live: Annotated[bool, typer.Option(help="Show the live terminal view.")] = True,
    transport: Annotated[str, typer.Option(help="ipc (Unix sockets) or tcp (loopback).")] = "ipc",
    config: Annotated[
        str, typer.Option("--config", help="Preset with acquisition and controller sections.")
    ] = "demo",
    split_near: Annotated[
        float,
        typer.Option(
            help="Radius (px) around the centre where the service looks for particles "
            "hidden in a neighbour's fit (serve --split-near); 0: nowhere."
        ),
    ] = 24.0,
) -> None:
    """The simulated microscope, the service with the shipped model, linking and centring.

    Each runs in its own process over real sockets; runs once with the feedback
    loop and once without (same sample, same seed), then writes demo.png and demo.json.
    """
    from livetrack.config import ConfigError, load_simulation_config
    from livetrack.demo import run_demo

    try:
        load_simulation_config(config)  # a bad preset fails here, not in three processes
        if transport not in ("ipc", "tcp"):
            raise fail(f"--transport {transport!r}: expected ipc or tcp")
        figures = run_demo(
            seconds=seconds,
            output=output,
            seed=seed,
            live=live,
            console=console,
            transport=transport,
            preset=config,
            split_radius_px=split_near,
        )
    except (RuntimeError, ConfigError) as exc:
        raise fail(str(exc)) from None
    text = json.dumps(figures, indent=2)
    (output / "demo.json").write_text(text)
    if json_out is not None:
        json_out.write_text(text)
    print(text)


def soak(
    seconds: Annotated[float, typer.Option(help="How long (the issue asks for 3600).")] = 3600.0,
    fps: Annotated[float, typer.Option(help="Frames per second offered by the camera.")] = 100.0,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for JSON and PNG.")] = (
        Path("livetrack-soak")
    ),
) -> None:
    """Run the live pipeline for a long time; report memory growth and latency creep."""
    from livetrack.bench import run_soak

    try:
        figures = run_soak(seconds, fps, output)
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    print(json.dumps(figures, indent=2))
