"""Two-stage pipeline for the real-time policy: network and read-out overlap.

The network of frame n+1 runs while the serving loop reads out, links and
publishes frame n. On 2 cores the network (TensorFlow, which releases the GIL) and the read-out
(NumPy) overlap instead of taking turns (``livetrack bench --only speed``
measures what it buys). One frame is in the network at a time; the loop keeps at
most one more waiting (the newest; older ones are skipped and counted), so the
unit of work and the queue are both bounded. The worker touches no socket but its
own end of an inproc pair, which wakes the loop's poller when a result is ready.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq

_ids = itertools.count()


@dataclass
class Staged:
    """One frame through the network stage, waiting for its read-out."""

    item: Any  # (header, frame, t_recv) as the service received it
    detector: Any  # the detector that ran it (a hot swap may have happened since)
    t_start: float  # perf_counter when the network started on it
    staged: Any = None  # the detector's stage_network output, or its Detections
    error: Exception | None = None


def run_network(detector: Any, frame: Any) -> Any:
    """The first stage: the detector's ``stage_network``, or the whole ``detect``."""
    stage = getattr(detector, "stage_network", None)
    return stage(frame) if stage is not None else detector.detect(frame)


def run_readout(detector: Any, frame: Any, staged: Any, index: int) -> Any:
    """The second stage: ``stage_readout`` where there is one (else already done)."""
    stage = getattr(detector, "stage_readout", None)
    if stage is None:
        return staged
    return (
        stage(frame, staged, index=index)
        if getattr(detector, "indexed", False)
        else stage(frame, staged)
    )


class NetworkWorker:
    """One thread running :func:`run_network` on one frame at a time.

    Parameters
    ----------
    context
        The service's ZeroMQ context (inproc needs the same one).
    """

    def __init__(self, context: zmq.Context[Any]) -> None:
        self._address = f"inproc://livetrack-network-{next(_ids)}"
        self.signal = context.socket(zmq.PULL)  # polled by the serving loop
        self.signal.setsockopt(zmq.LINGER, 0)
        self.signal.bind(self._address)
        self._context = context
        self._jobs: queue.Queue[Staged | None] = queue.Queue(maxsize=2)  # a frame + the stop
        self._done: Staged | None = None
        self.busy = False
        self._thread = threading.Thread(target=self._run, name="network-stage", daemon=True)
        self._thread.start()

    def submit(self, item: Any, detector: Any) -> None:
        """Start the network on one frame; only when not :attr:`busy`."""
        assert not self.busy, "one frame in the network at a time"
        self.busy = True
        self._jobs.put(Staged(item, detector, time.perf_counter()))

    def take(self) -> Staged:
        """The finished frame (call when :attr:`signal` is readable)."""
        self.signal.recv()
        done, self._done = self._done, None
        self.busy = False
        assert done is not None
        return done

    def wait(self, timeout_ms: int = 60_000) -> Staged | None:
        """Block until the frame in the network is done (None if idle or too slow)."""
        if not self.busy or not self.signal.poll(timeout_ms):
            return None
        return self.take()

    def _run(self) -> None:
        push = self._context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(self._address)
        try:
            while (job := self._jobs.get()) is not None:
                try:
                    job.staged = run_network(job.detector, job.item[1])
                except Exception as exc:  # reported on the loop's thread, counted there
                    job.error = exc
                self._done = job
                push.send(b"")
        finally:
            push.close(0)

    def close(self) -> None:
        """Stop the thread (after the frame in hand, if any) and close the socket."""
        self._jobs.put(None)
        self._thread.join(5)
        self.signal.close(0)
