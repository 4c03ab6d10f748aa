"""livetrack: real-time particle tracking beside the microscope.

The verbs return trackpy-shaped tables::

    import livetrack
    movie = livetrack.simulate("fluorescent_beads", frames=10, seed=1)
    features = livetrack.batch(movie.frames)          # or locate(frame)
    tracks = livetrack.link(features, search_range=5)
    table = livetrack.process_movie("movie.ome.tif", "tracks.parquet")

They load on first use, so ``import livetrack.wire.client`` stays light (no
TensorFlow, pandas or SciPy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Detector",
    "__version__",
    "batch",
    "link",
    "load_model",
    "locate",
    "process_movie",
    "simulate",
]

if TYPE_CHECKING:
    from livetrack._api import batch, link, load_model, locate, process_movie, simulate
    from livetrack.detection import Detector


def __getattr__(name: str) -> Any:
    if name == "Detector":
        from livetrack.detection import Detector

        return Detector
    if name in __all__:
        from livetrack import _api

        return getattr(_api, name)
    raise AttributeError(f"module 'livetrack' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
