"""``livetrack demo``: the whole live pipeline on one machine, measured.

Processes (each its own, talking over real loopback sockets):

- ``livetrack serve``: the service with the shipped model, linking;
- ``livetrack acquire``: the simulated microscope (UniMMCore) streaming frames
  and taking actuation commands;
- ``livetrack control``: the centring controller;
- this process: a subscriber that shows the live view and draws the summary;
- with ``view``: ``livetrack view``, napari with the live widget (frames, detections,
  tracks, click-to-follow), closed when the demo ends.

The run has two phases on the same sample and seed: with feedback, then with
the controller off (``--mode none``), so the benefit is measured, not claimed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live

from livetrack.config import load_simulation_config
from livetrack.demo._report import draw_summary
from livetrack.demo._watch import Watcher
from livetrack.demo.processes import Child, start_service
from livetrack.wire.client import ControlClient, ServiceUnavailableError, free_loopback_addresses


def _wait_drained(control: ControlClient, sent: int, timeout_s: float = 15.0) -> dict[str, Any]:
    """Service stats once every frame sent has been received and dealt with."""
    end = time.monotonic() + timeout_s
    while True:
        st: dict[str, Any] = control.request("stats")["status"]
        done = st["processed"] + st["skipped"] + st["rejected_total"]
        if (st["received"] >= sent and done >= st["received"]) or time.monotonic() > end:
            return st
        time.sleep(0.1)


def _start_controller(name: str, mode: str, addr: dict[str, str], out: Path, preset: str) -> Child:
    ctl = Child(
        f"control-{name}",
        [
            "control", preset, "--results", addr["results"], "--actuation", addr["actuation"],
            "--mode", mode, "--json", str(out / f"{name}-controller.json"),
        ],
        out / f"{name}-control.log",
    )  # fmt: skip
    if not ctl.wait_for_line("controller listening", 60):
        ctl.stop()
        raise RuntimeError(f"the controller did not start:\n{ctl.tail()}")
    time.sleep(0.5)  # SUB connects before the first frame (slow joiner)
    return ctl


def _start_viewer(addr: dict[str, str], out: Path) -> Child:
    """The napari viewer with the live widget, connected before the first phase starts."""
    args = ["--results", addr["results"], "--control", addr["control"], "--frames", addr["frames"]]
    viewer = Child("view", ["view", *args], out / "view.log")
    if not viewer.wait_for_line("livetrack view: connected", 120):
        viewer.stop()
        raise RuntimeError(
            f"napari did not start (livetrack[napari]? a display?):\n{viewer.tail()}"
        )
    return viewer


def _start_acquisition(
    name: str, seconds: float, seed: int, addr: dict[str, str], out: Path, preset: str
) -> Child:
    return Child(
        f"acquire-{name}",
        [
            "acquire", "--simulate", preset, "--seed", str(seed), "--frames", addr["frames"],
            "--actuation", addr["actuation"], "--seconds", str(seconds), "--pin-centre",
            "--stats-json", str(out / f"{name}-acquire.json"),
            "--last-frame", str(out / f"{name}-last-frame.npy"),
        ],
        out / f"{name}-acquire.log",
    )  # fmt: skip


def _accounting(
    acq_stats: dict[str, Any], before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    """Every frame the camera produced, in exactly one bucket, and whether they add up."""
    fr = acq_stats["frames"]
    frames = {
        "sent": fr["acquired"],  # every frame the camera produced
        "processed": after["processed"] - before["processed"],
        "skipped": after["skipped"] - before["skipped"],
        "dropped": fr["dropped"],
        "rejected": after["rejected_total"] - before["rejected_total"],
    }
    frames_ok = frames["sent"] == sum(v for k, v in frames.items() if k != "sent")
    return {**frames, "accounted": frames_ok}


def _phase(
    name: str,
    mode: str,
    seconds: float,
    seed: int,
    addr: dict[str, str],
    control: ControlClient,
    watcher: Watcher,
    out: Path,
    live: Live | None,
    preset: str,
) -> dict[str, Any]:
    control.request("reset_tracks")
    before = control.request("stats")["status"]
    watcher.clear()
    ctl = _start_controller(name, mode, addr, out, preset)
    acq = _start_acquisition(name, seconds, seed, addr, out, preset)
    t0 = time.monotonic()
    while acq.running() and time.monotonic() - t0 < seconds + 60:
        if live is not None:
            live.update(watcher.table(name, time.monotonic() - t0, seconds))
        time.sleep(0.25)
    if acq.stop() != 0:
        ctl.stop()
        raise RuntimeError(f"acquisition failed:\n{acq.tail()}")
    acq_stats = json.loads((out / f"{name}-acquire.json").read_text())
    after = _wait_drained(control, before["received"] + acq_stats["frames"]["sent"])
    time.sleep(0.3)  # the last results reach the controller
    ctl.stop()
    ctl_stats = json.loads((out / f"{name}-controller.json").read_text())
    frames = _accounting(acq_stats, before, after)
    lat, tracks, last_stage_px = watcher.history()
    return {
        "seconds": acq_stats["seconds"],
        "fps": frames["processed"] / acq_stats["seconds"],
        "latency_ms": (
            {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}
            if len(lat)
            else {}
        ),
        "frames": frames,
        "loop_latency_ms": acq_stats["actuation"]["latency_ms"],
        "actuation": acq_stats["actuation"],
        "truth": acq_stats["truth"],
        "controller": {k: v for k, v in ctl_stats.items() if k not in ("t_s", "error_px")},
        "tracks": tracks,
        "last_stage_px": last_stage_px,
        "latency_samples": lat,
    }


def run_demo(
    seconds: float = 20.0,
    output: Path = Path("livetrack-demo"),
    seed: int = 0,
    live: bool = True,
    console: Console | None = None,
    view: bool = False,
    transport: str = "ipc",
    preset: str = "demo",
    split_radius_px: float = 24.0,
) -> dict[str, Any]:
    """Run both phases and return the figures (also drawn to ``output/demo.png``)."""
    console = console or Console(stderr=True)
    output.mkdir(parents=True, exist_ok=True)
    names = ("frames", "results", "control", "actuation")
    sock_dir: Path | None = None
    if transport == "ipc":  # same machine: Unix sockets, no TCP stack for 26 MB/s of frames
        sock_dir = Path(tempfile.mkdtemp(prefix="livetrack-demo-"))
        addr = {n: f"ipc://{sock_dir / n}" for n in names}
    else:
        addr = dict(zip(names, free_loopback_addresses(4), strict=True))
    console.print("starting the service (loading the model)…")
    cam = load_simulation_config(preset).camera
    # particles hidden in a neighbour's fit, looked for only around the field's centre,
    # where the controller keeps its bead: an encounter there otherwise swaps tracks
    centre = f"{(cam.width - 1) / 2},{(cam.height - 1) / 2},{split_radius_px}"
    split = ("--split-near", centre) if split_radius_px > 0 else ()
    serve, control = start_service(addr, output / "serve.log", "--queue", "8", *split)
    watcher = Watcher(addr["results"], (cam.height, cam.width))
    viewer = _start_viewer(addr, output) if view else None
    phases: dict[str, Any] = {}
    try:
        terminal = Live(console=console, refresh_per_second=4, transient=True) if live else None
        if terminal is not None:
            terminal.start()
        try:
            for name, mode in (("feedback", "centre"), ("no_feedback", "none")):
                console.print(f"phase {name}: {seconds:.0f} s")
                phases[name] = _phase(
                    name, mode, seconds, seed, addr, control, watcher, output, terminal, preset
                )
        finally:
            if terminal is not None:
                terminal.stop()
        with contextlib.suppress(ServiceUnavailableError):
            control.request("shutdown")
    finally:
        if viewer is not None:
            viewer.stop()
        watcher.close()
        control.close()
        serve.stop()
        if sock_dir is not None:
            shutil.rmtree(sock_dir, ignore_errors=True)
    fb, nf = phases["feedback"], phases["no_feedback"]
    draw_summary(fb, nf, output / "demo.png", output / "feedback-last-frame.npy")
    with_fb = fb["truth"].get("rms_px_from_centre")
    without = nf["truth"].get("rms_px_from_centre")
    for p in phases.values():
        p.pop("tracks")
        p.pop("latency_samples")
        p.pop("last_stage_px")
        p["truth"] = {k: v for k, v in p["truth"].items() if k not in ("t_s", "distance_px")}
    return {
        "fps": fb["fps"],
        "latency_ms": fb["latency_ms"],
        "loop_latency_ms": fb["loop_latency_ms"],
        "frames": fb["frames"],
        "centring": {
            "rms_px_with_feedback": with_fb,
            "rms_px_without_feedback": without,
            "ratio": with_fb / without if with_fb and without else None,
            "followed_particle": fb["truth"].get("particle"),
        },
        "phases": phases,
        "split_near_px": split_radius_px,
        "png": str(output / "demo.png"),
        **({"viewer": _viewer_counts(output / "view.log")} if view else {}),
    }


def _viewer_counts(log: Path) -> dict[str, int] | None:
    """What napari drew, from the last line ``livetrack view`` wrote (None: it did not say)."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("livetrack view: ") and "pictures" in line:
            pictures, draws = (int(w) for w in line.split() if w.isdigit())
            return {"pictures": pictures, "draws": draws}
    return None
