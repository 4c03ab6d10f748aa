"""The specimen under the simulated microscope, evolving in wall-clock time.

Devices (camera, stages, trap) share one :class:`SimulatedSample`. Every change
(a stage move, a trap move) first lets the sample evolve up to *now*, so what a
frame shows depends on where the stage and trap were while it was exposed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from livetrack.config import SimulationConfig
from livetrack.simulation.scene import Scene


@dataclass(frozen=True, slots=True)
class Exposure:
    """One rendered frame and the state of the microscope while it was exposed.

    ``truth`` is empty unless asked for (:meth:`SimulatedSample.expose`).
    """

    frame: NDArray[np.unsignedinteger]
    truth: pd.DataFrame
    stage_um: tuple[float, float]
    focus_um: float
    trap_px: tuple[float, float]
    t_sample_s: float


class SimulatedSample:
    """A :class:`~livetrack.simulation.scene.Scene` driven by a clock and by devices.

    Parameters
    ----------
    config
        The preset (optics, camera, particles, motion, trap).
    seed
        Seed of motion and noise.
    clock
        Monotonic seconds; the sample evolves by its differences.
    """

    def __init__(
        self,
        config: SimulationConfig,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.scene = Scene(config, seed)
        self.scene.fast_noise = True  # a camera in real time: the table-driven noise draw
        self._clock = clock
        self._lock = threading.RLock()
        self._t: float | None = None
        px = config.pixel_size_um
        self.pixel_um = px
        self.stage_um = (0.0, 0.0)
        self._focus_um = 0.0
        self._pending: deque[tuple[float, str, tuple[float, ...]]] = deque(maxlen=10_000)
        self._pending_lock = threading.Lock()
        trap_um = self.scene.system.trap_center_um
        self.trap_px = (float(trap_um[0] / px), float(trap_um[1] / px))
        self._trap_applied = self.trap_px
        #: the pinned particle's true position at each exposure: (t_s, x_px, y_px), bounded
        self.truth_log: deque[tuple[float, float, float]] = deque(maxlen=1_000_000)
        self._pinned: int | None = None

    # -- time ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the clock (the first exposure does so if nobody else did)."""
        with self._lock:
            if self._t is None:
                self._t = self._clock()

    def _evolve_to(self, t: float) -> None:
        if self._t is None:
            self._t = t
        elif t > self._t:
            self.scene.advance(t - self._t)
            self._t = t

    # -- devices ---------------------------------------------------------------------
    # Device calls never wait for a frame being rendered: they are stamped and queued,
    # and the next exposure applies them in time order (evolving the sample between).

    def _queue(self, kind: str, value: tuple[float, ...]) -> None:
        with self._pending_lock:
            self._pending.append((self._clock(), kind, value))

    def _apply_pending(self) -> None:
        with self._pending_lock:
            pending = list(self._pending)
            self._pending.clear()
        for t, kind, value in pending:
            self._evolve_to(t)
            if kind == "stage":
                self.scene.system.set_view((value[0], value[1]))
                self._place_trap()
            elif kind == "focus":
                self.scene.focus_um = value[0]
            else:
                self._trap_applied = (value[0], value[1])
                self._place_trap()

    def set_stage(self, x_um: float, y_um: float) -> None:
        """Move the field of view; the trap (fixed to the optics) moves with it."""
        self.stage_um = (float(x_um), float(y_um))
        self._queue("stage", self.stage_um)

    def set_focus(self, z_um: float) -> None:
        """Move the focal plane (particles defocus by their distance from it)."""
        self._focus_um = float(z_um)
        self._queue("focus", (self._focus_um,))

    @property
    def focus_um(self) -> float:
        """Focal plane position (µm)."""
        return self._focus_um

    def set_trap(self, x_px: float, y_px: float) -> None:
        """Steer the trap to camera pixel (x, y)."""
        self.trap_px = (float(x_px), float(y_px))
        self._queue("trap", self.trap_px)

    def _place_trap(self) -> None:
        sx, sy = self.scene.system.view_origin_um
        self.scene.system.set_trap(
            (
                sx + self._trap_applied[0] * self.pixel_um,
                sy + self._trap_applied[1] * self.pixel_um,
            )
        )

    # -- imaging ---------------------------------------------------------------------

    def expose(self, exposure_s: float, truth: bool = False) -> Exposure:
        """Render one frame as the sample is half-way through an exposure starting now.

        The truth table is filled only with ``truth=True`` (building it costs ~1 ms a
        frame, taken from the pipeline beside a live camera); the followed particle's
        position is logged either way (:meth:`pin_nearest`).
        """
        with self._lock:
            t = self._clock() + 0.5 * exposure_s
            self._apply_pending()
            self._evolve_to(t)
            view = self.scene.system.view_origin_um
            stage = (float(view[0]), float(view[1]))
            snap = self.scene.snap(truth)
            if self._pinned is not None:
                x, y = self.position_px(self._pinned)
                self.truth_log.append((self.scene.system.time_s, x, y))
            return Exposure(
                snap.frame,
                snap.truth,
                stage,
                self.scene.focus_um,
                self._trap_applied,
                self.scene.system.time_s,
            )

    # -- ground truth for experiments -------------------------------------------------

    def pin_nearest(self, x_px: float, y_px: float) -> int:
        """Follow the particle nearest camera pixel (x, y): it is never recycled.

        Its true position is logged at every exposure (:attr:`truth_log`). Returns its id.
        """
        with self._lock:
            x, y = self.scene.system.positions_px()
            i = int(np.argmin(np.hypot(x - x_px, y - y_px)))
            pid = int(self.scene.system.state.particle[i])
            self.scene.system.pinned.add(pid)
            self._pinned = pid
            return pid

    @property
    def pinned(self) -> int | None:
        """The id of the followed particle (see :meth:`pin_nearest`), if any."""
        return self._pinned

    def position_px(self, particle: int) -> tuple[float, float]:
        """Where particle ``particle`` is now in camera pixels (at the last evolved time)."""
        with self._lock:
            s = self.scene.system.state
            hit = np.flatnonzero(s.particle == particle)
            if len(hit) == 0:
                raise KeyError(f"particle {particle} is not in the sample")
            x, y = self.scene.system.positions_px()
            return float(x[hit[0]]), float(y[hit[0]])
