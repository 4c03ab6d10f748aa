"""Acquisition and controller settings: the ``[acquisition]`` and ``[controller]`` sections."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from livetrack.config import read_toml, resolve_config_path, validate_config


class AcquisitionConfig(BaseModel):
    """How frames leave the microscope.

    Attributes
    ----------
    frames
        The service's PULL address.
    actuation
        Address this process binds for actuation commands (PULL); empty: none.
    queue
        Frames that may wait for the service (``SNDHWM``); beyond that the
        publisher drops and counts (it never blocks the camera).
    buffer_mb
        Circular buffer of the core (MB); frames the publisher could not take in
        time are overwritten there and counted as dropped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    frames: str = "tcp://127.0.0.1:5555"
    actuation: str = "tcp://127.0.0.1:5558"
    queue: Annotated[int, Field(ge=1, le=100000)] = 8
    buffer_mb: Annotated[int, Field(ge=8, le=65536)] = 256


class ControllerConfig(BaseModel):
    """Feedback on the tracks.

    Attributes
    ----------
    mode
        ``centre`` (move the XY stage), ``trap`` (move the trap) or ``none``.
    target_px
        Where the particle is held (x, y); default the field centre.
    particle
        Track id to follow; None: the track nearest ``select_near_px`` (default the target).
    kp, ki
        Proportional and integral gains on the error measured in the frame's own
        stage coordinates. With ``kp = 1`` the stage moves exactly to where the
        particle was seen (dead-beat), already allowing for moves still in flight.
    predict_latency
        Add the track's velocity × measured loop latency to the error (drift, flow).
    max_step_um
        Largest single stage move (a safety limit).
    timeout_s
        No results for this long: stop actuating (safe state) until they return.
    deadband_px
        Errors smaller than this are not acted on (saves stage wear).
    reacquire_px
        When the followed track is missing, a track that just started within this
        distance of where it was last seen (sample coordinates) is taken as the same
        particle at once (the linker restarted it after a gap).
    reacquire_after
        Results without the followed track (and nothing to reacquire) before the
        controller follows the particle nearest its last position instead.
    identity_by_brightness
        After an encounter, follow the nearby track whose brightness matches the
        followed particle's if the followed track's no longer does (the linker
        swapped them; see :mod:`livetrack.acquisition.identity`). Needs ``photons``
        in the results.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["centre", "trap", "none"] = "centre"
    target_px: tuple[float, float] | None = None
    particle: int | None = None
    select_near_px: tuple[float, float] | None = None
    kp: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    ki: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    predict_latency: bool = False
    max_step_um: Annotated[float, Field(gt=0.0)] = 20.0
    timeout_s: Annotated[float, Field(gt=0.0)] = 0.5
    deadband_px: Annotated[float, Field(ge=0.0)] = 0.0
    reacquire_px: Annotated[float, Field(ge=0.0)] = 6.0
    reacquire_after: Annotated[int, Field(ge=0)] = 10
    identity_by_brightness: bool = True


M = TypeVar("M", bound=BaseModel)


def load_section(path: str | Path, section: str, model: type[M]) -> M:
    """Validate one ``[section]`` of a preset (defaults when the section is absent)."""
    p = resolve_config_path(path)
    data = read_toml(p).get(section, {})
    return validate_config(data, model, f"{p} [{section}]")
