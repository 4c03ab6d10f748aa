"""The CLI's offline commands: ``process``, ``plot`` and ``bench``.

No ``from __future__ import annotations`` here: typer reads the annotations.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from livetrack.cli import _options as o
from livetrack.cli._options import console, fail


def _say(message: str) -> None:
    console.print(message, highlight=False)


@contextmanager
def _frames_bar() -> Iterator[Callable[[Any], Callable[[int], None]]]:
    """A progress bar per movie: frames done and frames per second."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    fps = TextColumn("{task.fields[fps]:.1f} frames/s")
    with Progress(*columns, fps, console=console, transient=True) as bar:

        def on_movie(info: Any) -> Callable[[int], None]:
            task = bar.add_task(Path(info.path).name, total=info.n_frames, fps=0.0)
            t0 = time.perf_counter()

            def advance(n: int) -> None:
                done = bar.tasks[task].completed + n
                dt = time.perf_counter() - t0
                bar.update(task, advance=n, fps=done / dt if dt > 0 else 0.0)

            return advance

        yield on_movie


def process(
    movies: o.Movies,
    output: o.TableOut,
    model: o.Model = None,
    classical: o.Classical = False,
    single: o.Single = None,
    diameter: o.Diameter = 9,
    minmass: o.Minmass = 100.0,
    min_score: o.MinScore = None,
    min_photons: o.MinPhotons = None,
    fmt: o.TableFormat = "parquet",
    workers: o.Workers = 1,
    scheduler: o.Scheduler = None,
    chunk: o.Chunk = 8,
    pixel_size_um: o.PixelSize = None,
    fps: o.Fps = None,
    channel: o.Channel = None,
    invert: o.Invert = False,
    offset: o.Offset = None,
    gain: o.Gain = None,
    search_range: o.SearchRange = None,
    memory: o.Memory = None,
    brightness_penalty: o.BrightnessPenalty = None,
    linking_from_data: o.LinkingFromData = True,
    precision: o.Precision = "auto",
    split: o.ProcessSplit = True,
    checkpoint: o.Checkpoint = True,
    force_model: o.ForceModel = False,
) -> None:
    """Detect and link recorded movies into trackpy-compatible tables (+ a JSON sidecar)."""
    from livetrack.linking import LinkingConfig
    from livetrack.offline.job import ProcessError, ProcessOptions, process_movies

    if single is not None and single != "auto" and not single.isdigit():
        raise fail(f"--single {single!r}: expected auto or a crop side in px (e.g. 31)")
    single_crop: int | Literal["auto"] | None = (
        None if single is None else "auto" if single == "auto" else int(single)
    )
    given = {"search_range_px": search_range, "memory": memory}
    given["brightness_penalty"] = brightness_penalty
    try:
        linking = LinkingConfig(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise fail(f"linking options: {exc}") from None
    try:
        opts = ProcessOptions(
            model=str(model) if model else None, classical=bool(classical), single=single_crop,
            diameter=diameter, minmass=minmass, fmt=fmt, workers=workers, scheduler=scheduler,
            chunk=chunk, pixel_size_um=pixel_size_um, linking=linking,
            precision=precision or "auto", split=split, checkpoint=checkpoint,
            force_model=bool(force_model), fps=fps, channel=channel, offset_adu=offset,
            gain_adu_per_e=gain, invert=invert, linking_from_data=linking_from_data,
            min_score=min_score, min_photons=min_photons,
        )  # fmt: skip
        with _frames_bar() as on_movie:
            done = process_movies(movies, output, opts, on_movie, _say)
    except ProcessError as exc:
        raise fail(str(exc)) from None
    for r in done:
        rec = r.record
        console.print(
            f"{rec['movie']['path']}: {rec['frames']} frames, {rec['rows']} detections, "
            f"{rec['tracks']} tracks in {rec['seconds']:.1f} s "
            f"({rec['frames_per_s'] or 0:.1f} frames/s) → {r.output}",
            highlight=False,
        )


def plot(
    table: Annotated[Path, typer.Argument(help="A table written by `livetrack process`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the PNGs.")] = Path(
        "plots"
    ),
    movie: Annotated[
        str | None, typer.Option(help="The movie, to draw trajectories over its first frame.")
    ] = None,
    pixel_size_um: Annotated[float | None, typer.Option(help="µm per pixel for the MSD.")] = None,
    fps: Annotated[float | None, typer.Option(help="Frames per second for the MSD.")] = None,
) -> None:
    """PNGs: trajectories, ensemble MSD with D, radius vs refractive index, detections per frame."""
    from livetrack.plots import plot_table

    try:
        written = plot_table(table, output, movie, pixel_size_um, fps)
    except (OSError, ValueError, KeyError) as exc:
        raise fail(str(exc)) from None
    for p in written:
        print(p)


class BenchPart(StrEnum):
    """The parts of ``livetrack bench`` (the sections of :data:`livetrack.bench.SECTIONS`)."""

    simulation = "simulation"
    localization = "localization"
    detection = "detection"
    camera = "camera"
    offconfig = "offconfig"
    linking = "linking"
    overhead = "overhead"
    speed = "speed"
    sizing = "sizing"
    single = "single"
    real = "real"
    overload = "overload"
    storm = "storm"
    reconnect = "reconnect"
    centring = "centring"
    viewer = "viewer"
    adapt = "adapt"
    lodestar = "lodestar"
    diffusion = "diffusion"


def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Small sizes; finishes in minutes.")
    ] = False,
    only: Annotated[
        list[BenchPart] | None, typer.Option("--only", help="Run only this part (repeatable).")
    ] = None,
    json_out: o.JsonOut = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a markdown report into this folder.")
    ] = None,
    real_data: Annotated[
        Path | None,
        typer.Option(
            envvar="LIVETRACK_REAL_DATA",
            help="Folder of the real movies (shared/data/real) for the parts that compare "
            "with them; without it they are skipped.",
        ),
    ] = None,
) -> None:
    """Measure accuracy and speed side by side with the baselines, in one run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from livetrack.bench import markdown_report, run_bench, write_report

    columns = (TextColumn("bench: {task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def on_section(name: str, i: int, n: int) -> None:
            bar.update(task, description=name, completed=i, total=n)

        try:
            parts = [p.value for p in only or []] or None
            result = run_bench(parts, quick, real_data, on_section)
        except ValueError as exc:
            raise fail(str(exc)) from None
    write_report(result, json_out, report)
    print(markdown_report(result))
