"""Client library for the livetrack service: publish frames, subscribe to results, control.

- :class:`FramePublisher` never blocks the caller (a camera callback): when the
  service is slow or gone it drops the frame and counts it; ZeroMQ reconnects by
  itself when the service comes back.
- :class:`ResultSubscriber` yields decoded results and notices its own losses from
  gaps in ``seq`` (PUB drops silently for slow subscribers).
- :class:`ControlClient` asks with a timeout and retries on a fresh socket (the
  ZeroMQ guide's "Lazy Pirate"), so it never hangs on a dead service.

Imports only the wire protocol (no TensorFlow, no service code).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq
from numpy.typing import NDArray

from livetrack.wire import protocol as wire
from livetrack.wire.security import ClientKeys


def free_loopback_addresses(n: int) -> list[str]:
    """``n`` tcp addresses on 127.0.0.1 whose ports were free a moment ago."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    socks = [ctx.socket(zmq.PULL) for _ in range(n)]
    ports = [s.bind_to_random_port("tcp://127.0.0.1") for s in socks]
    for s in socks:
        s.close(0)
    return [f"tcp://127.0.0.1:{p}" for p in ports]


class ServiceUnavailableError(RuntimeError):
    """The service did not answer a control request after all retries."""


@dataclass
class PublisherStats:
    """Frames offered, sent, and dropped at the sender (service slow or absent)."""

    offered: int = 0
    sent: int = 0
    dropped: int = 0


#: what a frame header may say besides seq, time, shape and dtype
_METADATA = frozenset(
    ("pixel_size_um", "exposure_ms", "stage_um", "source", "meta", "camera_offset_adu",
     "camera_gain_adu_per_e")
)  # fmt: skip


class FramePublisher:
    """Send frames to a service's PULL socket without ever blocking.

    Parameters
    ----------
    address
        The service's frame address, e.g. ``tcp://127.0.0.1:5555``.
    queue
        Frames that may wait in this process for the service (``SNDHWM``); beyond
        that, frames are dropped and counted.
    """

    def __init__(
        self,
        address: str,
        queue: int = 8,
        context: zmq.Context[Any] | None = None,
        keys: ClientKeys | None = None,
    ) -> None:
        self._ctx = context or zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.PUSH)
        if keys is not None:
            keys.apply(self.sock)
        self.sock.setsockopt(zmq.SNDHWM, queue)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IMMEDIATE, 1)  # no queueing for a service that is not there
        self.sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 400)  # back within 0.5 s of a restart
        self.sock.connect(address)
        self.stats = PublisherStats()
        self._seq = 0

    def publish(
        self,
        frame: NDArray[Any],
        seq: int | None = None,
        t_acq_ns: int | None = None,
        **metadata: Any,
    ) -> bool:
        """Send one frame; return False (and count a drop) if it could not go out now.

        ``metadata`` may hold ``pixel_size_um``, ``exposure_ms``, ``stage_um``,
        ``source``, ``meta`` (a free map), and the camera, ``camera_offset_adu`` and
        ``camera_gain_adu_per_e``, when they are known.
        """
        unknown = set(metadata) - _METADATA
        if unknown:
            raise ValueError(
                f"unknown frame metadata {sorted(unknown)}; known: {sorted(_METADATA)}"
            )
        self.stats.offered += 1
        s = self._seq if seq is None else seq
        self._seq = s + 1
        name = np.dtype(frame.dtype).name
        if name not in wire.FRAME_DTYPES:
            raise ValueError(
                f"frame dtype {name} cannot be sent; use one of {sorted(wire.FRAME_DTYPES)}"
            )
        header = wire.FrameHeader(
            seq=s,
            t_acq_ns=t_acq_ns if t_acq_ns is not None else wire.now_ns(),
            shape=(int(frame.shape[0]), int(frame.shape[1])),
            dtype=name,
            pixel_size_um=metadata.get("pixel_size_um"),
            exposure_ms=metadata.get("exposure_ms"),
            stage_um=tuple(metadata["stage_um"]) if metadata.get("stage_um") is not None else None,
            source=str(metadata.get("source", "")),
            meta=dict(metadata.get("meta", {})),
            camera_offset_adu=metadata.get("camera_offset_adu"),
            camera_gain_adu_per_e=metadata.get("camera_gain_adu_per_e"),
        )
        try:
            self.sock.send_multipart(
                wire.encode_frame(frame, header), flags=zmq.NOBLOCK, copy=False
            )
        except zmq.Again:
            self.stats.dropped += 1
            return False
        self.stats.sent += 1
        return True

    def close(self) -> None:
        """Close the socket at once (unsent frames are dropped)."""
        self.sock.close(linger=0)


class ResultSubscriber:
    """Receive decoded results from a service's PUB socket.

    Parameters
    ----------
    address
        The service's results address.
    topics
        Topics to receive (default: all).
    queue
        Results that may wait in this process (``RCVHWM``).
    """

    def __init__(
        self,
        address: str,
        topics: tuple[bytes, ...] = wire.TOPICS,
        context: zmq.Context[Any] | None = None,
        max_bytes: int = 64 * 1024 * 1024,
        keys: ClientKeys | None = None,
        queue: int = 10000,
    ) -> None:
        self._ctx = context or zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.SUB)
        if keys is not None:
            keys.apply(self.sock)
        self.sock.setsockopt(zmq.LINGER, 0)
        # results waiting here (RCVHWM); beyond it and the service's per-subscriber
        # queue, PUB drops for this subscriber only (seq gaps show it in `missed`)
        self.sock.setsockopt(zmq.RCVHWM, queue)
        self.sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t)
        self.sock.connect(address)
        self.max_bytes = max_bytes
        self.missed: dict[bytes, int] = {}
        self.received: dict[bytes, int] = {}
        self.invalid = 0
        self._last_seq: dict[bytes, int] = {}

    def recv(self, timeout_ms: int = 1000) -> wire.Result | None:
        """The next valid result, or None after ``timeout_ms``."""
        deadline = time.monotonic() + timeout_ms / 1e3
        while True:
            left = int((deadline - time.monotonic()) * 1e3)
            if left <= 0 or not self.sock.poll(left):
                return None
            parts = self.sock.recv_multipart()
            if len(parts) != 2:  # not a result message: counted, never fatal
                self.invalid += 1
                continue
            topic, body = parts
            try:
                if topic == wire.TOPIC_STATUS:
                    status = wire.unpackb(body, self.max_bytes)
                    res = wire.Result(topic, -1, 0, int(status.get("t_pub_ns", 0)), {}, status)
                else:
                    res = wire.decode_result(topic, body, self.max_bytes)
            except wire.ProtocolError:
                self.invalid += 1
                continue
            self.received[topic] = self.received.get(topic, 0) + 1
            if topic in (wire.TOPIC_DETECTIONS, wire.TOPIC_TRACKS):
                last = self._last_seq.get(topic)
                # seq gaps are either frames the service skipped or messages PUB dropped
                if last is not None and res.seq > last + 1:
                    self.missed[topic] = self.missed.get(topic, 0) + res.seq - last - 1
                self._last_seq[topic] = res.seq
            return res

    def __iter__(self) -> Iterator[wire.Result]:
        while True:
            r = self.recv()
            if r is not None:
                yield r

    def lag_ms(self, result: wire.Result) -> float:
        """How old a result is now, from its frame's acquisition stamp."""
        return (wire.now_ns() - result.t_acq_ns) / 1e6

    def close(self) -> None:
        """Close the socket."""
        self.sock.close(linger=0)


class ControlClient:
    """Request/reply with the service's control socket, with timeout and retries."""

    def __init__(
        self,
        address: str,
        timeout_ms: int = 2000,
        retries: int = 3,
        context: zmq.Context[Any] | None = None,
        keys: ClientKeys | None = None,
    ) -> None:
        self._ctx = context or zmq.Context.instance()
        self.keys = keys
        self.address = address
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.sock = self._new_socket()

    def _new_socket(self) -> zmq.Socket[Any]:
        s: zmq.Socket[Any] = self._ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        if self.keys is not None:
            self.keys.apply(s)
        s.connect(self.address)
        return s

    def request(self, cmd: str, timeout_ms: int | None = None, **args: Any) -> dict[str, Any]:
        """Send ``{"cmd": cmd, **args}`` and return the reply map."""
        wait = self.timeout_ms if timeout_ms is None else timeout_ms
        for _ in range(self.retries):
            self.sock.send(wire.packb({"cmd": cmd, **args}))
            if self.sock.poll(wait):
                reply = wire.unpackb(self.sock.recv(), wire.MAX_FRAME_BYTES)
                if not isinstance(reply, dict):
                    raise wire.ProtocolError("bad_reply", "control reply is not a map")
                return reply
            # Lazy Pirate: a REQ socket that timed out is stuck; throw it away
            self.sock.close(linger=0)
            self.sock = self._new_socket()
        raise ServiceUnavailableError(
            f"no answer from {self.address} after {self.retries} tries of {wait} ms"
        )

    def close(self) -> None:
        """Close the socket."""
        self.sock.close(linger=0)
