"""Acquisition: the microscope side of the wire.

A pymmcore-plus core (a real rig or the simulated microscope), the frame
publisher, actuation, and the feedback controller.

Meets the inference service only on the wire (frames out, results in).
"""

from livetrack.acquisition._config import AcquisitionConfig, ControllerConfig, load_section
from livetrack.acquisition.actuation import (
    ActuationServer,
    Actuator,
    CoreActuator,
    RemoteActuator,
)
from livetrack.acquisition.controller import (
    ControllerStats,
    FeedbackController,
    Trigger,
    TriggerEvent,
)
from livetrack.acquisition.devices import (
    SimCamera,
    SimFocus,
    SimTrap,
    SimXYStage,
    simulated_core,
)
from livetrack.acquisition.publisher import CoreFramePump, PumpStats
from livetrack.acquisition.sample import Exposure, SimulatedSample
from livetrack.acquisition.session import SessionResult, rig_core, run_control_loop, run_session

__all__ = [
    "AcquisitionConfig",
    "ActuationServer",
    "Actuator",
    "ControllerConfig",
    "ControllerStats",
    "CoreActuator",
    "CoreFramePump",
    "Exposure",
    "FeedbackController",
    "PumpStats",
    "RemoteActuator",
    "SessionResult",
    "SimCamera",
    "SimFocus",
    "SimTrap",
    "SimXYStage",
    "SimulatedSample",
    "Trigger",
    "TriggerEvent",
    "load_section",
    "rig_core",
    "run_control_loop",
    "run_session",
    "simulated_core",
]
