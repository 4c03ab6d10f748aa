"""The ``adapt`` bench's movie of beads at many focal planes, against particles marked by eye.

DeepTrack's *particles at different focal planes* shows beads above and below focus:
bright and dark cores, sharp rings and faint blurs, ~11 a frame. It is shipped as
MP4 only, read as ``process`` reads a video (OpenCV; without it the row is left out).
No tracker gives a reference here (trackpy's ``locate`` at diameter 15 picks ring
segments, 37 a frame), so the reference is by eye, in ``marked_focal_planes.csv``:
in frames 0, 25 and 49, the particles clearly seen (``clear``, 32) and faint blurs
that may be particles far from focus (``faint``, 18: neither a miss nor a false
detection). Found: a clear particle with a detection within :data:`FOUND_PX` (the
marks are good to ~2 px); unmarked: a detection farther than :data:`UNMARKED_PX` from
every mark.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: the movie, inside the folder given as ``bench --real-data``
MOVIE = "deeptrack_videos/particles_different_focal_planes.mp4"
MARKS = Path(__file__).with_name("marked_focal_planes.csv")
FOUND_PX = 4.0
UNMARKED_PX = 6.0


def against_marks(table: pd.DataFrame, marks: pd.DataFrame) -> dict[str, int]:
    """Clear marks found, and detections near no mark, in the marked frames."""
    found = clear = unmarked = detections = 0
    for frame, m in marks.groupby("frame"):
        det = table.loc[table["frame"] == frame, ["x", "y"]].to_numpy(float)
        every = m[["x", "y"]].to_numpy(float)
        is_clear = (m["marked"] == "clear").to_numpy()
        clear += int(is_clear.sum())
        detections += len(det)
        if len(det) == 0:
            continue
        d = np.hypot(*(det[:, None, :] - every[None, :, :]).transpose(2, 0, 1))
        found += int((d[:, is_clear].min(axis=0) <= FOUND_PX).sum())
        unmarked += int((d.min(axis=1) > UNMARKED_PX).sum())
    return {"marked_clear": clear, "marked_found": found, "unmarked_detections": unmarked,
            "detections_in_marked_frames": detections}  # fmt: skip


def focal_planes_row(real_data: Path, tmp: Path) -> dict[str, Any] | None:
    """The movie through ``adapt`` and ``process`` as a user runs them, against the marks."""
    from livetrack.adapt import adapt_movie
    from livetrack.offline.process import DetectorSpec, track_movie

    source = real_data / MOVIE
    if not source.is_file() or importlib.util.find_spec("cv2") is None:
        return None
    t0 = time.perf_counter()
    result = adapt_movie(source, tmp / "rings-focal-planes", verbose=0)
    seconds = time.perf_counter() - t0
    ours, info, _ = track_movie(source, DetectorSpec(model=str(result.model)))
    m = result.measured
    return {
        "movie": "particles_different_focal_planes", "adapt_seconds": seconds,
        "fit": f"{getattr(m, 'radius_um', 0):.2f} µm, n {getattr(m, 'refractive_index', 0):.3f}, "
        f"{getattr(m, 'z_um', 0):.1f} µm",
        "agreement": getattr(m, "agreement", None),
        "per_frame": len(ours) / info.n_frames,
        **against_marks(ours, pd.read_csv(MARKS)),
    }  # fmt: skip
