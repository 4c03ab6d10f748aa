"""The live service: frames in on PULL, results out on PUB, control on REP."""

from livetrack.service.config import FrameDetector, Policy, ServiceConfig
from livetrack.service.service import Service

__all__ = ["FrameDetector", "Policy", "Service", "ServiceConfig"]
