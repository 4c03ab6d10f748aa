"""Per-chunk detections kept on disk, so that a failed or interrupted ``process`` resumes.

Detection is the expensive part of reprocessing (linking a whole movie takes
seconds); a run that dies at 90 % — a full disk, a killed job, a lost Dask worker —
should not have to detect the first 90 % again. Each chunk's detections are written
as one Parquet file, atomically (``.tmp`` then rename), as soon as they exist. A
rerun with the same movie, detector and chunk size reads them back instead of
detecting again; anything else (another movie, model or chunk size) starts afresh.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

Columns = dict[str, np.ndarray]
_MANIFEST = "manifest.json"
log = logging.getLogger(__name__)


def frames_kept(directory: Path | None) -> int:
    """Frames whose detections a previous run left in ``directory`` (0 when none)."""
    if directory is None or not directory.is_dir():
        return 0
    return sum(int(p.stem.split("-")[2]) for p in directory.glob("chunk-*.parquet"))


class DetectionCheckpoint:
    """A folder of per-chunk detections for one movie.

    Parameters
    ----------
    directory
        Where the chunks live (created when missing).
    identity
        What the detections depend on (movie, its shape, the detector, the chunk
        size), JSON-serialisable. Chunks written under another identity are removed.
    """

    def __init__(self, directory: Path, identity: dict[str, Any]) -> None:
        self.directory = directory
        self._identity = json.loads(json.dumps(identity, default=str))
        manifest = directory / _MANIFEST
        if manifest.is_file():
            try:
                kept = json.loads(manifest.read_text())
            except (OSError, ValueError):
                kept = None
            if kept != self._identity:
                log.warning("%s: checkpoint is for another run; starting afresh", directory)
                shutil.rmtree(directory)
        self._done: dict[int, Path] = {}
        if directory.is_dir():
            for p in directory.glob("chunk-*.parquet"):
                self._done[int(p.stem.split("-")[1])] = p
        else:
            directory.mkdir(parents=True)
            manifest.write_text(json.dumps(self._identity, indent=1))

    @property
    def frames_kept(self) -> int:
        """Frames whose detections are on disk."""
        return frames_kept(self.directory) if self._done else 0

    def has(self, start: int) -> bool:
        """Whether the chunk starting at frame ``start`` is on disk."""
        return start in self._done

    def save(self, start: int, cols_list: list[Columns]) -> None:
        """Write one chunk (a list of per-frame column dicts) atomically."""
        keys = list(cols_list[0]) if cols_list else []
        frame = np.concatenate(
            [np.full(len(c[keys[0]]) if keys else 0, i, np.int32) for i, c in enumerate(cols_list)]
            or [np.zeros(0, np.int32)]
        )
        df = pd.DataFrame({"_frame": frame})
        for k in keys:
            df[k] = np.concatenate([np.asarray(c[k], np.float64) for c in cols_list])
        path = self.directory / f"chunk-{start:09d}-{len(cols_list):06d}.parquet"
        tmp = path.with_suffix(".tmp")
        try:
            df.to_parquet(tmp, index=False)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        self._done[start] = path

    def load(self, start: int) -> list[Columns]:
        """Read one chunk back, one column dict per frame (frames without detections too)."""
        path = self._done[start]
        n = int(path.stem.split("-")[2])
        df = pd.read_parquet(path)
        frame = df.pop("_frame").to_numpy()
        return [
            {k: df[k].to_numpy()[frame == i].astype(np.float64) for k in df.columns}
            for i in range(n)
        ]

    def remove(self) -> None:
        """Delete the folder (the result is safely written elsewhere)."""
        shutil.rmtree(self.directory, ignore_errors=True)
