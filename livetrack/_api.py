"""The public verbs: locate, batch, link, process_movie, simulate, load_model.

Each returns trackpy-shaped tables (``frame``, ``x``, ``y``, ``particle``…) that go
straight to ``trackpy.msd``, ``emsd`` or ``compute_drift``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from livetrack.linking import LinkingConfig, link_table

if TYPE_CHECKING:
    from livetrack.config import SimulationConfig
    from livetrack.detection import Detector
    from livetrack.detection.lodestar import LodestarDetector
    from livetrack.simulation.scene import Movie


def load_model(
    model: str | Path | None = None, precision: str = "auto"
) -> Detector | LodestarDetector:
    """A detector from a model artifact, ready to run on frames.

    Parameters
    ----------
    model
        Artifact directory (``model.keras`` + ``card.json``); ``None`` for the
        default model shipped with livetrack.
    precision
        The network's arithmetic: ``"auto"``, ``"float32"``, ``"bfloat16"`` or ``"int8"``.

    Returns
    -------
    Detector or LodestarDetector
        Its ``card`` says what it expects and how well it did on held-out data. A
        model from ``livetrack adapt --self-supervised`` is a
        :class:`~livetrack.detection.lodestar.LodestarDetector` (four mirror reads of
        each frame, as ``process`` runs it).

    Examples
    --------
    >>> import livetrack
    >>> detector = livetrack.load_model()
    >>> detector.card.expects.modality
    'fluorescence'
    """
    return _cached_detector(None if model is None else str(model), precision)


@lru_cache(maxsize=4)
def _cached_detector(model: str | None, precision: str) -> Detector | LodestarDetector:
    from livetrack.artifact import artifact_kind
    from livetrack.detection import Detector

    if model is not None and artifact_kind(model) == "lodestar":
        from livetrack.detection.lodestar import LodestarDetector

        return LodestarDetector(model, views=4, precision=precision)
    return Detector(model, precision=precision)


def _as_detector(
    model: str | Path | Detector | LodestarDetector | None,
) -> Detector | LodestarDetector:
    from livetrack.detection import Detector
    from livetrack.detection.lodestar import LodestarDetector

    return model if isinstance(model, Detector | LodestarDetector) else load_model(model)


def _features(detections: Any, frame: int) -> pd.DataFrame:
    df = pd.DataFrame(detections.as_dict())
    df.insert(0, "frame", np.full(len(df), frame, np.int64))
    return df


def locate(
    image: NDArray[Any],
    model: str | Path | Detector | LodestarDetector | None = None,
    *,
    threshold: float | None = None,
    frame: int = 0,
) -> pd.DataFrame:
    """Find, localise and size every particle in one frame (as ``trackpy.locate``).

    Parameters
    ----------
    image
        One 2-D frame, any integer or float dtype, raw camera counts.
    model
        A :class:`Detector`, an artifact directory, or ``None`` for the shipped model
        (loaded once and kept).
    threshold
        Detection score threshold; ``None`` uses the one calibrated on the model's card.
    frame
        The value of the ``frame`` column.

    Returns
    -------
    pandas.DataFrame
        One row per particle: ``frame, x, y, score, photons, background, sigma``
        (``x`` the column, ``y`` the row, in pixels, origin at pixel (0, 0)'s centre).

    Examples
    --------
    >>> import livetrack
    >>> movie = livetrack.simulate("fluorescent_beads", frames=1, seed=3)
    >>> features = livetrack.locate(movie.frames[0])
    >>> list(features.columns[:3])
    ['frame', 'x', 'y']
    >>> abs(len(features) - len(movie.truth)) <= 3
    True
    """
    from livetrack.detection.camera import in_model_camera

    det = _as_detector(model)
    # a model adapted to dark particles inverts them; any other sees the frame as it is
    seen = in_model_camera(np.asarray(image), None, None, getattr(det, "card", None))
    detections = det.detect(seen, threshold=threshold, index=frame)
    return _features(detections, frame)


def batch(
    frames: Iterable[NDArray[Any]], model: str | Path | Detector | LodestarDetector | None = None
) -> pd.DataFrame:
    """:func:`locate` on every frame of a stack (as ``trackpy.batch``), frames numbered from 0.

    Examples
    --------
    >>> import livetrack
    >>> movie = livetrack.simulate("fluorescent_beads", frames=2, seed=3)
    >>> sorted(livetrack.batch(movie.frames)["frame"].unique().tolist())
    [0, 1]
    """
    det = _as_detector(model)
    tables = [locate(f, det, frame=k) for k, f in enumerate(frames)]
    if tables:
        return pd.concat(tables, ignore_index=True)
    return pd.DataFrame(
        columns=["frame", "x", "y", "score", "photons", "background", "sigma"]
    ).astype({"frame": np.int64})


def link(
    features: pd.DataFrame,
    search_range: float = 8.0,
    memory: int = 10,
    **options: Any,
) -> pd.DataFrame:
    """Link features into trajectories (as ``trackpy.link``): adds a ``particle`` column.

    Parameters
    ----------
    features
        A table with ``frame``, ``x`` and ``y`` (and optionally ``photons``).
    search_range
        Largest displacement between consecutive frames, in pixels.
    memory
        Frames a particle may go undetected and keep its id.
    **options
        Further :class:`~livetrack.linking.LinkingConfig` fields (``predictor``,
        ``brightness_penalty``, …).

    Examples
    --------
    >>> import pandas as pd, livetrack
    >>> f = pd.DataFrame({"frame": [0, 0, 1, 1], "x": [10.0, 50.0, 11.0, 49.0],
    ...                   "y": [10.0, 50.0, 10.5, 50.5]})
    >>> livetrack.link(f, search_range=5)["particle"].tolist()
    [0, 1, 0, 1]
    """
    cfg = LinkingConfig(search_range_px=search_range, memory=memory, **options)
    return link_table(features, cfg)


def simulate(config: str | Path | SimulationConfig, frames: int = 100, seed: int = 0) -> Movie:
    """Simulate a movie from a preset, with its exact ground truth.

    Parameters
    ----------
    config
        A shipped preset's name (``livetrack presets``), a TOML file, or a loaded config.
    frames
        Number of frames.
    seed
        The movie is a deterministic function of the seed.

    Returns
    -------
    Movie
        ``frames`` (T, H, W) camera counts and ``truth``, one row per particle per
        frame (``frame, particle, x, y, …``), in the convention of :func:`locate`.

    Examples
    --------
    >>> import livetrack
    >>> movie = livetrack.simulate("fluorescent_beads", frames=2, seed=1)
    >>> movie.frames.shape[0], sorted(movie.truth["frame"].unique().tolist())
    (2, [0, 1])
    """
    from livetrack.config import SimulationConfig, load_simulation_config
    from livetrack.simulation import simulate_movie

    cfg = config if isinstance(config, SimulationConfig) else load_simulation_config(config)
    return simulate_movie(cfg, frames, seed)


def process_movie(
    movie: str | Path,
    output: str | Path | None = None,
    *,
    model: str | Path | None = None,
    classical: bool = False,
    single: int | Literal["auto"] | None = None,
    diameter: int = 9,
    minmass: float = 100.0,
    min_score: float | None = None,
    min_photons: float | None = None,
    linking: LinkingConfig | None = None,
    invert: bool = False,
    pixel_size_um: float | None = None,
    fps: float | None = None,
    channel: int | None = None,
    camera: tuple[float | None, float | None] = (None, None),
    precision: str = "auto",
    split: bool = True,
    chunk: int = 8,
    workers: int = 1,
    force_model: bool = False,
) -> pd.DataFrame:
    """Detect and link a recorded movie, as ``livetrack process`` does.

    Parameters
    ----------
    movie
        TIFF / OME-TIFF, Zarr / OME-Zarr, or an image sequence (a quoted glob).
    output
        Table to write (``.parquet``, ``.csv``, ``.h5``) with its JSON sidecar, the
        same files the CLI writes; ``None`` writes nothing.
    model, classical, single
        The shipped detector (default), another artifact, trackpy's locate, or one particle
        per frame (``single="auto"``: the crop sized from the particle, else its side, px).
    diameter, minmass, min_score, min_photons
        trackpy's feature size (odd, px) and minimum mass, with ``classical``; a
        model's detections scoring below ``min_score``, or with fewer photons than
        ``min_photons`` (``None``: the card's floor), are dropped.
    linking
        Linker settings; an unset search range or memory is read from the movie's motion.
    invert
        Dark particles: inverted before detection (a model adapted to them needs no flag).
    pixel_size_um, fps
        When the movie's metadata does not say (``fps`` gives the ``t_s`` column).
    channel, camera
        Which channel of a multichannel or colour movie (required there); (offset ADU,
        gain ADU/e), None: read from the movie (the sidecar says how).
    precision, split, chunk, workers, force_model
        As the CLI's options.

    Returns
    -------
    pandas.DataFrame
        ``frame, particle, x, y, …`` (``x_um``, ``y_um`` too with a pixel size); the sidecar's
        record in ``.attrs["livetrack"]``.

    Examples
    --------
    >>> import tempfile, pathlib, livetrack, livetrack.config, livetrack.simulation
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> cfg = livetrack.config.load_simulation_config("fluorescent_beads")
    >>> path, _ = livetrack.simulation.write_movie(cfg, folder / "m.ome.tif", 3, seed=2)
    >>> table = livetrack.process_movie(path, folder / "m.csv")
    >>> sorted(table["frame"].unique().tolist()), (folder / "m.json").is_file()
    ([0, 1, 2], True)
    """
    from livetrack.offline import job

    options = job.ProcessOptions(
        model=str(model) if model is not None else None, linking=linking or LinkingConfig(),
        checkpoint=output is not None, classical=classical, single=single, diameter=diameter,
        minmass=minmass, min_score=min_score, min_photons=min_photons, fps=fps,
        pixel_size_um=pixel_size_um, channel=channel, offset_adu=camera[0], split=split,
        gain_adu_per_e=camera[1], invert=invert, precision=precision, chunk=chunk,
        workers=workers, force_model=force_model,
    )  # fmt: skip
    out = Path(output) if output is not None else None
    return job.process_movie(movie, out, options)
