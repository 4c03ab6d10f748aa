"""One ``process`` run: check every input first, then detect, link and write each movie.

The CLI's ``livetrack process`` and the API's :func:`livetrack.process_movie` both run
:func:`process_movies`, so a Python user gets the same table and JSON sidecar.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from livetrack import __version__
from livetrack.artifact import (
    ArtifactError,
    ModelCard,
    check_fits,
    default_model_dir,
    no_photon_floor,
    read_card,
)
from livetrack.detection.appearance import polarity_warning, width_warning
from livetrack.detection.precision import PRECISIONS
from livetrack.linking import LinkingConfig
from livetrack.offline.checkpoint import frames_kept
from livetrack.offline.movies import VIDEO_SUFFIXES, MovieError, MovieInfo, MovieReader
from livetrack.offline.process import DetectorSpec, track_movie
from livetrack.offline.tables import TABLE_SUFFIXES, write_sidecar, write_table
from livetrack.runtime import package_versions

TableFormat = Literal["parquet", "csv", "h5"]


class ProcessError(ValueError):
    """An input, option or output that ``process`` cannot use; the message says why."""


@dataclass(frozen=True)
class ProcessOptions:
    """What to run on each movie and how to write it (the options of ``livetrack process``)."""

    model: str | None = None  # artifact directory; None: the shipped default
    classical: bool = False  # trackpy's locate instead of a model
    # one particle per frame: the crop side (px), or "auto" (sized from the first frame)
    single: int | Literal["auto"] | None = None
    diameter: int = 9  # classical: feature diameter (odd, px)
    minmass: float = 100.0  # classical: minimum integrated mass
    fmt: TableFormat = "parquet"  # when the output is a folder
    workers: int = 1  # local Dask worker processes (1: no Dask)
    scheduler: str | None = None  # address of a running Dask scheduler
    chunk: int = 8  # frames per unit of work
    pixel_size_um: float | None = None  # when the movie does not say
    linking: LinkingConfig = field(default_factory=LinkingConfig)
    # the search range and memory ``linking`` leaves unset, from the movie's motion
    linking_from_data: bool = True
    precision: str = "auto"
    split: bool = True
    checkpoint: bool = True  # keep each chunk's detections in OUTPUT.partial.d
    force_model: bool = False
    fps: float | None = None  # frames per second, when the movie does not say
    channel: int | None = None  # of a multichannel or colour movie
    offset_adu: float | None = None  # the camera's dark level (None: read from the movie)
    gain_adu_per_e: float | None = None  # its gain (None: read from the movie, else the card's)
    invert: bool = False  # dark particles on a bright background: inverted before detection
    min_score: float | None = None  # a model's detections scoring less are dropped
    min_photons: float | None = None  # its fitted spots with fewer photons (None: the card's)

    def __post_init__(self) -> None:
        if f".{self.fmt}" not in TABLE_SUFFIXES:
            raise ProcessError(f"format {self.fmt!r}: expected parquet, csv or h5")
        if self.precision not in PRECISIONS:
            raise ProcessError(f"precision {self.precision!r}: expected one of {PRECISIONS}")
        if self.chunk < 1:
            raise ProcessError(f"chunk {self.chunk}: must be at least 1")
        if self.fps is not None and not self.fps > 0:
            raise ProcessError(f"fps {self.fps}: must be positive")
        if self.gain_adu_per_e is not None and not self.gain_adu_per_e > 0:
            raise ProcessError(f"gain {self.gain_adu_per_e} ADU/e: must be positive")
        for name, value in (("--min-photons", self.min_photons), ("--min-score", self.min_score)):
            if value is not None and (self.classical or self.single):
                raise ProcessError(
                    f"{name} is for a model's detections: --classical has --minmass, "
                    "and --single keeps one particle a frame"
                )
        if self.pixel_size_um is not None and not self.pixel_size_um > 0:
            raise ProcessError(f"pixel size {self.pixel_size_um} µm: must be positive")

    def spec(self) -> DetectorSpec:
        """How to build the detector, here or on a Dask worker."""
        local_workers = self.scheduler is None and self.workers > 1
        threads = max(1, (os.cpu_count() or 1) // self.workers) if local_workers else None
        return DetectorSpec(
            self.model,
            classical=self.classical,
            single_crop=self.single,
            diameter=self.diameter,
            minmass=self.minmass,
            threads=threads,
            precision=self.precision,
            split=self.split,
            invert=self.invert,
            min_score=self.min_score,
            min_photons=self.min_photons,
        )

    def detector_name(self, kind: str | None = None) -> str:
        """What found the particles, as the sidecar states it (``kind``: the model's)."""
        if self.classical:
            return "trackpy.locate"
        if self.single and self.model is None:
            return f"single-particle radial symmetry + template, crop {self.single}"
        if self.single and kind == "localiser":
            return f"single-particle localiser {self.model}"
        if self.single:  # a detector or LodeSTAR finds it, its own template fits it
            return f"single-particle {self.model} + template"
        return str(self.model or default_model_dir())


@dataclass(frozen=True)
class MovieResult:
    """One movie's outcome: its table, where it was written, and the sidecar record."""

    movie: str
    table: pd.DataFrame
    output: Path
    record: dict[str, Any]


Note = Callable[[str], None]
OnMovie = Callable[[MovieInfo], Callable[[int], None] | None]


def output_for(movie: str, output: Path, fmt: str, several: bool) -> Path:
    """The table path of ``movie``: ``output`` itself, or a file named after it in that folder."""
    if not several and output.suffix.lower() in TABLE_SUFFIXES:
        return output
    stem = Path(movie.replace("*", "all")).name
    for suffix in (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".zarr", ".png", *VIDEO_SUFFIXES):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return output / f"{stem}.{fmt}"


def _card(options: ProcessOptions) -> ModelCard | None:
    """The model's card, checked to be the kind this run needs (None: no model)."""
    if options.classical or (options.single and options.model is None):
        return None
    try:
        card = read_card(options.model or default_model_dir())
    except ArtifactError as exc:
        raise ProcessError(str(exc)) from None
    # one particle: a localiser centres it; a detector, or LodeSTAR, finds it for its template
    wants = ("localiser", "detector") if options.single else ("detector",)
    if card.outputs.kind not in (*wants, "lodestar"):
        hint = (
            " (for one particle: --single without --model fits the particle's own "
            "template, or a livetrack adapt --self-supervised model)"
            if options.single
            else " (a localiser needs --single)"
        )
        raise ProcessError(
            f"--model {options.model}: a {card.outputs.kind} model, not a "
            f"{' or a '.join(wants)}{hint}"
        )
    if options.min_photons is not None and card.outputs.kind == "lodestar":
        raise ProcessError(no_photon_floor(str(options.model)))
    return card


def check_movies(
    movies: Sequence[str], card: ModelCard | None, options: ProcessOptions, note: Note
) -> list[MovieInfo]:
    """Open every movie and check it against the model before any time is spent."""
    infos = []
    for m in movies:
        try:
            reader = MovieReader(m, options.channel)
        except MovieError as exc:
            raise ProcessError(str(exc)) from None
        infos.append(reader.info)
        try:
            first = reader.read(0, 1)[0] if card is not None else None
        finally:
            reader.close()
        px = options.pixel_size_um or reader.info.pixel_size_um
        # a model learnt from a movie without a pixel size: its card's is no fact
        sized = card is not None and not (
            card.outputs.kind == "lodestar"
            and card.metrics.get("self_supervised", {}).get("pixel_size_um") is None
        )
        if px is None:
            said = card.expects.pixel_size_um if card is not None and sized else None
            assumed = f"; the model's card says {said} µm" if said else ""
            note(f"{m}: no pixel size in the file and none given (--pixel-size-um): the "
                 f"table stays in pixels, unchecked against the model{assumed}")  # fmt: skip
        if card is None or first is None:
            continue
        if card.outputs.kind == "lodestar":  # it learnt such particles, whatever their look
            if not sized:
                continue
        elif card.outputs.kind == "localiser":
            from livetrack.single.localiser import size_problem

            if problem := size_problem(card, first):
                raise ProcessError(f"{m}: {problem}")
        else:  # a detector: the particles' polarity and width against its card
            for warning in (polarity_warning(first, card, options.invert),
                            width_warning(first, card)):  # fmt: skip
                if warning:
                    note(f"warning: {m}: {warning}")
        try:
            problems = check_fits(card, pixel_size_um=px, override=options.force_model)
        except ArtifactError as exc:
            raise ProcessError(f"{m}: {exc}") from None
        for p in problems:
            note(f"warning: {m}: {p} (--force-model)")
    return infos


@contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client for ``workers`` local processes or a running scheduler (None: no Dask)."""
    if scheduler is None and workers <= 1:
        yield None
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ProcessError(
            "--workers/--scheduler need Dask: pip install 'livetrack[dask]'"
        ) from None
    if scheduler is not None:
        client = Client(scheduler)  # type: ignore[no-untyped-call]
    else:
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers, threads_per_worker=1, processes=True
        )
        client = Client(cluster)  # type: ignore[no-untyped-call]
    try:
        yield client
    finally:
        own = getattr(client, "cluster", None)
        client.close()  # type: ignore[no-untyped-call]
        if own is not None:
            own.close()


def sidecar_record(
    info: MovieInfo,
    table: pd.DataFrame,
    seconds: float,
    options: ProcessOptions,
    card: ModelCard | None,
) -> dict[str, Any]:
    """The JSON record written next to a table: inputs, model, settings, timing, versions."""
    floor, model_fits = options.min_photons, not (options.classical or options.single)
    if floor is None and model_fits and card is not None and card.outputs.kind == "detector":
        floor = card.outputs.min_photons
    return {
        "livetrack": __version__,
        "movie": asdict(info),
        "pixel_size_um": options.pixel_size_um or info.pixel_size_um,
        "pixel_size_from": "option"
        if options.pixel_size_um
        else "file"
        if info.pixel_size_um
        else None,
        "frame_interval_s": 1.0 / options.fps if options.fps else info.frame_interval_s,
        "frame_interval_from": "option"
        if options.fps
        else "file"
        if info.frame_interval_s
        else None,
        "channel": options.channel,
        "invert": options.invert,
        "min_score": options.min_score,
        "min_photons": floor,
        "camera": table.attrs.get("camera"),
        "detector": options.detector_name(card.outputs.kind if card is not None else None),
        "model": card.name if card is not None else None,
        "split": options.split if not (options.classical or options.single) else None,
        "linking": table.attrs.get("linking", options.linking.model_dump()),
        "workers": options.workers if options.scheduler is None else options.scheduler,
        "frames": info.n_frames,
        "seconds": seconds,
        "frames_per_s": info.n_frames / seconds if seconds > 0 else None,
        "rows": len(table),
        "tracks": int(table["particle"].nunique()) if len(table) else 0,
        "versions": package_versions(("numpy", "trackpy", "keras", "tensorflow", "dask")),
    }


def process_movies(
    movies: Sequence[str],
    output: Path,
    options: ProcessOptions,
    on_movie: OnMovie | None = None,
    note: Note | None = None,
) -> list[MovieResult]:
    """Detect and link each movie; write its table and JSON sidecar.

    Every movie is opened and checked against the model first. ``on_movie`` is
    called as each movie starts and may return a callback that receives the number
    of frames done as they come (a progress bar); ``note`` receives warnings and
    resumption notices. Raises :class:`ProcessError` with a message for the user.
    """
    say = note or (lambda _m: None)
    several = len(movies) > 1
    if several and output.suffix.lower() in TABLE_SUFFIXES:
        raise ProcessError(f"{len(movies)} movies: the output must be a folder, not {output}")
    card = _card(options)
    infos = check_movies(movies, card, options, say)
    spec = options.spec()
    results = []
    with dask_client(options.workers, options.scheduler) as client:
        try:
            detector = None if client is not None else spec.build()
        except ValueError as exc:  # a crop or model the detector cannot take
            raise ProcessError(str(exc)) from None
        for m, info in zip(movies, infos, strict=True):
            out = output_for(m, output, options.fmt, several)
            kept = out.with_name(out.name + ".partial.d") if options.checkpoint else None
            if resumed := frames_kept(kept):
                say(f"{m}: resuming, {resumed} frames kept in {kept}")
            on_frames = on_movie(info) if on_movie is not None else None
            try:
                table, info, seconds = track_movie(
                    m,
                    spec,
                    options.linking,
                    options.chunk,
                    client=client,
                    detector=detector,
                    on_frames=on_frames,
                    pixel_size_um=options.pixel_size_um,
                    checkpoint=kept,
                    channel=options.channel,
                    frame_interval_s=1.0 / options.fps if options.fps else None,
                    camera=(options.offset_adu, options.gain_adu_per_e),
                    linking_from_data=options.linking_from_data,
                )
            except OSError as exc:
                raise ProcessError(f"{m}: {exc}") from None
            except ValueError as exc:  # a frame the detector refuses (a localiser's size)
                raise ProcessError(f"{m}: {exc}") from None
            record = sidecar_record(info, table, seconds, options, card)
            _write(table, out, record, kept)
            table.attrs["livetrack"] = record
            results.append(MovieResult(m, table, out, record))
    return results


def _write(table: pd.DataFrame, out: Path, record: dict[str, Any], kept: Path | None) -> None:
    """The table, then its sidecar; the checkpoint goes only once the table is safe."""
    try:
        write_table(table, out)
    except (OSError, ValueError) as exc:
        where = f"; the detections are kept in {kept}: rerun to resume" if kept else ""
        raise ProcessError(f"{exc}{where}") from None
    if kept is not None:
        import shutil

        shutil.rmtree(kept, ignore_errors=True)
    try:
        write_sidecar(out.with_suffix(".json"), record)
    except OSError as exc:
        raise ProcessError(f"{out} is written, its sidecar is not: {exc}") from None


def process_movie(
    movie: str | Path,
    output: Path | None = None,
    options: ProcessOptions | None = None,
    note: Note | None = None,
) -> pd.DataFrame:
    """Detect and link one movie; with ``output``, write its table and sidecar as the CLI does.

    The sidecar's record is in ``table.attrs["livetrack"]`` either way.
    """
    opts = options or ProcessOptions()
    if output is not None:
        (result,) = process_movies([str(movie)], output, opts, note=note)
        return result.table
    card = _card(opts)
    check_movies([str(movie)], card, opts, note or (lambda _m: None))
    with dask_client(opts.workers, opts.scheduler) as client:
        table, info, seconds = track_movie(
            movie, opts.spec(), opts.linking, opts.chunk, client=client,
            pixel_size_um=opts.pixel_size_um, channel=opts.channel,
            frame_interval_s=1.0 / opts.fps if opts.fps else None,
            camera=(opts.offset_adu, opts.gain_adu_per_e),
            linking_from_data=opts.linking_from_data,
        )  # fmt: skip
    table.attrs["livetrack"] = sidecar_record(info, table, seconds, opts, card)
    return table
