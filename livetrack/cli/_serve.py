"""The CLI's ``serve`` and ``keys`` commands.

No ``from __future__ import annotations`` here: typer reads the annotations.
"""

import logging
from pathlib import Path
from typing import Annotated

import typer

from livetrack.cli import _options as o
from livetrack.cli._options import console, fail


def parse_region(text: str) -> tuple[float, float, float]:
    """``X,Y,R`` in pixels, R > 0; a clear error otherwise."""
    try:
        x, y, r = (float(v) for v in text.split(","))
    except ValueError:
        raise fail(
            f"--split-near {text!r}: expected X,Y,R in pixels, e.g. 255.5,255.5,32"
        ) from None
    if not r > 0:
        raise fail(f"--split-near {text!r}: the radius must be positive")
    return x, y, r


# options of this run that are not service settings (linking is gathered into one map)
_NOT_SETTINGS = ("config", "seconds", "search_range", "memory", "brightness_penalty")


def serve(
    config: o.ServeConfig = None,
    model: o.Model = None,
    classical: o.Classical = None,
    frames: o.FramesAddress = None,
    results: o.ResultsAddress = None,
    control: o.ControlAddress = None,
    policy: o.Policy = None,
    queue: o.Queue = None,
    force_model: o.ForceModel = None,
    insecure: o.Insecure = None,
    keys: o.Keys = None,
    precision: o.Precision = None,
    pipeline: o.Pipeline = None,
    split: o.ServeSplit = None,
    split_near: o.SplitNear = None,
    network_threads: o.NetworkThreads = None,
    metrics_port: o.MetricsPort = None,
    metrics_host: o.MetricsHost = None,
    offset: o.Offset = None,
    gain: o.Gain = None,
    invert: o.ServeInvert = None,
    min_score: o.MinScore = None,
    min_photons: o.MinPhotons = None,
    search_range: o.SearchRange = None,
    memory: o.Memory = None,
    brightness_penalty: o.BrightnessPenalty = None,
    seconds: o.Seconds = None,
) -> None:
    """Serve detection + linking over ZeroMQ until SIGINT/SIGTERM or a shutdown request."""
    given = {k: v for k, v in locals().items() if k not in _NOT_SETTINGS}  # before any import
    from livetrack.artifact import ArtifactError
    from livetrack.config import ConfigError
    from livetrack.service.settings import load_serve_settings, start_service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    linking = {
        "search_range_px": search_range,
        "memory": memory,
        "brightness_penalty": brightness_penalty,
    }
    given.update(
        model=str(model) if model else None,
        keys=str(keys) if keys else None,
        split_near=parse_region(split_near) if split_near else None,
        linking={k: v for k, v in linking.items() if v is not None},
    )
    try:
        settings = load_serve_settings(config, given)
        service, network = start_service(settings)
    except (ConfigError, ArtifactError, PermissionError, ValueError, RuntimeError, OSError) as e:
        raise fail(str(e)) from None
    except Exception as exc:  # zmq bind errors: address in use, bad address
        raise fail(f"cannot start the service: {exc}") from None
    lines = [f"{name:8s} {endpoint}" for name, endpoint in service.endpoints.items()]
    lines += [f"network  {network}", f"split    {settings.split_summary()}"]
    console.print("\n".join(lines), highlight=False)
    console.print(f"policy   {settings.policy}; Ctrl-C to stop", highlight=False)
    stats = service.run(seconds)
    console.print(f"stopped: {stats.snapshot()}", highlight=False)


def keys(
    directory: Annotated[Path, typer.Argument(help="Key directory.")],
    name: Annotated[
        str, typer.Option(help="Key pair name: 'server', or a client's name.")
    ] = "server",
) -> None:
    """Make a CURVE key pair (NAME.key public, NAME.key_secret with mode 0600).

    Clients' public keys go into DIRECTORY/clients on the service's machine.
    """
    from livetrack.wire.security import KeyFileError, generate_keys

    try:
        public, secret = generate_keys(directory, name)
    except (KeyFileError, OSError) as exc:
        raise fail(str(exc)) from None
    print(public)
    print(secret)


def conform(
    frames: Annotated[str, typer.Option(help="The service's frame address.")] = (
        "tcp://127.0.0.1:5555"
    ),
    results: Annotated[str, typer.Option(help="The service's results address.")] = (
        "tcp://127.0.0.1:5556"
    ),
    control: Annotated[str, typer.Option(help="The service's control address.")] = (
        "tcp://127.0.0.1:5557"
    ),
    export: Annotated[
        Path | None, typer.Option(help="Write the cases as JSON (hex bytes) and stop.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 5.0,
) -> None:
    """Check a running service against the protocol: every case of the conformance suite."""
    from livetrack.wire import conformance

    if export is not None:
        conformance.export(export)
        print(export)
        return
    try:
        report = conformance.run(frames, results, control, timeout_s=timeout)
    except (TimeoutError, OSError) as exc:
        raise fail(str(exc)) from None
    for failed in report.failures():
        console.print(f"[red]✗[/] {failed.case}: {failed.detail}", highlight=False)
    n, bad = len(report.outcomes), len(report.failures())
    print(f"{n - bad} of {n} cases pass")
    if bad:
        raise typer.Exit(1)
