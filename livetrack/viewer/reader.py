"""A ``livetrack process`` table as napari layers: Tracks, Points, and the movie.

napari calls :func:`napari_get_reader` with a path; for a table with the columns
``process`` writes (``frame``, ``particle``, ``x``, ``y``) it returns
:func:`read_tracks`, which gives napari's layer data: the trajectories as a Tracks
layer (ids and frames exactly the table's), every detection as a Points layer whose
features are the table's per-particle columns (photons, radius, refractive index,
…), and, when the JSON sidecar beside the table names a movie that is still there,
that movie underneath, read frame by frame as napari asks for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from livetrack.offline.tables import TABLE_SUFFIXES, read_table

LayerData = tuple[Any, dict[str, Any], str]
REQUIRED = ("frame", "particle", "x", "y")
#: frames of trajectory drawn behind each particle, at first (napari's slider changes it)
TAIL_FRAMES = 30
#: columns that are coordinates or bookkeeping, not a particle's features
_NOT_FEATURES = {"frame", "particle", "x", "y", "x_um", "y_um", "t_s"}


def napari_get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """The reader for a ``process`` table (None for anything else: napari tries others)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.suffix.lower() not in TABLE_SUFFIXES or not p.is_file():
        return None
    try:
        columns = _columns(p)
    except (OSError, ValueError, KeyError):
        return None
    return read_tracks if all(c in columns for c in REQUIRED) else None


def _columns(path: Path) -> list[str]:
    """The table's column names, without reading its rows where the format allows."""
    if path.suffix.lower() == ".csv":
        return list(pd.read_csv(path, nrows=0).columns)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return list(read_table(path).columns)


def read_tracks(path: str) -> list[LayerData]:
    """The layers of one table (see the module docstring), bottom first."""
    p = Path(path)
    table = read_table(p)
    layers = table_layers(table, p.stem)
    movie = sidecar_movie(p)
    if movie is not None:
        layers.insert(0, (movie, {"name": f"{p.stem} movie"}, "image"))
    return layers


def table_layers(table: pd.DataFrame, name: str = "livetrack") -> list[LayerData]:
    """Tracks and Points layer data for a ``process``-shaped table."""
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"not a livetrack table: no {', '.join(missing)} column")
    rows = table.sort_values(["particle", "frame"], kind="stable").reset_index(drop=True)
    features = rows[[c for c in rows.columns if c not in _NOT_FEATURES]].copy()
    features.insert(0, "particle", rows["particle"].to_numpy())
    tracks = rows[["particle", "frame", "y", "x"]].to_numpy(np.float64)
    points = rows[["frame", "y", "x"]].to_numpy(np.float64)
    track_kwargs = {
        "name": f"{name} tracks",
        "features": features,
        "tail_length": TAIL_FRAMES,
        "tail_width": 3,
    }
    point_kwargs = {
        "name": f"{name} detections",
        "features": features,
        "size": 14,
        "face_color": "transparent",
        "border_color": "yellow",
        "border_width": 0.12,
    }
    return [(tracks, track_kwargs, "tracks"), (points, point_kwargs, "points")]


def sidecar_movie(table_path: Path) -> Any:
    """The movie the sidecar names, as a lazy (T, Y, X) array; None if gone or unreadable."""
    sidecar = table_path.with_suffix(".json")
    try:
        record = json.loads(sidecar.read_text())
        source = record["movie"]["path"]
        channel = record.get("channel")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        return LazyMovie(source, channel)
    except Exception:  # a moved or unreadable movie: the tracks still open
        return None


class LazyMovie:
    """A movie napari reads frame by frame (``shape``, ``dtype``, ``ndim``, indexing)."""

    def __init__(self, source: str, channel: int | None = None) -> None:
        from livetrack.offline.movies import MovieReader

        self._reader = MovieReader(source, channel)
        info = self._reader.info
        self.shape = (info.n_frames, *info.shape)
        self.dtype = np.dtype(info.dtype)
        self.ndim = 3
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            t = int(first) % self.shape[0]
            return np.asarray(self._reader.read(t, t + 1)[0][rest])
        if isinstance(first, slice):
            start, stop, step = first.indices(self.shape[0])
            frames = self._reader.read(start, stop)[::step]
        else:  # a list or array of frame indices
            frames = np.stack([self._reader.read(int(t), int(t) + 1)[0] for t in first])
        return np.asarray(frames[(slice(None), *rest)])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self._reader.read(0, self.shape[0])
        return np.asarray(whole, dtype=dtype)
