"""The CLI's options, typed once and shared by the commands (typer reads the annotations).

No ``from __future__ import annotations`` here: typer reads the annotations.
"""

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from livetrack.detection.precision import PrecisionName

console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one ``error:`` line and return the exit to raise."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


# linking (serve, process)
SearchRange = Annotated[
    float | None,
    typer.Option(help="Linking search range (px) (default 8; process: from the data)."),
]
Memory = Annotated[
    int | None,
    typer.Option(
        help="Frames a track may be missed (one hidden in an encounter) "
        "(default 10; process: from the density)."
    ),
]
BrightnessPenalty = Annotated[
    float | None,
    typer.Option(
        help="Weight of a brightness change in the link cost (0: distance only) (default 1)."
    ),
]

# the detector (serve, process)
Precision = Annotated[
    PrecisionName | None,
    typer.Option(
        help="Network arithmetic: auto (on a CPU int8 through ONNX Runtime, else "
        "bfloat16 where native, else float32), float32, bfloat16, int8 (default auto)."
    ),
]
Model = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="Model artifact folder, or a shipped model's name: default, "
        "brightfield-colloid-detector, trapped-colloid-localiser (default: default).",
    ),
]
Classical = Annotated[
    bool | None, typer.Option("--classical", help="trackpy's locate instead of a trained model.")
]
ForceModel = Annotated[
    bool | None, typer.Option("--force-model", help="Use a model whose card does not fit.")
]
Seconds = Annotated[float | None, typer.Option(help="Stop after this many seconds.")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON.")]

# serve
ServeConfig = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML file with a 'service' table (these options, '_' for '-') and a "
        "'linking' table; options given here override it.",
    ),
]
FramesAddress = Annotated[str | None, typer.Option("--frames", help="PULL address for frames.")]
ResultsAddress = Annotated[str | None, typer.Option("--results", help="PUB address for results.")]
ControlAddress = Annotated[str | None, typer.Option("--control", help="REP address for control.")]
Policy = Annotated[
    Literal["realtime", "lossless"] | None,
    typer.Option(help="realtime (newest frame) or lossless (every frame) (default realtime)."),
]
Queue = Annotated[
    int | None, typer.Option(help="Frames that may wait in the service (default 64).")
]
Insecure = Annotated[
    bool | None,
    typer.Option("--insecure", help="Allow binding non-loopback addresses without encryption."),
]
Keys = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        help="Key folder from `livetrack keys`: CURVE encryption, and only the clients "
        "whose public keys are in KEYS/clients are served.",
    ),
]
Pipeline = Annotated[
    bool | None,
    typer.Option(help="Real-time: run the next frame's network during this one's read-out."),
]
ServeSplit = Annotated[
    bool | None,
    typer.Option(
        help="Find particles hidden in a neighbour's fit (more recall in dense frames, "
        "~2x the read-out time; off by default here: latency first)."
    ),
]
SplitNear = Annotated[
    str | None,
    typer.Option(
        help="X,Y,R (pixels): find hidden particles only within R of (X, Y), e.g. "
        "around the particle a centring controller keeps at the field's centre; a "
        "fraction of --split's cost."
    ),
]
NetworkThreads = Annotated[
    int | None, typer.Option(help="Threads for the network (default: cores − 1, at least 1).")
]
MetricsPort = Annotated[
    int | None,
    typer.Option(help="Serve Prometheus metrics over HTTP on this port (0: any free port)."),
]
MetricsHost = Annotated[
    str | None,
    typer.Option(help="Interface for --metrics-port (off-loopback needs --insecure)."),
]

# process
Movies = Annotated[
    list[str], typer.Argument(help="TIFF/OME-TIFF, Zarr, a video (OpenCV), or a quoted glob.")
]
TableOut = Annotated[Path, typer.Option("-o", "--output", help="Table file, or a folder.")]
Single = Annotated[
    str | None,
    typer.Option(
        metavar="auto|CROP",
        help="One particle per frame (a trap): `auto` sizes the crop from the particle "
        "(else its side, px); radial symmetry, then the particle's own template (or the "
        "network of a --model localiser).",
    ),
]
Diameter = Annotated[int, typer.Option(help="--classical: feature diameter (odd, px).")]
Minmass = Annotated[float, typer.Option(help="--classical: minimum integrated mass.")]
MinPhotons = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Drop a model's fitted spots with fewer photons (default: the card's floor; "
        "`adapt` sets one above a faint population at the noise's level, 0 keeps it).",
    ),
]
MinScore = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Drop a model's detections scoring below this (its card's threshold stays "
        "the floor): with two kinds of particle in a movie, keep the kind a "
        "--self-supervised model learnt (its score ~1 on them).",
    ),
]
TableFormat = Annotated[
    Literal["parquet", "csv", "h5"],
    typer.Option("--format", help="Table format when -o is a folder."),
]
Workers = Annotated[int, typer.Option(help="Local Dask worker processes.")]
Scheduler = Annotated[str | None, typer.Option(help="Address of a running Dask scheduler.")]
Chunk = Annotated[int, typer.Option(help="Frames per unit of work.")]
PixelSize = Annotated[float | None, typer.Option(help="Pixel size when the movie does not say.")]
Offset = Annotated[
    float | None,
    typer.Option(
        "--offset",
        help="The camera's dark level (ADU); default: read from the movie (process), the "
        "frame's header or the model card's (serve).",
    ),
]
Gain = Annotated[
    float | None,
    typer.Option(
        "--gain",
        help="The camera's gain (ADU per photo-electron); default: from the movie where it "
        "can tell (process), the frame's header (serve), else the model card's.",
    ),
]
Fps = Annotated[
    float | None, typer.Option(help="Frames per second when the movie does not say (t_s column).")
]
Channel = Annotated[
    int | None,
    typer.Option(help="The channel of a multichannel or colour movie (0, 1, …); required there."),
]
Invert = Annotated[
    bool,
    typer.Option(
        "--invert",
        help="Dark particles on a bright background (absorbing beads in transmitted "
        "light): inverted before a fluorescence model or --classical sees them.",
    ),
]
ServeInvert = Annotated[
    bool | None,
    typer.Option(
        "--invert",
        help="Dark particles on a bright background: each frame is inverted about its "
        "median before the model or --classical sees it.",
    ),
]
LinkingFromData = Annotated[
    bool,
    typer.Option(
        help="Search range and memory not given: from the particles' measured steps and "
        "density (--no-linking-from-data: the defaults, 8 px and 10 frames)."
    ),
]
ProcessSplit = Annotated[
    bool,
    typer.Option(
        help="Find particles hidden in a neighbour's fit (more recall in dense frames); "
        "--no-split reproduces a `livetrack serve` run without --split."
    ),
]
Checkpoint = Annotated[
    bool,
    typer.Option(
        help="Keep each chunk's detections in OUTPUT.partial.d as they come, so that "
        "a failed run (full disk, killed job) resumes where it stopped."
    ),
]

# acquire
Simulate = Annotated[
    str | None,
    typer.Option(help="Simulated microscope from this preset (file or shipped name)."),
]
MMConfig = Annotated[
    Path | None, typer.Option("--mm-config", help="A Micro-Manager configuration (real rig).")
]
FramesTo = Annotated[str | None, typer.Option("--frames", help="The service's frame address.")]
ActuationBind = Annotated[
    str | None,
    typer.Option("--actuation", help="Bind this address for actuation ('' for none)."),
]
Mda = Annotated[Path | None, typer.Option(help="Run this useq MDA sequence (YAML/JSON) instead.")]
SampleSeed = Annotated[int, typer.Option("--seed", help="Seed of the simulated sample.")]
IntervalMs = Annotated[float | None, typer.Option(help="Simulated camera: frame interval (ms).")]
PinCentre = Annotated[
    bool,
    typer.Option("--pin-centre", help="Log the true path of the particle nearest the centre."),
]
StatsJson = Annotated[Path | None, typer.Option(help="Write the session's figures.")]
LastFrame = Annotated[Path | None, typer.Option(help="Save the last frame (.npy).")]

# control
ControllerPreset = Annotated[
    str, typer.Argument(help="Preset with a controller section (file or shipped name).")
]
ResultsFrom = Annotated[str, typer.Option("--results", help="The service's results address.")]
ActuationTo = Annotated[
    str | None, typer.Option("--actuation", help="The acquisition's actuation address.")
]
Mode = Annotated[Literal["centre", "trap", "none"] | None, typer.Option(help="What to steer.")]
Particle = Annotated[int | None, typer.Option(help="Follow this track id.")]
Target = Annotated[str | None, typer.Option(help="Hold the particle at x,y (px).")]
Kp = Annotated[float | None, typer.Option(help="Proportional gain.")]
Ki = Annotated[float | None, typer.Option(help="Integral gain.")]
Enter = Annotated[
    str | None,
    typer.Option(help="Trigger when a track enters x0,y0,x1,y1 (px): snap an MDA frame."),
]

# demo
PhaseSeconds = Annotated[
    float, typer.Option("--seconds", help="Seconds per phase (with and without feedback).")
]
DemoOut = Annotated[Path, typer.Option("-o", "--output", help="Folder for the PNG and JSON.")]
Live = Annotated[bool, typer.Option(help="Show the live terminal view.")]
View = Annotated[
    bool, typer.Option(help="Also open napari with the live widget (needs livetrack[napari]).")
]
Transport = Annotated[
    Literal["ipc", "tcp"], typer.Option(help="ipc (Unix sockets) or tcp (loopback).")
]
DemoPreset = Annotated[
    str, typer.Option("--config", help="Preset with acquisition and controller sections.")
]
SplitRadius = Annotated[
    float,
    typer.Option(
        "--split-near",
        help="Radius (px) around the centre where the service looks for particles "
        "hidden in a neighbour's fit (serve --split-near); 0: nowhere.",
    ),
]
