"""The service's control socket: status, policy, tracks, hot model swap, shutdown.

Requests are msgpack maps with a ``cmd`` string (docs/protocol.md §3); every request
gets exactly one reply, a model swap's reply comes once the new model is loaded (in
a thread) and swapped in between frames. The channel acts on the service through
the few things :class:`Controllable` names.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import zmq

from livetrack.artifact import ArtifactError, artifact_kind, check_fits
from livetrack.linking import OnlineLinker
from livetrack.service._results import ResultsOut
from livetrack.service._stats import ServiceStats
from livetrack.service.config import FrameDetector, Policy, ServiceConfig
from livetrack.wire import protocol as wire

COMMANDS = (
    "status", "stats", "set_policy", "reset_tracks", "set_preview", "follow", "load_model",
    "shutdown",
)  # fmt: skip


class Controllable(Protocol):
    """What control requests read and change in the service."""

    policy: Policy
    linker: OnlineLinker
    detector: FrameDetector
    config: ServiceConfig
    stats: ServiceStats

    def status(self) -> dict[str, Any]:
        """The status map."""
        ...

    def stop(self) -> None:
        """Ask the serving loop to finish."""
        ...

    def reset_tracks(self) -> list[int]:
        """End every track and forget the stream's last seq; returns the ended ids."""
        ...

    def follow(self, particle: int) -> int | None:
        """Ask the controller to follow a track (ValueError if it is none); the last seq."""
        ...

    @property
    def out(self) -> ResultsOut:
        """What the service publishes (the preview is set there)."""
        ...


class ControlChannel:
    """Control requests on the service's REP socket, one at a time.

    Parameters
    ----------
    service
        The service the requests act on.
    rep
        Its bound REP socket.
    model_loader
        Builds a detector from a path for hot swaps (None: a :class:`Detector` with
        the serving one's arithmetic and read-out).
    """

    def __init__(self, service: Controllable, rep: zmq.Socket[Any], model_loader: Any) -> None:
        self.service = service
        self.rep = rep
        self._loader = model_loader
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        self._pending: Future[FrameDetector] | None = None

    @property
    def busy(self) -> bool:
        """A model swap is under way: its reply is owed before the next request is read."""
        return self._pending is not None

    def close(self) -> None:
        """Abandon a model load in progress."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _reply(self, msg: dict[str, Any]) -> None:
        self.rep.send(wire.packb(msg))

    def _refuse(self, reason: str, error: str) -> None:
        """An error reply with its machine-readable reason, counted."""
        self.service.stats.control_rejected[reason] += 1
        self._reply({"ok": False, "reason": reason, "error": error})

    def _request(self) -> dict[str, Any] | None:
        """The waiting request, decoded; None (and an error reply sent) if it is no request."""
        try:
            parts = self.rep.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            return None
        self.service.stats.control_requests += 1
        if len(parts) != 1:  # REP must still answer once, or the socket is stuck
            self._refuse("wrong_parts", f"{len(parts)} message parts, a request is 1")
            return None
        try:
            req = wire.unpackb(parts[0], wire.MAX_CONTROL_BYTES)
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise wire.ProtocolError("bad_control", "expected a map with a 'cmd' string")
        except wire.ProtocolError as exc:
            self._refuse(exc.reason, str(exc))
            return None
        return req

    def handle(self) -> None:
        """Answer the request waiting on the socket, if any."""
        req = self._request()
        if req is None:
            return
        cmd = req["cmd"]
        if cmd in ("status", "stats"):
            self._reply({"ok": True, "status": self.service.status()})
        elif cmd == "set_policy":
            policy = req.get("policy")
            if policy not in ("realtime", "lossless"):
                self._refuse("bad_control", f"policy {policy!r}: expected realtime or lossless")
            else:
                self.service.policy = policy
                self._reply({"ok": True, "policy": policy})
        elif cmd == "reset_tracks":
            self._reply({"ok": True, "ended": self.service.reset_tracks()})
        elif cmd == "shutdown":
            self._reply({"ok": True})
            self.service.stop()
        elif cmd == "set_preview":
            self._set_preview(req)
        elif cmd == "follow":
            self._follow(req.get("particle"))
        elif cmd == "load_model":
            path = req.get("path")
            if not isinstance(path, str):
                self._refuse("bad_control", "'path' (a model artifact directory) is required")
            else:
                self._pending = self._pool.submit(self._load, path)
        else:
            known = ", ".join(COMMANDS)
            self._refuse("unknown_command", f"unknown command {cmd!r}; known: {known}")

    def _set_preview(self, req: dict[str, Any]) -> None:
        hz: Any = req.get("hz")
        side = req.get("max_side", 1024)
        if not _number(hz) or not 0 <= hz <= wire.MAX_PREVIEW_HZ:
            want = f"a number 0-{wire.MAX_PREVIEW_HZ:g} (0: off)"
            self._refuse("bad_control", f"hz {hz!r}: expected {want}")
        elif not isinstance(side, int) or isinstance(side, bool) or not 16 <= side <= wire.MAX_DIM:
            self._refuse("bad_control", f"max_side {side!r}: expected an integer 16-{wire.MAX_DIM}")
        else:
            self.service.out.set_preview(float(hz), side)
            self._reply({"ok": True, "hz": float(hz), "max_side": side})

    def _follow(self, particle: Any) -> None:
        if not isinstance(particle, int) or isinstance(particle, bool) or particle < 0:
            self._refuse("bad_control", f"particle {particle!r}: expected a track id (an integer)")
            return
        try:
            after = self.service.follow(particle)
        except ValueError as exc:
            self._refuse("bad_control", str(exc))
            return
        self._reply({"ok": True, "particle": particle, "after_seq": after})

    def _load(self, path: str) -> FrameDetector:
        loader = self._loader
        if loader is None and artifact_kind(path) == "lodestar":
            from livetrack.detection.lodestar import LodestarDetector

            det: FrameDetector = LodestarDetector(Path(path))
        elif loader is None:
            from livetrack.detection.detector import Detector

            # "auto" stays auto: the new model may not convert to int8
            precision = (
                getattr(self.service.detector, "asked_precision", None)
                or getattr(self.service.detector, "precision", None)
                or "auto"
            )
            split = getattr(self.service.detector, "split_z", None) is not None
            region = getattr(self.service.detector, "split_region", None)
            xla = getattr(self.service.detector, "xla", None)
            # the same arithmetic and read-out as the model it replaces
            det = Detector(
                Path(path), precision=precision, split=split, split_region=region, xla=xla,
                min_photons=self.service.config.min_photons,
            )  # fmt: skip
        else:
            det = loader(Path(path))
        card = getattr(det, "card", None)
        if card is not None:
            # the stream's modality is the serving model's (fluorescence for a classical one)
            serving = getattr(self.service.detector, "card", None)
            modality = serving.expects.modality if serving is not None else "fluorescence"
            check_fits(card, modality=modality, override=self.service.config.force_model)
        warm_up = getattr(det, "warm_up", None)
        if warm_up is not None:  # here, off the loop: its first frame is not late either
            warm_up()
        return det

    def finish_model_swap(self) -> None:
        """Swap the new model in once it is loaded, and answer its request."""
        fut = self._pending
        if fut is None or not fut.done():
            return
        self._pending = None
        try:
            self.service.detector = fut.result()
        except (ArtifactError, OSError, ValueError) as exc:
            self._refuse("model_not_loaded", f"model not loaded, the old one keeps serving: {exc}")
            return
        self._reply({"ok": True, "detector": type(self.service.detector).__name__})


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v
