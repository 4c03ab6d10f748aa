"""Write simulated movies: OME-TIFF with physical metadata, truth table beside it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from numpy.typing import NDArray

from livetrack.config import SimulationConfig
from livetrack.simulation.scene import Scene


def truth_path_for(movie_path: str | Path) -> Path:
    """``movie.ome.tif`` → ``movie.truth.csv`` (the ground truth beside the movie)."""
    p = Path(movie_path)
    name = p.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(name + ".truth.csv")


def write_movie(
    config: SimulationConfig,
    path: str | Path,
    n_frames: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[Path, Path]:
    """Simulate and stream ``n_frames`` frames to an OME-TIFF, and the truth to CSV.

    Frames are written one at a time, so memory does not grow with the movie length.
    The OME metadata carries the pixel size (µm), the frame interval and exposure;
    the TIFF description carries the preset and seed.

    Returns
    -------
    tuple of Path
        The movie and the truth table.
    """
    if n_frames < 1:
        raise ValueError(f"--frames must be at least 1, got {n_frames}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_out = truth_path_for(out)
    scene = Scene(config, seed)
    cam = config.camera
    px = config.pixel_size_um
    metadata = {
        "axes": "TYX",
        "PhysicalSizeX": px,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": px,
        "PhysicalSizeYUnit": "µm",
        "TimeIncrement": cam.frame_interval_ms,
        "TimeIncrementUnit": "ms",
        "Description": json.dumps(
            {
                "livetrack_preset": config.preset.name,
                "seed": seed,
                "modality": config.preset.modality,
            }
        ),
    }
    tables: list[pd.DataFrame] = []
    with tifffile.TiffWriter(
        out, ome=True, bigtiff=n_frames * cam.width * cam.height * 2 > 2**31
    ) as tif:
        frames = scene.frames(n_frames)

        def stream() -> Iterator[NDArray[np.unsignedinteger]]:
            for i, shot in enumerate(frames):
                tables.append(shot.truth)
                if progress is not None:
                    progress(i + 1)
                yield shot.frame

        dtype = np.dtype(np.uint16) if cam.bit_depth <= 16 else np.dtype(np.uint32)
        tif.write(stream(), shape=(n_frames, cam.height, cam.width), dtype=dtype, metadata=metadata)
    truth = pd.concat(tables, ignore_index=True)
    truth.to_csv(truth_out, index=False, float_format="%.6g")
    return out, truth_out
