"""Online linking of detections into trajectories, and tracking metrics.

Streaming (:class:`OnlineLinker`, one frame at a time) and offline
(:func:`link_table`, a whole table) share one code path. Imports no TensorFlow.
"""

from livetrack.linking._config import LinkingConfig
from livetrack.linking._online import LinkerStats, LinkStep, OnlineLinker, link_table

__all__ = ["LinkStep", "LinkerStats", "LinkingConfig", "OnlineLinker", "link_table"]
