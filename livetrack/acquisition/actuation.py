"""Acting on the microscope: in-process through the core, or from another process.

The process that owns the core (``livetrack acquire``) binds an
:class:`ActuationServer` (PULL); a controller in another process sends commands
with :class:`RemoteActuator` (PUSH, never blocking). Commands name the frame that
caused them, so the server measures the loop latency, frame acquisition →
actuation applied, on one clock. Bad commands are counted, logged and skipped.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from typing import Any, Protocol

import numpy as np
import zmq
from pymmcore_plus import CMMCorePlus

from livetrack.wire import commands
from livetrack.wire import protocol as wire

log = logging.getLogger(__name__)


class Actuator(Protocol):
    """What a controller can do to the microscope."""

    def move_xy(self, x_um: float, y_um: float, seq: int, t_acq_ns: int) -> None:
        """Move the XY stage to an absolute position."""

    def set_trap(self, x_px: float, y_px: float, seq: int, t_acq_ns: int) -> None:
        """Steer the trap to camera pixel (x, y)."""

    def mda_event(self, event: dict[str, Any], seq: int, t_acq_ns: int) -> None:
        """Queue an acquisition event (a useq ``MDAEvent`` as a map)."""


class CoreActuator:
    """Applies commands to a core in this process and records the loop latency.

    Parameters
    ----------
    core
        The core whose stage and trap move.
    trap_device
        Label of the trap device (properties ``X-px`` and ``Y-px``).
    mda_queue
        Queue of a running ``core.run_mda(iter(queue.get, STOP))``; ``mda_event``
        commands are put there (bounded: when full, the event is dropped and counted).
    """

    def __init__(
        self,
        core: CMMCorePlus,
        trap_device: str = "Trap",
        mda_queue: queue.Queue[Any] | None = None,
    ) -> None:
        self.core = core
        self.trap_device = trap_device
        self.mda_queue = mda_queue
        # the most recent loop latencies (bounded: flat memory in long runs), and the count
        self.latency_ms: deque[float] = deque(maxlen=10_000)
        self.latency_n = 0
        self.applied: dict[str, int] = {}
        self.failed: dict[str, int] = {}

    def _done(self, cmd: str, t_acq_ns: int) -> None:
        self.applied[cmd] = self.applied.get(cmd, 0) + 1
        if t_acq_ns > 0:
            self.latency_ms.append((wire.now_ns() - t_acq_ns) / 1e6)
            self.latency_n += 1

    def move_xy(self, x_um: float, y_um: float, seq: int, t_acq_ns: int) -> None:
        """Move the XY stage to an absolute position (µm)."""
        self.core.setXYPosition(x_um, y_um)
        self._done("move_xy", t_acq_ns)

    def set_trap(self, x_px: float, y_px: float, seq: int, t_acq_ns: int) -> None:
        """Steer the trap to camera pixel (x, y)."""
        self.core.setProperty(self.trap_device, "X-px", x_px)
        self.core.setProperty(self.trap_device, "Y-px", y_px)
        self._done("set_trap", t_acq_ns)

    def mda_event(self, event: dict[str, Any], seq: int, t_acq_ns: int) -> None:
        """Queue an acquisition event into the running MDA."""
        import useq

        if self.mda_queue is None:
            raise RuntimeError("no MDA is running to take events")
        try:
            self.mda_queue.put_nowait(useq.MDAEvent(**event))
        except queue.Full:
            self.failed["mda_queue_full"] = self.failed.get("mda_queue_full", 0) + 1
            return
        self._done("mda_event", t_acq_ns)

    def apply(self, command: commands.Command) -> None:
        """Apply a decoded command."""
        a = command.args
        if command.cmd == "move_xy":
            self.move_xy(float(a["x_um"]), float(a["y_um"]), command.seq, command.t_acq_ns)
        elif command.cmd == "set_trap":
            self.set_trap(float(a["x_px"]), float(a["y_px"]), command.seq, command.t_acq_ns)
        else:
            self.mda_event(dict(a["event"]), command.seq, command.t_acq_ns)

    def latency_percentiles(self) -> dict[str, float]:
        """Loop latency (frame acquired → command applied), ms, over the last 10 000 commands."""
        if not self.latency_ms:
            return {}
        a = np.asarray(self.latency_ms)
        return {
            "p50": float(np.percentile(a, 50)),
            "p99": float(np.percentile(a, 99)),
            "max": float(a.max()),
            "n": self.latency_n,
        }


class ActuationServer:
    """Receive commands on a bound PULL socket and apply them through a core.

    Runs in its own thread; a malformed or failing command is counted by reason,
    logged, and the server keeps serving.
    """

    def __init__(self, actuator: CoreActuator, address: str, queue_len: int = 64) -> None:
        self.actuator = actuator
        self._ctx: zmq.Context[Any] = zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, queue_len)
        self.sock.setsockopt(zmq.MAXMSGSIZE, commands.MAX_COMMAND_BYTES)
        self.sock.bind(address)
        self.endpoint: str = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.rejected: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="actuation", daemon=True)

    def start(self) -> None:
        """Start serving in a background thread."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(50):
                continue
            data = self.sock.recv()
            try:
                command = commands.decode_command(data)
                self.actuator.apply(command)
            except wire.ProtocolError as exc:
                self._reject(exc.reason, str(exc))
            except Exception as exc:  # a device error must not stop the loop
                self._reject("device_error", f"{type(exc).__name__}: {exc}")

    def _reject(self, reason: str, message: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        log.warning("actuation command rejected (%s): %s", reason, message)

    def close(self) -> None:
        """Stop the thread and close the socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self.sock.close(0)


class RemoteActuator:
    """Send commands to an :class:`ActuationServer` without ever blocking.

    When the acquisition process is slow or gone, commands are dropped and counted
    (a stale stage command is worse than none).
    """

    def __init__(self, address: str, context: zmq.Context[Any] | None = None) -> None:
        self._ctx = context or zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 4)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.connect(address)
        self.sent = 0
        self.dropped = 0

    def _send(self, cmd: str, seq: int, t_acq_ns: int, **args: Any) -> None:
        try:
            self.sock.send(commands.encode_command(cmd, seq, t_acq_ns, **args), zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1

    def move_xy(self, x_um: float, y_um: float, seq: int, t_acq_ns: int) -> None:
        """Move the XY stage to an absolute position (µm)."""
        self._send("move_xy", seq, t_acq_ns, x_um=float(x_um), y_um=float(y_um))

    def set_trap(self, x_px: float, y_px: float, seq: int, t_acq_ns: int) -> None:
        """Steer the trap to camera pixel (x, y)."""
        self._send("set_trap", seq, t_acq_ns, x_px=float(x_px), y_px=float(y_px))

    def mda_event(self, event: dict[str, Any], seq: int, t_acq_ns: int) -> None:
        """Queue an acquisition event into the running MDA."""
        self._send("mda_event", seq, t_acq_ns, event=event)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close(0)
