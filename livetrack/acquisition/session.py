"""One acquisition session: a core, the frame pump, the actuation server, for a while.

Used by ``livetrack acquire`` (and so by ``livetrack demo``). The core is either
the user's rig (``--mm-config``, a Micro-Manager configuration file loaded into
``CMMCorePlus``) or the simulated microscope (a preset in ``config/``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymmcore_plus import CMMCorePlus

from livetrack.acquisition._config import AcquisitionConfig
from livetrack.acquisition.actuation import ActuationServer, CoreActuator
from livetrack.acquisition.controller import ControllerStats, FeedbackController
from livetrack.acquisition.publisher import CoreFramePump
from livetrack.acquisition.sample import SimulatedSample
from livetrack.wire import protocol as wire
from livetrack.wire.client import FramePublisher

log = logging.getLogger(__name__)
STOP_MDA = object()


def rig_core(mm_config: str | Path) -> CMMCorePlus:
    """A core with the user's Micro-Manager configuration loaded (any camera).

    Device adapters come from the Micro-Manager installation pymmcore-plus finds
    (``mmcore install`` puts one in place).
    """
    p = Path(mm_config)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such Micro-Manager configuration file")
    core = CMMCorePlus()
    core.loadSystemConfiguration(str(p))
    return core


@dataclass
class SessionResult:
    """What one session did, for the console and for ``--stats-json``."""

    seconds: float
    frames: dict[str, int]
    actuation: dict[str, Any]
    truth: dict[str, Any]

    def to_json(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(asdict(self), indent=2))


def run_session(
    core: CMMCorePlus,
    config: AcquisitionConfig,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    mda_sequence: Any = None,
    sample: SimulatedSample | None = None,
    last_frame_path: Path | None = None,
) -> SessionResult:
    """Acquire and publish until ``seconds`` pass, ``stop`` is set, or the MDA ends.

    Parameters
    ----------
    core
        The microscope.
    config
        Where frames go, where actuation commands come from.
    seconds
        Duration (None: until ``stop``).
    stop
        Set it to end the session early (signal handlers do).
    mda_sequence
        A ``useq.MDASequence``: run it (frames via ``frameReady``) instead of
        continuous acquisition; actuation ``mda_event`` commands join it.
    sample
        The simulated sample, when there is one, for the ground truth.
    last_frame_path
        Save the last frame here (``.npy``), for pictures.
    """
    stop = stop or threading.Event()
    publisher = FramePublisher(config.frames, queue=config.queue)
    pump = CoreFramePump(core, publisher)
    mda_queue: queue.Queue[Any] | None = queue.Queue(maxsize=256) if mda_sequence else None
    actuator = CoreActuator(core, mda_queue=mda_queue)
    server = ActuationServer(actuator, config.actuation) if config.actuation else None
    if server is not None:
        server.start()
    t0 = time.monotonic()
    end = t0 + seconds if seconds is not None else float("inf")
    try:
        if mda_sequence is not None:
            assert mda_queue is not None
            _run_mda(core, pump, mda_sequence, mda_queue, seconds is None, end, stop)
        else:
            pump.start_continuous()
            while time.monotonic() < end and not stop.is_set():
                stop.wait(0.05)
            pump.stop()
    finally:
        elapsed = time.monotonic() - t0
        if server is not None:
            server.close()
        publisher.close()
    if last_frame_path is not None and pump.last_frame is not None:
        np.save(last_frame_path, pump.last_frame)
    counts = pump.counts()
    return SessionResult(
        seconds=elapsed,
        frames={
            "acquired": counts.acquired,
            "sent": counts.sent,
            "dropped": counts.dropped,
            "dropped_socket": counts.dropped_socket,
            "dropped_buffer": counts.dropped_buffer,
        },
        actuation={
            "applied": actuator.applied,
            "failed": actuator.failed,
            "rejected": server.rejected if server is not None else {},
            "latency_ms": actuator.latency_percentiles(),
        },
        truth=_truth_summary(sample, core),
    )


def _run_mda(
    core: CMMCorePlus,
    pump: CoreFramePump,
    sequence: Any,
    events: queue.Queue[Any],
    sequence_only: bool,
    end: float,
    stop: threading.Event,
) -> None:
    """Run the MDA (frames via ``frameReady``); triggered events join it until the end."""
    pump.attach_mda()
    for ev in sequence:
        events.put(ev)
    if sequence_only:  # else stay open for triggered events
        events.put(STOP_MDA)
    thread = core.run_mda(iter(events.get, STOP_MDA))
    while thread.is_alive() and time.monotonic() < end and not stop.is_set():
        thread.join(0.05)
    if thread.is_alive():
        events.put(STOP_MDA)
        thread.join(2)
    if thread.is_alive():
        core.mda.cancel()
        thread.join(5)
    pump.detach_mda()


def _truth_summary(sample: SimulatedSample | None, core: CMMCorePlus) -> dict[str, Any]:
    if sample is None or not sample.truth_log:
        return {}
    log_ = np.asarray(sample.truth_log)
    h, w = core.getImageHeight(), core.getImageWidth()
    d = np.hypot(log_[:, 1] - (w - 1) / 2.0, log_[:, 2] - (h - 1) / 2.0)
    t = log_[:, 0] - log_[0, 0]
    step = max(1, len(d) // 2000)  # a bounded series for plots
    return {
        "particle": sample.pinned,
        "rms_px_from_centre": float(np.sqrt(np.mean(d**2))),
        "t_s": t[::step].round(4).tolist(),
        "distance_px": d[::step].round(3).tolist(),
    }


def run_control_loop(
    controller: FeedbackController,
    results: str,
    seconds: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    keys: Any = None,
) -> ControllerStats:
    """Subscribe to ``trk`` results at ``results`` and drive ``controller`` until told to stop.

    Polls with a short timeout so the safe state is entered within
    ``timeout_s`` + 50 ms of the last result.
    """
    from livetrack.wire.client import ResultSubscriber

    sub = ResultSubscriber(results, topics=(wire.TOPIC_TRACKS,), keys=keys)
    end = time.monotonic() + seconds if seconds is not None else float("inf")
    try:
        while time.monotonic() < end and not should_stop():
            res = sub.recv(timeout_ms=50)
            if res is None:
                controller.check_timeout()
                continue
            controller.on_tracks(res)
    finally:
        sub.close()
    return controller.stats
