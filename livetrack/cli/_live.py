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

from livetrack.cli import _options as o
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
    simulate: o.Simulate = "demo",
    mm_config: o.MMConfig = None,
    frames: o.FramesTo = None,
    actuation: o.ActuationBind = None,
    mda: o.Mda = None,
    seconds: o.Seconds = None,
    seed: o.SampleSeed = 0,
    interval_ms: o.IntervalMs = None,
    pin_centre: o.PinCentre = False,
    stats_json: o.StatsJson = None,
    last_frame: o.LastFrame = None,
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
    config: o.ControllerPreset = "demo",
    results: o.ResultsFrom = "tcp://127.0.0.1:5556",
    actuation: o.ActuationTo = None,
    mode: o.Mode = None,
    particle: o.Particle = None,
    target: o.Target = None,
    kp: o.Kp = None,
    ki: o.Ki = None,
    enter: o.Enter = None,
    seconds: o.Seconds = None,
    json_out: o.JsonOut = None,
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
    seconds: o.PhaseSeconds = 20.0,
    output: o.DemoOut = Path("livetrack-demo"),
    json_out: o.JsonOut = None,
    seed: o.SampleSeed = 0,
    live: o.Live = True,
    view: o.View = False,
    transport: o.Transport = "ipc",
    config: o.DemoPreset = "demo",
    split_near: o.SplitRadius = 24.0,
) -> None:
    """The simulated microscope, the service with the shipped model, linking and centring.

    Each runs in its own process over real sockets; runs once with the feedback
    loop and once without (same sample, same seed), then writes demo.png and demo.json.
    """
    from livetrack.config import ConfigError, load_simulation_config
    from livetrack.demo import run_demo

    try:
        load_simulation_config(config)  # a bad preset fails here, not in three processes
        figures = run_demo(
            seconds=seconds,
            output=output,
            seed=seed,
            live=live,
            view=view,
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
