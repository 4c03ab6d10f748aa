"""``livetrack adapt``: fit the simulator to the user's own movie, and train for it."""

from livetrack.adapt.measure import AdaptError, Measured, measure_movie
from livetrack.adapt.run import AdaptResult, adapt_movie

__all__ = ["AdaptError", "AdaptResult", "Measured", "adapt_movie", "measure_movie"]
