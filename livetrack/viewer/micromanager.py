"""Publish a running Micro-Manager core's frames to the service, from inside napari.

The core is the one napari-micromanager (or pymmcore-widgets, or a script) already
drives: nothing here starts or stops the camera. Live mode (a continuous sequence
acquisition) is drained by :class:`~livetrack.acquisition.publisher.CoreFramePump`
while it runs; every MDA frame is sent from ``frameReady``. Because the pump takes
live frames out of the core's buffer, the acquisition's own ``preview`` layer is fed
from the pump (:meth:`MicroManagerLink.newest_frame`), so the user keeps seeing the
camera with the results drawn over it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from livetrack.acquisition.publisher import CoreFramePump, PumpStats
from livetrack.wire.client import FramePublisher


def running_core(viewer: Any) -> Any:
    """The core of napari-micromanager's window in ``viewer``, else pymmcore-plus's global one."""
    try:
        from napari_micromanager import main_window
    except ImportError:
        main_window = None
    if main_window is not None:
        qt_window = getattr(getattr(viewer, "window", None), "_qt_window", None)
        win = qt_window.findChild(main_window.MainWindow) if qt_window is not None else None
        if win is not None:
            return win.core
    from pymmcore_plus import CMMCorePlus

    return CMMCorePlus.instance()


class MicroManagerLink:
    """Send a core's live and MDA frames to ``frames`` while linked.

    Parameters
    ----------
    core
        A running ``CMMCorePlus`` (or ``UniMMCore``).
    frames
        The service's frames address.
    queue
        Frames that may wait for the service; beyond it frames are dropped and counted.
    """

    def __init__(self, core: Any, frames: str, queue: int = 8) -> None:
        self.core = core
        self.publisher = FramePublisher(frames, queue=queue)
        self.pump = CoreFramePump(core, self.publisher, source="napari-micromanager")
        self._events = (
            (core.events.continuousSequenceAcquisitionStarted, self._live_started),
            (core.events.sequenceAcquisitionStopped, self._live_stopped),
        )
        for signal, slot in self._events:
            signal.connect(slot)
        self.pump.attach_mda()
        self._shown: int = -1
        if core.isSequenceRunning():
            self.pump.start_draining()

    def _live_started(self, *_: Any) -> None:
        self.pump.start_draining()

    def _live_stopped(self, *_: Any) -> None:
        self.pump.stop()

    def newest_frame(self) -> np.ndarray | None:
        """The newest live frame sent and not yet returned here (None: nothing new)."""
        counts = self.pump.counts()
        frame = self.pump.last_frame
        if frame is None or counts.acquired == self._shown or self.core.mda.is_running():
            return None  # during an MDA, napari-micromanager draws its own layers
        self._shown = counts.acquired
        return frame

    def counts(self) -> PumpStats:
        """Frames taken from the core, sent, and dropped."""
        return self.pump.counts()

    def close(self) -> None:
        """Stop sending (the camera keeps running: it is not ours)."""
        for signal, slot in self._events:
            signal.disconnect(slot)
        self.pump.detach_mda()
        self.pump.stop_draining()
        self.publisher.close()
