"""Set up the microscope side from a preset: the core to acquire with, the controller to steer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pymmcore_plus import CMMCorePlus

from livetrack.acquisition._config import AcquisitionConfig, ControllerConfig, load_section
from livetrack.acquisition.actuation import RemoteActuator
from livetrack.acquisition.controller import FeedbackController, Trigger
from livetrack.acquisition.sample import SimulatedSample
from livetrack.acquisition.session import rig_core
from livetrack.config import load_simulation_config


def open_core(
    preset: str = "demo",
    mm_config: str | Path | None = None,
    seed: int = 0,
    interval_ms: float | None = None,
    pin_centre: bool = False,
) -> tuple[CMMCorePlus, AcquisitionConfig, SimulatedSample | None]:
    """A rig's core (``mm_config``), or the simulated microscope of ``preset``.

    Returns the core, the acquisition settings (the preset's ``[acquisition]``; the
    defaults for a rig) and the simulated sample (None for a rig). ``interval_ms``
    sets the simulated camera's frame interval; ``pin_centre`` logs the true path of
    the particle nearest the centre. Raises ``ValueError`` / ``ConfigError`` with a
    message for the user.
    """
    if mm_config is not None:
        return rig_core(mm_config), AcquisitionConfig(), None
    from livetrack.acquisition.devices import simulated_core

    core, sample = simulated_core(load_simulation_config(preset), seed)
    if interval_ms is not None:
        if interval_ms <= 0:
            raise ValueError(f"--interval-ms must be positive, got {interval_ms}")
        core.setProperty("Camera", "Interval-ms", interval_ms)
        core.setExposure(min(core.getExposure(), interval_ms / 2))
    if pin_centre:
        sample.pin_nearest((core.getImageWidth() - 1) / 2, (core.getImageHeight() - 1) / 2)
    return core, load_section(preset, "acquisition", AcquisitionConfig), sample


def controller_from_preset(
    preset: str,
    overrides: dict[str, Any],
    actuation: str | None = None,
    enter: Sequence[float] | None = None,
) -> tuple[FeedbackController, RemoteActuator]:
    """The feedback controller of a preset's ``[controller]``, acting through the acquisition.

    ``overrides``: controller keys given by the user (``None`` values ignored);
    ``actuation``: the acquisition's actuation address (default: the preset's);
    ``enter``: a region (x0, y0, x1, y1) whose entry by a track snaps an MDA frame.
    """
    sim = load_simulation_config(preset)
    cfg = load_section(preset, "controller", ControllerConfig)
    acq = load_section(preset, "acquisition", AcquisitionConfig)
    given = {k: v for k, v in overrides.items() if v is not None}
    cfg = ControllerConfig.model_validate({**cfg.model_dump(), **given})
    actuator = RemoteActuator(actuation or acq.actuation)
    triggers: tuple[Trigger, ...] = ()
    if enter is not None:
        x0, y0, x1, y1 = enter
        triggers = (Trigger("enter", region=(x0, y0, x1, y1)),)
    hook: Callable[[Any], None] | None = None
    if triggers:

        def hook(ev: Any) -> None:
            actuator.mda_event({"metadata": {"trigger": repr(ev)}}, getattr(ev, "seq", 0), 0)

    ctl = FeedbackController(
        cfg,
        actuator,
        sim.pixel_size_um,
        (sim.camera.height, sim.camera.width),
        triggers=triggers,
        hook=hook,
    )
    return ctl, actuator
