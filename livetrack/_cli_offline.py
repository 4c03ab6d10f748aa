"""The offline commands of the CLI: ``process`` and ``plot``.

Registered on the app in :mod:`livetrack.cli`. No ``from __future__ import
annotations`` here: typer reads the annotations.
"""

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from livetrack._cli_options import BrightnessPenalty, Memory, Precision, SearchRange

console = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("livetrack.process")


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _output_for(movie: str, output: Path, fmt: str, several: bool) -> Path:
    from livetrack.inference.process import TABLE_SUFFIXES

    if not several and output.suffix.lower() in TABLE_SUFFIXES:
        return output
    stem = Path(movie.replace("*", "all")).name
    for suffix in (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".zarr", ".png"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return output / f"{stem}.{fmt}"


def _frames_kept(folder: Path | None) -> int:
    """Frames a previous run left in a checkpoint folder (0 when none)."""
    if folder is None or not folder.is_dir():
        return 0
    return sum(int(p.stem.split("-")[2]) for p in folder.glob("chunk-*.parquet"))


def _client(workers: int, scheduler: str | None) -> Any:
    if scheduler is None and workers <= 1:
        return None
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise _fail("--workers/--scheduler need Dask: pip install 'livetrack[dask]'") from None
    if scheduler is not None:
        return Client(scheduler)  # type: ignore[no-untyped-call]
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers, threads_per_worker=1, processes=True
    )
    return Client(cluster)  # type: ignore[no-untyped-call]


def process(
    movies: Annotated[list[str], typer.Argument(help="TIFF/OME-TIFF, Zarr, or a quoted glob.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Table file, or a folder.")],
    model: Annotated[
        Path | None, typer.Option("--model", help="Model artifact (default: the shipped one).")
    ] = None,
    classical: Annotated[
        bool, typer.Option("--classical", help="trackpy's locate instead of a model.")
    ] = False,
    single: Annotated[
        int | None,
        typer.Option(
            help="One particle per frame (a trap), found at this scale (odd, px): radial "
            "symmetry on a crop this wide, or the network of a --model localiser."
        ),
    ] = None,
    diameter: Annotated[int, typer.Option(help="--classical: feature diameter (odd, px).")] = 9,
    minmass: Annotated[float, typer.Option(help="--classical: minimum integrated mass.")] = 100.0,
    fmt: Annotated[
        str, typer.Option("--format", help="parquet, csv or h5, when -o is a folder.")
    ] = "parquet",
    workers: Annotated[int, typer.Option(help="Local Dask worker processes.")] = 1,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler.")
    ] = None,
    chunk: Annotated[int, typer.Option(help="Frames per unit of work.")] = 8,
    pixel_size_um: Annotated[
        float | None, typer.Option(help="Pixel size when the movie does not say.")
    ] = None,
    search_range: SearchRange = 8.0,
    memory: Memory = 10,
    brightness_penalty: BrightnessPenalty = 1.0,
    precision: Precision = "auto",
    split: Annotated[
        bool,
        typer.Option(
            help="Find particles hidden in a neighbour's fit (more recall in dense frames); "
            "--no-split reproduces a `livetrack serve` run without --split."
        ),
    ] = True,
    checkpoint: Annotated[
        bool,
        typer.Option(
            help="Keep each chunk's detections in OUTPUT.partial.d as they come, so that "
            "a failed run (full disk, killed job) resumes where it stopped."
        ),
    ] = True,
    force_model: Annotated[
        bool, typer.Option("--force-model", help="Use a model whose card does not fit.")
    ] = False,
) -> None:
    """Detect and link recorded movies into trackpy-compatible tables (+ a JSON sidecar)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from livetrack import __version__
    from livetrack._runtime import package_versions
    from livetrack.artifact import ArtifactError, check_fits, default_model_dir, read_card
    from livetrack.inference._precision import PRECISIONS
    from livetrack.inference.movies import MovieError, MovieReader
    from livetrack.inference.process import (
        TABLE_SUFFIXES,
        DetectorSpec,
        process_movie,
        write_sidecar,
        write_table,
    )
    from livetrack.linking import LinkingConfig

    if f".{fmt}" not in TABLE_SUFFIXES:
        raise _fail(f"--format {fmt!r}: expected parquet, csv or h5")
    if precision not in PRECISIONS:
        raise _fail(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if chunk < 1:
        raise _fail("--chunk must be at least 1")
    several = len(movies) > 1
    if several and output.suffix.lower() in TABLE_SUFFIXES:
        raise _fail(f"{len(movies)} movies: -o must be a folder, not {output}")
    import os

    threads = (
        max(1, (os.cpu_count() or 1) // workers) if scheduler is None and workers > 1 else None
    )
    spec = DetectorSpec(
        str(model) if model else None,
        classical=classical,
        single_crop=single,
        diameter=diameter,
        minmass=minmass,
        threads=threads,
        precision=precision,
        split=split,
    )
    card = (
        None if classical or (single and model is None) else read_card(model or default_model_dir())
    )
    if card is not None:
        want = "localiser" if single else "detector"
        if card.outputs.kind != want:
            hint = "" if single else " (a localiser needs --single)"
            raise _fail(f"--model {model}: a {card.outputs.kind} model, not a {want}{hint}")
    try:
        linking = LinkingConfig(
            search_range_px=search_range, memory=memory, brightness_penalty=brightness_penalty
        )
    except ValueError as exc:
        raise _fail(f"linking options: {exc}") from None
    infos = []
    for m in movies:  # check every movie before spending time on any
        try:
            r = MovieReader(m)
        except MovieError as exc:
            raise _fail(str(exc)) from None
        infos.append(r.info)
        r.close()
        if card is not None:
            try:
                problems = check_fits(
                    card, pixel_size_um=pixel_size_um or r.info.pixel_size_um, override=force_model
                )
            except ArtifactError as exc:
                raise _fail(f"{m}: {exc}") from None
            for p in problems:
                console.print(f"warning: {m}: {p} (--force-model)", highlight=False)
    client = _client(workers, scheduler)
    detector = None if client is not None else spec.build()
    try:
        for m, info in zip(movies, infos, strict=True):
            out = _output_for(m, output, fmt, several)
            with Progress(
                TextColumn(f"{Path(info.path).name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[fps]:.1f} frames/s"),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task("frames", total=info.n_frames, fps=0.0)
                t0 = time.perf_counter()

                def advance(n: int, _task: Any = task, _t0: float = t0) -> None:
                    done = bar.tasks[0].completed + n
                    dt = time.perf_counter() - _t0
                    bar.update(_task, advance=n, fps=done / dt if dt > 0 else 0.0)

                kept = out.with_name(out.name + ".partial.d") if checkpoint else None
                resumed = _frames_kept(kept)
                if resumed:
                    console.print(
                        f"{m}: resuming, {resumed} frames kept in {kept}", highlight=False
                    )
                try:
                    table, info, seconds = process_movie(
                        m,
                        spec,
                        linking,
                        chunk,
                        client=client,
                        detector=detector,
                        on_frames=advance,
                        pixel_size_um=pixel_size_um,
                        checkpoint=kept,
                    )
                except OSError as exc:
                    raise _fail(f"{m}: {exc}") from None
            try:
                write_table(table, out)
            except (OSError, ValueError) as exc:
                where = f"; the detections are kept in {kept}: rerun to resume" if kept else ""
                raise _fail(f"{exc}{where}") from None
            if kept is not None:
                shutil.rmtree(kept, ignore_errors=True)
            record = {
                "livetrack": __version__,
                "movie": asdict(info),
                "pixel_size_um": pixel_size_um or info.pixel_size_um,
                "detector": (
                    "trackpy.locate"
                    if classical
                    else f"single-particle radial symmetry, crop {single}"
                    if single and model is None
                    else f"single-particle localiser {model}"
                    if single
                    else str(model or default_model_dir())
                ),
                "model": card.name if card is not None else None,
                "split": split if not (classical or single) else None,
                "linking": linking.model_dump(),
                "workers": workers if scheduler is None else scheduler,
                "frames": info.n_frames,
                "seconds": seconds,
                "frames_per_s": info.n_frames / seconds if seconds > 0 else None,
                "rows": len(table),
                "tracks": int(table["particle"].nunique()) if len(table) else 0,
                "versions": package_versions(("numpy", "trackpy", "keras", "tensorflow", "dask")),
            }
            try:
                write_sidecar(out.with_suffix(".json"), record)
            except OSError as exc:
                raise _fail(f"{out} is written, its sidecar is not: {exc}") from None
            console.print(
                f"{info.path}: {info.n_frames} frames, {len(table)} detections, "
                f"{record['tracks']} tracks in {seconds:.1f} s "
                f"({record['frames_per_s']:.1f} frames/s) → {out}",
                highlight=False,
            )
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()


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
        raise _fail(str(exc)) from None
    for p in written:
        print(p)
