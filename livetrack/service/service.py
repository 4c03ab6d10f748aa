"""The inference service: frames in on PULL, results out on PUB, control on REP.

One thread drives the loop: poll → receive (zero copy) → decode → detect → link →
pack → publish. Two policies: **realtime** drains the queue and works on the
newest frame (older ones are *skipped* and counted); **lossless** works on every
frame in order (a backlog is batched through the network). The PULL queue is
bounded (``RCVHWM``; the sender drops and counts when it is full), messages
above ``MAXMSGSIZE`` are refused by ZeroMQ,
every other bad message is rejected with its reason and counted, and the loop
keeps serving. A model is loaded in a background thread and swapped in between
frames; a bad one leaves the old one serving.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from typing import Any

import zmq
from numpy.typing import NDArray

from livetrack.detection.detector import Detections
from livetrack.linking import OnlineLinker
from livetrack.service._control import ControlChannel
from livetrack.service._pipeline import NetworkWorker, Staged, run_readout
from livetrack.service._results import ResultsOut
from livetrack.service._stats import ServiceStats
from livetrack.service._stream import Stream
from livetrack.service.config import FrameDetector, Policy, ServiceConfig
from livetrack.wire import protocol as wire
from livetrack.wire.security import check_exposure, check_metrics_exposure

log = logging.getLogger("livetrack.service")


class Service:
    """The service; ``run()`` serves until ``stop()`` (or SIGINT/SIGTERM in the main thread).

    Parameters
    ----------
    detector
        Any :class:`FrameDetector` (the trained model, or a classical one).
    config
        Addresses, policy, limits.
    model_loader
        Builds a detector from a path for hot swaps (default: :class:`Detector`).
    """

    def __init__(
        self,
        detector: FrameDetector,
        config: ServiceConfig | None = None,
        context: zmq.Context[Any] | None = None,
        model_loader: Any = None,
    ) -> None:
        self.config = config or ServiceConfig()
        cfg = self.config
        check_exposure((cfg.frames, cfg.results, cfg.control), insecure=cfg.insecure, keys=cfg.keys)
        if cfg.metrics_port is not None:
            check_metrics_exposure(cfg.metrics_host, insecure=cfg.insecure)
        self.detector = detector
        self.policy: Policy = cfg.policy
        self.stats = ServiceStats()
        self.linker = OnlineLinker(cfg.linking)
        self._ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self.ready = threading.Event()
        self.pull = self._ctx.socket(zmq.PULL)
        self.pub = self._ctx.socket(zmq.PUB)
        self.rep = self._ctx.socket(zmq.REP)
        for s in (self.pull, self.pub, self.rep):
            s.setsockopt(zmq.LINGER, cfg.linger_ms)
        self.pull.setsockopt(zmq.RCVHWM, cfg.queue)
        self.pull.setsockopt(zmq.MAXMSGSIZE, cfg.max_frame_bytes + wire.MAX_HEADER_BYTES)
        self.rep.setsockopt(zmq.MAXMSGSIZE, wire.MAX_CONTROL_TRANSPORT_BYTES)
        self.pub.setsockopt(zmq.SNDHWM, 1000)  # PUB drops for slow subscribers, never blocks
        self._auth = None
        if cfg.keys is not None:
            from livetrack.wire.security import ServerKeys, secure_server

            self._auth = secure_server(
                self._ctx, ServerKeys.load(cfg.keys), [self.pull, self.pub, self.rep]
            )
        self.endpoints = {
            "frames": self._bind(self.pull, cfg.frames),
            "results": self._bind(self.pub, cfg.results),
            "control": self._bind(self.rep, cfg.control),
        }
        self.control = ControlChannel(self, self.rep, model_loader)
        self.out = ResultsOut(self.pub, self.stats)
        self._last_status: dict[str, Any] | None = None
        self.stream = Stream(
            self.linker, (cfg.camera_offset_adu, cfg.camera_gain_adu_per_e), cfg.invert
        )
        # real-time policy: one frame in the network, at most one waiting (the newest)
        self._worker = NetworkWorker(self._ctx)
        self._waiting: tuple[wire.FrameHeader, NDArray[Any], float] | None = None
        self.metrics: Any = None
        if cfg.metrics_port is not None:
            from livetrack.service.prometheus import MetricsServer

            self.metrics = MetricsServer(
                lambda: self._last_status, cfg.metrics_host, cfg.metrics_port
            )
            self.endpoints["metrics"] = self.metrics.url

    @staticmethod
    def _bind(sock: zmq.Socket[Any], address: str) -> str:
        if address.endswith(":0") or address.endswith(":*"):
            base = address.rsplit(":", 1)[0]
            port = sock.bind_to_random_port(base)
            return f"{base}:{port}"
        sock.bind(address)
        endpoint: str = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return endpoint

    def stop(self) -> None:
        """Ask the loop to finish (thread-safe)."""
        self._stop.set()

    def run(self, duration_s: float | None = None) -> ServiceStats:
        """Serve until stopped (or for ``duration_s``); then close the sockets."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stop())
        poller = zmq.Poller()
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.rep, zmq.POLLIN)
        poller.register(self._worker.signal, zmq.POLLIN)
        next_status = time.monotonic()
        end = time.monotonic() + duration_s if duration_s is not None else None
        self.ready.set()
        try:
            while not self._stop.is_set() and (end is None or time.monotonic() < end):
                events = dict(poller.poll(50))
                if self._worker.signal in events:
                    self._guarded(self._staged_done, self._worker.take())
                if self.pull in events:
                    self._guarded(self._handle_frames)
                if self.rep in events and not self.control.busy:
                    self.control.handle()
                self.control.finish_model_swap()
                if time.monotonic() >= next_status:
                    self._publish_status()
                    next_status = time.monotonic() + self.config.status_interval_s
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        """Close the sockets (bounded linger)."""
        self.control.close()
        self._worker.close()
        for s in (self.pull, self.pub, self.rep):
            if not s.closed:
                s.close(linger=self.config.linger_ms)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None

    def _receive(self) -> list[Any] | None:
        try:
            parts: list[Any] = self.pull.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        return parts

    def _decode(self, parts: list[Any]) -> tuple[wire.FrameHeader, NDArray[Any]] | None:
        """The frame, if it is one to work on; else counted once, as rejected for a reason."""
        self.stats.received += 1
        try:
            header, frame = wire.decode_frame(parts)
            self.stream.accept(header.seq)
            self.out.hold_for_preview(header.seq, frame)
            frame = self.stream.in_model_camera(header, frame, getattr(self.detector, "card", None))
        except wire.ProtocolError as exc:
            self.stats.rejected[exc.reason] += 1
            log.warning("rejected frame: %s", exc)
            return None
        except Exception:  # a bug on one message must not lose it from the accounting
            self.stats.rejected["internal_error"] += 1
            log.exception("internal error while decoding a frame")
            return None
        return header, frame

    def reset_tracks(self) -> list[int]:
        """End every track and forget the last seq (the next frame may have any seq)."""
        return self.stream.reset()

    def follow(self, particle: int) -> int | None:
        """Ask the controller to follow track ``particle``; returns the last seq accepted."""
        if particle not in self.linker.track_ids():
            raise ValueError(f"particle {particle} is not a track now ({self.linker.active} are)")
        self.out.follow = particle
        return self.stream.last_seq

    def _handle_frames(self) -> None:
        t_recv = time.perf_counter()
        parts = self._receive()
        if parts is None:
            return
        item = self._decode(parts)
        if self.policy == "realtime":
            # work on the newest frame only; everything older is skipped (and counted)
            while (more := self._receive()) is not None:
                newer = self._decode(more)
                if newer is not None:
                    if item is not None:
                        self.stats.skipped += 1
                    item = newer
            if item is not None and not self.config.pipeline:
                self._process(*item, t_recv)
            elif item is not None:
                if self._waiting is not None:
                    self.stats.skipped += 1  # a newer frame came while it waited
                self._waiting = (*item, t_recv)
                self._feed()
        else:
            self._drain_pipeline()  # frames taken in real-time mode finish first: order
            # lossless: every frame in order; a backlog is taken as one batch (up to
            # `batch` frames) so the network runs once on the stack
            batch = [(*item, t_recv)] if item is not None else []
            while len(batch) < self.config.batch and (more := self._receive()) is not None:
                nxt = self._decode(more)
                if nxt is not None:
                    batch.append((*nxt, time.perf_counter()))
            self._process_batch(batch)

    def _guarded(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a bug on one frame must not stop the service
            self.stats.rejected["internal_error"] += 1
            log.exception("internal error while processing a frame")

    def _feed(self) -> None:
        """Start the network on the waiting frame if the network is free."""
        if self._waiting is not None and not self._worker.busy:
            self._worker.submit(self._waiting, self.detector)
            self._waiting = None

    def _staged_done(self, done: Staged) -> None:
        """A frame left the network: start the next one, then read this one out."""
        self._feed()  # the next network runs while this frame is read out: overlap
        header, frame, t_recv = done.item
        det = None
        if done.error is None:
            try:
                det = run_readout(done.detector, frame, done.staged, header.seq)
            except Exception as exc:
                done.error = exc
        if det is None:
            self.stats.rejected["detector_error"] += 1
            log.error("detector failed on frame %d: %s", header.seq, done.error)
            return
        self._process(header, frame, t_recv, det, done.t_start)

    def _drain_pipeline(self) -> None:
        """Finish the frame in the network and the waiting one (before lossless work)."""
        done = self._worker.wait()
        if done is not None:
            self._staged_done(done)
            done = self._worker.wait()  # _staged_done started the waiting one
            if done is not None:
                self._staged_done(done)

    def _process_batch(self, batch: list[tuple[wire.FrameHeader, NDArray[Any], float]]) -> None:
        many = getattr(self.detector, "detect_many", None)
        if len(batch) < 2 or many is None:
            for header, frame, t_recv in batch:
                self._process(header, frame, t_recv)
            return
        t0 = time.perf_counter()
        try:
            frames = [frame for _, frame, _ in batch]
            if getattr(self.detector, "indexed", False):  # seq: the PSF-width schedule
                dets = many(frames, indices=[h.seq for h, _, _ in batch])
            else:
                dets = many(frames)
        except Exception as exc:  # fall back to one by one; a bad frame only costs itself
            log.error("batched detection failed (%s); frame by frame", exc)
            for header, frame, t_recv in batch:
                self._process(header, frame, t_recv)
            return
        self.stats.add_latency("batch_size", float(len(batch)))
        for (header, frame, t_recv), det in zip(batch, dets, strict=True):
            self._process(header, frame, t_recv, det, t0)

    def _process(
        self,
        header: wire.FrameHeader,
        frame: NDArray[Any],
        t_recv: float,
        det: Detections | None = None,
        t_start: float | None = None,
    ) -> None:
        """Detect (unless done), link and publish one frame; any failure costs this frame only."""
        try:
            self._detect_link_publish(header, frame, t_recv, det, t_start)
        except Exception:
            self.stats.rejected["internal_error"] += 1
            log.exception("internal error while processing frame %d", header.seq)

    def _detect_link_publish(
        self,
        header: wire.FrameHeader,
        frame: NDArray[Any],
        t_recv: float,
        det: Detections | None,
        t_start: float | None,
    ) -> None:
        st = self.stats
        t0 = time.perf_counter() if t_start is None else t_start
        if det is None:
            try:
                if getattr(self.detector, "indexed", False):
                    det = self.detector.detect(frame, index=header.seq)  # type: ignore[call-arg]
                else:
                    det = self.detector.detect(frame)
            except Exception as exc:  # a detector failure must not stop the service
                st.rejected["detector_error"] += 1
                log.error("detector failed on frame %d: %s", header.seq, exc)
                return
        if self.config.min_score is not None:
            det = det.take(det.score >= self.config.min_score)
        t1 = time.perf_counter()
        # Link in sample coordinates when the frame says where the stage was, so a
        # stage move (a centring controller) does not look like every particle jumping;
        # a frame that does not say keeps the stream's last position.
        ox, oy = self.stream.stage_offset(header) if self.config.stage_compensation else (0.0, 0.0)
        step = self.linker.link(header.seq, det.x + ox, det.y + oy, det.photons)
        t2 = time.perf_counter()
        timings = {"receive": (t0 - t_recv) * 1e3, **det.timings_ms, "link": (t2 - t1) * 1e3}
        self.out.frame(header, det, step, timings, self.stream.take_ended())
        t3 = time.perf_counter()
        st.processed += 1
        for k, v in timings.items():
            st.add_latency(k, v)
        st.add_latency("pack_publish", (t3 - t2) * 1e3)
        st.add_latency("service", (t3 - t_recv) * 1e3)
        st.add_latency("end_to_end", (wire.now_ns() - header.t_acq_ns) / 1e6)
        self.out.preview(header)  # after the frame's results: never delays them

    def _publish_status(self) -> None:
        st = self.status()
        self._last_status = st  # what /metrics serves: a snapshot, no lock on the loop
        self.out.status(st)

    def status(self) -> dict[str, Any]:
        """The status map published once a second and answered on control."""
        path = getattr(self.detector, "path", None)
        return {
            "version": wire.VERSION,
            "t_pub_ns": wire.now_ns(),
            "uptime_s": time.monotonic() - self._started,
            "policy": self.policy,
            "detector": str(path) if path is not None else type(self.detector).__name__,
            "precision": getattr(self.detector, "precision", None),
            "xla": getattr(self.detector, "xla", None),
            "split": getattr(self.detector, "split_z", None) is not None,
            "split_region": list(getattr(self.detector, "split_region", None) or []) or None,
            "active_tracks": self.linker.active,
            "preview_hz": self.out.preview_hz,
            "last_seq": self.stream.last_seq,
            "stream_restarts": self.stream.restarts,
            "linker": vars(self.linker.stats).copy(),
            # full collections stall the loop; counted so a latency tail can be explained
            "gc": {"collections": [g["collections"] for g in gc.get_stats()]},
            **self.stats.snapshot(),
        }
