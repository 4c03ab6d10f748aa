"""``livetrack adapt``: fit the simulator to the user's own movie, and train for it.

Or, with ``--self-supervised``, learn from the movie's own particles (LodeSTAR).
"""

from livetrack.adapt.measure import AdaptError, Measured, measure_movie
from livetrack.adapt.run import AdaptResult, adapt_movie
from livetrack.adapt.self_supervised import SelfSupervisedResult, adapt_self_supervised

__all__ = [
    "AdaptError",
    "AdaptResult",
    "Measured",
    "SelfSupervisedResult",
    "adapt_movie",
    "adapt_self_supervised",
    "measure_movie",
]
