"""Offline reprocessing: the live service's detection and linking, over recorded movies.

Frames are read in chunks (bounded memory), detected by the same detector the
service runs (``detect_many`` on each chunk, as the lossless service does on a
backlog), and linked in order by the same :class:`~livetrack.linking.OnlineLinker`.
With Dask, chunks are detected on workers (each opens the movie and loads the model
itself: no frames travel) and linked here, in order, as results come back.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from livetrack.artifact import artifact_kind
from livetrack.detection.camera import FRAMES, Camera, estimate_camera, in_model_camera
from livetrack.detection.detections import Detections
from livetrack.linking import LinkingConfig, OnlineLinker
from livetrack.linking.from_data import FRAMES as MOTION_FRAMES
from livetrack.linking.from_data import linking_from_motion, measure_motion
from livetrack.offline.checkpoint import DetectionCheckpoint
from livetrack.offline.movies import MovieInfo, MovieReader
from livetrack.runtime import quiet_tensorflow_start

Columns = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """How to build a detector anywhere (here or on a Dask worker)."""

    model: str | None = None  # artifact directory; None: the shipped default
    classical: bool = False
    # one particle per frame (a trap): its template, or the localiser ``model``; the
    # crop side (px), or "auto" (sized from the first frame)
    single_crop: int | Literal["auto"] | None = None
    diameter: int = 9
    minmass: float = 100.0
    threads: int | None = None  # TensorFlow threads per process (workers sharing cores)
    precision: str = "auto"  # the network's arithmetic (Detector)
    split: bool = True  # particles hidden in a neighbour's fit (Detector)
    invert: bool = False  # dark particles on a bright background
    min_score: float | None = None  # detections scoring less are dropped (None: none)
    min_photons: float | None = None  # fitted spots with fewer photons (None: the card's)

    def build(self) -> Any:
        """The detector."""
        if self.threads and not (self.classical or self.single_crop):
            quiet_tensorflow_start()
            import tensorflow as tf

            try:
                tf.config.threading.set_intra_op_parallelism_threads(self.threads)
                tf.config.threading.set_inter_op_parallelism_threads(self.threads)
            except RuntimeError:  # already initialised in this process
                pass
        crop = None if self.single_crop in (None, "auto") else int(self.single_crop)
        if self.model and artifact_kind(self.model) == "lodestar":
            from livetrack.detection.lodestar import LodestarDetector
            from livetrack.single.detector import SingleParticleDetector

            # offline, each frame is read in its four mirror images: 3–4× the time,
            # a fraction of the error (the network is only nearly equivariant)
            lodestar = LodestarDetector(
                self.model, single=bool(self.single_crop), views=4, precision=self.precision
            )
            # one particle: the network finds it, its own template fits it
            return SingleParticleDetector(crop, finder=lodestar) if self.single_crop else lodestar
        if self.single_crop:
            from livetrack.single.detector import SingleParticleDetector, StrongestDetection

            if self.model and artifact_kind(self.model) == "detector":
                from livetrack.detection.detector import Detector

                # the detector finds the particle (its best detection); its template fits it
                found = StrongestDetection(Detector(self.model, precision=self.precision))
                return SingleParticleDetector(crop, finder=found)
            return SingleParticleDetector(crop, self.model)
        if self.classical:
            from livetrack.detection.classical import TrackpyDetector

            return TrackpyDetector(self.diameter, self.minmass, self.invert)
        from livetrack.detection.detector import Detector

        return Detector(
            self.model, precision=self.precision, split=self.split, min_photons=self.min_photons
        )


_WORKER_DETECTORS: dict[DetectorSpec, Any] = {}


def _columns(det: Detections, min_score: float | None = None) -> Columns:
    if min_score is not None:
        det = det.take(det.score >= min_score)
    return {k: np.asarray(v, np.float64) for k, v in det.as_dict().items()}


def _worker_detector(spec: DetectorSpec) -> Any:
    det = _WORKER_DETECTORS.get(spec)
    if det is None:
        det = _WORKER_DETECTORS[spec] = spec.build()
    return det


def detect_chunk(
    source: str,
    spec: DetectorSpec,
    start: int,
    stop: int,
    channel: int | None = None,
    camera: Camera | None = None,
) -> list[Columns]:
    """Detect frames ``start:stop`` of a movie (runs on a Dask worker; model cached there)."""
    det = _worker_detector(spec)
    reader = MovieReader(source, channel)
    try:
        _prepare(det, reader)
        frames = reader.read(start, stop)
        dets = _detect_frames(det, frames, start, reader, camera)
        return [_columns(d, spec.min_score) for d in dets]
    finally:
        reader.close()


def movie_camera(
    reader: MovieReader,
    detector: Any,
    offset_adu: float | None,
    gain_adu_per_e: float | None,
    invert: bool = False,
) -> Camera | None:
    """The movie's camera, read from its first frames (None: a detector without a card).

    ``invert``: the particles are dark; they are masked where the inverted frame shows
    them (so too where the model takes dark particles: its card's ``expects.inverts``).
    """
    if not hasattr(detector, "peaks"):
        return None  # a classical or single-particle detector works in the frame's units
    invert = invert or detector.card.expects.inverts
    frames = reader.read(0, FRAMES)
    spots = [detector.peaks(np.float32(f.max()) - f if invert else f) for f in frames]
    cam = estimate_camera(frames, spots, detector.card, offset_adu, gain_adu_per_e)
    return replace(cam, invert=invert)


def worker_camera(
    source: str, spec: DetectorSpec, channel: int | None, offset: float | None, gain: float | None
) -> Camera | None:
    """:func:`movie_camera` on a Dask worker."""
    reader = MovieReader(source, channel)
    try:
        return movie_camera(reader, _worker_detector(spec), offset, gain, spec.invert)
    finally:
        reader.close()


def warm_worker(spec: DetectorSpec) -> bool:
    """Build (and cache) the detector on a worker before any frame is timed."""
    if spec not in _WORKER_DETECTORS:
        _WORKER_DETECTORS[spec] = spec.build()
    return True


def _prepare(detector: Any, reader: MovieReader) -> None:
    """A detector that learns the movie's particle first (single-particle) reads its start."""
    prepare = getattr(detector, "prepare", None)
    if prepare is not None:
        prepare(reader.read(0, detector.prepare_frames))


def _detect_frames(
    detector: Any, frames: np.ndarray, start: int, reader: MovieReader, camera: Camera | None
) -> list[Any]:
    """Frames ``start, start+1, …`` with their indices, as the live service sees them."""

    def seen(f: np.ndarray) -> np.ndarray:  # in the model's camera
        if camera is None:
            return f
        card = getattr(detector, "card", None)
        return in_model_camera(f, camera.offset_adu, camera.gain_adu_per_e, card, camera.invert)

    if not getattr(detector, "indexed", False):
        many = getattr(detector, "detect_many", None)
        return list(many(list(frames))) if many else [detector.detect(f) for f in frames]
    first = detector.needs_sigma_from(start)
    if first is not None:  # the PSF width of this block comes from its first frame
        detector.detect(seen(reader.read(first, first + 1)[0]), index=first)
    indices = list(range(start, start + len(frames)))
    return list(detector.detect_many([seen(f) for f in frames], indices=indices))


def _local_chunks(
    reader: MovieReader, detector: Any, chunk: int, starts: list[int], camera: Camera | None,
    min_score: float | None,
) -> Iterator[tuple[int, list[Columns]]]:  # fmt: skip
    for start in starts:
        frames = reader.read(start, start + chunk)
        dets = _detect_frames(detector, frames, start, reader, camera)
        yield start, [_columns(d, min_score) for d in dets]


def _dask_chunks(
    client: Any,
    source: str,
    spec: DetectorSpec,
    starts: list[int],
    chunk: int,
    ahead: int,
    channel: int | None,
    camera: Camera | None,
) -> Iterator[tuple[int, list[Columns]]]:
    """Submit chunks, at most ``ahead`` in flight (bounded memory), yield them in order."""
    futures: dict[int, Any] = {}
    nxt = 0
    for start in starts:
        while nxt < len(starts) and len(futures) < ahead:
            s = starts[nxt]
            futures[s] = client.submit(
                detect_chunk, source, spec, s, s + chunk, channel, camera, pure=False
            )
            nxt += 1
        yield start, futures.pop(start).result()


def _kept_or_fresh(
    starts: list[int],
    fresh: Iterator[tuple[int, list[Columns]]],
    checkpoint: DetectionCheckpoint | None,
) -> Iterator[tuple[int, list[Columns]]]:
    """Chunks in order: from the checkpoint when kept, else detected now (and kept)."""
    for start in starts:
        if checkpoint is not None and checkpoint.has(start):
            yield start, checkpoint.load(start)
            continue
        got, cols = next(fresh)
        assert got == start, (got, start)
        if checkpoint is not None:
            try:
                checkpoint.save(start, cols)
            except OSError as exc:
                raise OSError(
                    f"cannot write to the checkpoint {checkpoint.directory}: "
                    f"{exc.strerror or exc}; the detections of {checkpoint.frames_kept} "
                    "frames are kept there: make room and rerun the same command to resume"
                ) from exc
        yield start, cols


def _linking_from_data(
    chunks: Iterator[tuple[int, list[Columns]]], linking: LinkingConfig, shape: tuple[int, int]
) -> tuple[Iterator[tuple[int, list[Columns]]], LinkingConfig, dict[str, Any]]:
    """Read the first frames' detections for the search range and memory, then replay them."""
    head: list[tuple[int, list[Columns]]] = []
    seen = 0
    for item in chunks:
        head.append(item)
        seen += len(item[1])
        if seen >= MOTION_FRAMES:
            break
    frames = [(c["x"], c["y"]) for _, cols in head for c in cols][:MOTION_FRAMES]
    config, record = linking_from_motion(linking, measure_motion(frames, shape))
    return itertools.chain(head, chunks), config, record


def link_columns(
    chunks: Iterator[tuple[int, list[Columns]]],
    linking: LinkingConfig,
    pixel_size_um: float | None,
    on_frames: Callable[[int], None] | None = None,
    frame_interval_s: float | None = None,
    shape: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Link per-frame detections in frame order into one trackpy-compatible table.

    With a pixel size the table has ``x_um``, ``y_um``; with a frame interval ``t_s``.
    With the frames' ``shape``, the search range and memory not set in ``linking`` are
    read from the first frames' detections (:mod:`livetrack.linking.from_data`); the
    table's ``attrs["linking"]`` says what was used and why.
    """
    record: dict[str, Any] = {}
    if shape is not None:
        chunks, linking, record = _linking_from_data(chunks, linking, shape)
    linker = OnlineLinker(linking)
    parts: list[pd.DataFrame] = []
    for start, cols_list in chunks:
        for i, cols in enumerate(cols_list):
            frame = start + i
            step = linker.link(frame, cols["x"], cols["y"], cols.get("photons"))
            df = pd.DataFrame({"frame": np.full(len(cols["x"]), frame, np.int64)})
            df["particle"] = step.particle
            for k, v in cols.items():
                df[k] = v
            parts.append(df)
        if on_frames is not None:
            on_frames(len(cols_list))
    table = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({"frame": [], "particle": [], "x": [], "y": []})
    )
    if pixel_size_um:
        table["x_um"] = table["x"] * pixel_size_um
        table["y_um"] = table["y"] * pixel_size_um
    if frame_interval_s:
        table["t_s"] = table["frame"] * frame_interval_s
    table.attrs["linking"] = {**linking.model_dump(), **record}
    return table


def track_movie(
    source: str | Path,
    spec: DetectorSpec,
    linking: LinkingConfig | None = None,
    chunk: int = 8,
    client: Any = None,
    detector: Any = None,
    on_frames: Callable[[int], None] | None = None,
    pixel_size_um: float | None = None,
    checkpoint: Path | None = None,
    channel: int | None = None,
    frame_interval_s: float | None = None,
    camera: tuple[float | None, float | None] = (None, None),
    linking_from_data: bool = True,
) -> tuple[pd.DataFrame, MovieInfo, float]:
    """Detect and link one movie. Returns (table, movie info, seconds).

    ``client``: a ``dask.distributed.Client`` to detect on its workers; otherwise
    ``detector`` (or one built from ``spec``) runs here. ``pixel_size_um`` and
    ``frame_interval_s`` override the movie's metadata; ``channel`` picks one of a
    multichannel movie's channels. ``camera``: (offset ADU, gain ADU/e) to use; what
    is None is read from the movie (:mod:`livetrack.detection.camera`), and the table's
    ``attrs["camera"]`` says what was used. ``checkpoint``: a folder where each chunk's
    detections are kept as they come, and read back by a rerun (see
    :class:`~livetrack.offline.checkpoint.DetectionCheckpoint`); the caller
    removes it once the table is safely written. ``linking_from_data``: the search
    range and memory that ``linking`` does not set are read from the first frames'
    detections (``attrs["linking"]`` says what was used).
    """
    reader = MovieReader(source, channel)
    info = reader.info
    px = pixel_size_um or info.pixel_size_um
    dt = frame_interval_s or info.frame_interval_s
    kept = None
    if checkpoint is not None:
        identity = {
            "movie": info.path,
            "movie_mtime_ns": Path(info.path).stat().st_mtime_ns
            if Path(info.path).exists()
            else None,
            "frames": info.n_frames,
            "shape": info.shape,
            "dtype": info.dtype,
            "detector": {k: v for k, v in asdict(spec).items() if k != "threads"},
            "chunk": chunk,
            "channel": channel,
            "camera": list(camera),
        }
        try:
            kept = DetectionCheckpoint(checkpoint, identity)
        except OSError as exc:
            reader.close()
            raise OSError(
                f"cannot make the checkpoint {checkpoint}: {exc.strerror or exc}"
            ) from exc
    starts = list(range(0, info.n_frames, chunk))
    todo = [s for s in starts if kept is None or not kept.has(s)]
    if client is not None:
        client.run(warm_worker, spec)  # model loading is start-up, not throughput
    t0 = time.perf_counter()
    try:
        cam = None
        if client is not None:
            n = max(1, len(client.scheduler_info().get("workers", {})))
            if todo:
                cam = client.submit(worker_camera, str(source), spec, channel, *camera).result()
            fresh = _dask_chunks(client, str(source), spec, todo, chunk, 2 * n, channel, cam)
        else:
            det = (detector or spec.build()) if todo else None  # all kept: no model needed
            cam = movie_camera(reader, det, *camera, spec.invert) if todo else None
            if todo:
                _prepare(det, reader)
            fresh = _local_chunks(reader, det, chunk, todo, cam, spec.min_score)
        chunks = _kept_or_fresh(starts, fresh, kept)
        shape = info.shape if linking_from_data else None
        table = link_columns(chunks, linking or LinkingConfig(), px, on_frames, dt, shape)
        table.attrs["camera"] = cam.as_record() if cam is not None else None
    finally:
        reader.close()
    return table, info, time.perf_counter() - t0
