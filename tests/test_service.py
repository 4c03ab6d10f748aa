"""The service over real ZeroMQ sockets on loopback: random ports, linger 0, timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from livetrack.detection.classical import TrackpyDetector
from livetrack.detection.detector import Detections
from livetrack.service import Service, ServiceConfig
from livetrack.simulation.scenarios import Scenario
from livetrack.wire import protocol as wire
from livetrack.wire.client import (
    ControlClient,
    FramePublisher,
    ResultSubscriber,
    ServiceUnavailableError,
)
from livetrack.wire.security import is_local

LOCAL = "tcp://127.0.0.1:0"


class SlowDetector:
    """A real detector made slow, to build a backlog."""

    def __init__(self, delay_s: float) -> None:
        self.inner = TrackpyDetector()
        self.delay_s = delay_s

    def detect(self, frame: Any, threshold: float | None = None) -> Detections:
        time.sleep(self.delay_s)
        return self.inner.detect(frame)


class Running:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.thread = threading.Thread(target=service.run, daemon=True)
        self.thread.start()
        assert service.ready.wait(10)
        ep = service.endpoints
        self.control = ControlClient(ep["control"], timeout_ms=3000, retries=1)
        self.sub = ResultSubscriber(ep["results"])
        self.pub = FramePublisher(ep["frames"], queue=1000)
        time.sleep(
            0.3
        )  # let SUB and PUSH connect (slow joiner); seq numbers make loss visible anyway

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(5)
        for c in (self.control, self.sub, self.pub):
            c.close()
        assert not self.thread.is_alive()

    def results(self, topic: bytes, n: int, timeout_s: float = 10.0) -> list[wire.Result]:
        out: list[wire.Result] = []
        end = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < end:
            r = self.sub.recv(200)
            if r is not None and r.topic == topic:
                out.append(r)
        return out

    def stats(self) -> dict[str, Any]:
        return self.control.request("stats")["status"]


def start(detector: Any = None, **cfg: Any) -> Running:
    config = ServiceConfig(frames=LOCAL, results=LOCAL, control=LOCAL, **cfg)
    return Running(Service(detector or TrackpyDetector(), config))


@pytest.fixture(scope="module")
def movie() -> tuple[np.ndarray, Any]:
    return Scenario("svc", 40, 7.0, 8, size=128, seed=5).render()


@pytest.fixture
def svc() -> Iterator[Running]:
    r = start(policy="lossless")
    yield r
    r.stop()


def test_round_trip_frames_to_tracks(svc: Running, movie: tuple[np.ndarray, Any]) -> None:
    frames, truth = movie
    for i, f in enumerate(frames):
        assert svc.pub.publish(f, seq=i, pixel_size_um=0.065, stage_um=(1.0, 2.0))
    tracks = svc.results(wire.TOPIC_TRACKS, len(frames))
    assert [r.seq for r in tracks] == list(range(len(frames)))
    from scipy.spatial import cKDTree

    for r in tracks:
        t = truth[truth["frame"] == r.seq]
        assert len(r.columns["particle"]) > 0.5 * len(t)
        d, _ = cKDTree(t[["x", "y"]].to_numpy()).query(
            np.column_stack([r.columns["x"], r.columns["y"]])
        )
        assert np.mean(d < 2.0) > 0.9  # what comes back are the particles of that frame
        assert r.columns["x"].dtype == np.float32
        assert r.t_pub_ns >= r.t_acq_ns
    # ids persist: most particles of frame 0 are still there in frame 1
    assert len(set(tracks[0].columns["particle"]) & set(tracks[1].columns["particle"])) > 0.7 * len(
        tracks[0].columns["particle"]
    )
    st = svc.stats()
    assert st["processed"] == len(frames) == st["received"]
    assert st["published"]["det"] == st["published"]["trk"] == len(frames)
    assert "end_to_end" in st["latency_ms"]
    assert len(st["gc"]["collections"]) == 3  # per generation: a latency tail explained


def test_min_score_drops_a_models_weaker_detections_before_linking(
    movie: tuple[np.ndarray, Any],
) -> None:
    from livetrack.detection.detector import Detector

    frames, _ = movie
    direct = Detector()  # the same model, frame by frame as the service reads them
    scores = [direct.detect(f, index=i).score for i, f in enumerate(frames[:8])]
    cut = float(np.median(np.concatenate(scores)))
    r = start(Detector(), policy="lossless", min_score=cut)
    try:
        for i, f in enumerate(frames[:8]):
            assert r.pub.publish(f, seq=i)
        got: dict[bytes, list[wire.Result]] = {wire.TOPIC_DETECTIONS: [], wire.TOPIC_TRACKS: []}
        end = time.monotonic() + 10.0
        while min(map(len, got.values())) < 8 and time.monotonic() < end:
            m = r.sub.recv(200)
            if m is not None and m.topic in got:
                got[m.topic].append(m)
    finally:
        r.stop()
    det, trk = got[wire.TOPIC_DETECTIONS], got[wire.TOPIC_TRACKS]
    assert [d.seq for d in det] == list(range(8))
    for d, s in zip(det, scores, strict=True):
        assert len(d.columns["score"]) == int((s >= cut).sum())
        assert (d.columns["score"] >= np.float32(cut)).all()
    kept = sum(int((s >= cut).sum()) for s in scores)
    assert sum(len(t.columns["particle"]) for t in trk) == kept  # only those were linked
    from livetrack.service.settings import ServeSettings, build_detector

    with pytest.raises(ValueError, match="not --classical"):  # trackpy has no score to cut
        build_detector(ServeSettings(classical=True, min_score=cut))


def _bad_messages(frame: np.ndarray) -> list[tuple[str, list[bytes]]]:
    good = wire.FrameHeader(seq=0, t_acq_ns=1, shape=frame.shape, dtype="uint16")
    header = good.to_bytes()
    pixels = frame.tobytes()

    def hdr(**change: Any) -> bytes:
        h = msgpack.unpackb(header)
        h.update(change)
        return msgpack.packb(h)

    bomb = b"\x91" * 100000 + b"\x00"  # nesting far deeper than msgpack allows
    return [
        ("wrong_parts", [b"random bytes"]),
        ("wrong_parts", [header, pixels, b"extra"]),
        ("malformed", [b"\xc1\xc1\xc1", pixels]),
        ("malformed", [b"\xdb\xff\xff\xff\xff", pixels]),  # declares a 4 GB string
        ("malformed", [bomb[: wire.MAX_HEADER_BYTES - 1], pixels]),
        ("oversized", [b"\x00" * (wire.MAX_HEADER_BYTES + 1), pixels]),
        ("bad_header", [msgpack.packb([1, 2, 3]), pixels]),
        ("wrong_version", [hdr(version=99), pixels]),
        ("bad_dtype", [hdr(dtype="complex128"), pixels]),
        ("bad_header", [hdr(shape=[0, 5]), pixels]),
        ("bad_header", [hdr(seq=-3), pixels]),
        ("bad_header", [hdr(exposure_ms=float("nan")), pixels]),
        ("size_mismatch", [header, pixels[:-2]]),
        ("size_mismatch", [hdr(shape=[frame.shape[0], frame.shape[1] + 1]), pixels]),
        (
            "non_finite",
            [hdr(dtype="float32", shape=[2, 2]), np.array([1, np.nan, 2, 3], "<f4").tobytes()],
        ),
    ]


def test_every_bad_input_class_is_rejected_and_service_keeps_serving(
    svc: Running, movie: tuple[np.ndarray, Any]
) -> None:
    frames, _ = movie
    frame = frames[0]
    bad = _bad_messages(frame)
    raw = svc.service._ctx.socket(zmq.PUSH)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(svc.service.endpoints["frames"])
    try:
        time.sleep(0.2)
        for i, (_, parts) in enumerate(bad):
            raw.send_multipart(parts)
            assert svc.pub.publish(frame, seq=i)  # interleave a good one
        end = time.monotonic() + 15
        while (st := svc.stats())["received"] < 2 * len(bad) and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        raw.close(0)
    expected: dict[str, int] = {}
    for reason, _ in bad:
        expected[reason] = expected.get(reason, 0) + 1
    assert st["rejected"] == expected
    assert st["received"] == st["processed"] + st["rejected_total"] + st["skipped"]
    assert st["processed"] == len(bad)


@pytest.mark.slow
def test_realtime_skips_under_overload_and_lossless_keeps_everything(
    movie: tuple[np.ndarray, Any],
) -> None:
    frames, _ = movie
    for policy in ("lossless", "realtime"):
        r = start(SlowDetector(0.03), policy=policy)
        try:
            n = 40
            for i in range(n):
                r.pub.publish(frames[i % len(frames)], seq=i)
            got = r.results(wire.TOPIC_TRACKS, n, timeout_s=8 if policy == "lossless" else 3)
            st = r.stats()
            assert st["received"] == n
            assert (
                st["processed"] + st["skipped"] + st["rejected_total"] == n
            )  # nothing unaccounted
            seqs = [x.seq for x in got]
            assert seqs == sorted(seqs)
            if policy == "lossless":
                assert seqs == list(range(n))
                assert st["skipped"] == 0
            else:
                assert st["skipped"] > 0
                assert seqs[-1] == n - 1  # the newest frame is always worked on
        finally:
            r.stop()


def test_policy_switch_and_reset_by_control(svc: Running) -> None:
    assert svc.control.request("set_policy", policy="realtime") == {
        "ok": True,
        "policy": "realtime",
    }
    assert svc.stats()["policy"] == "realtime"
    bad = svc.control.request("set_policy", policy="fastest")
    assert not bad["ok"]
    assert "expected" in bad["error"]
    assert svc.control.request("reset_tracks")["ok"]
    assert not svc.control.request("dance")["ok"]
    # a malformed control message gets an error reply, not a crash
    raw = svc.service._ctx.socket(zmq.REQ)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(svc.service.endpoints["control"])
    raw.send(b"\xc1not msgpack")
    assert raw.poll(3000)
    reply = msgpack.unpackb(raw.recv())
    raw.close(0)
    assert reply["ok"] is False


def test_bad_model_keeps_the_old_one_serving(
    svc: Running, movie: tuple[np.ndarray, Any], tmp_path: Any
) -> None:
    reply = svc.control.request("load_model", path=str(tmp_path / "missing"))
    assert not reply["ok"]
    assert "old one keeps serving" in reply["error"]
    frames, _ = movie
    svc.pub.publish(frames[0], seq=100)
    assert svc.results(wire.TOPIC_TRACKS, 1)


def test_a_model_for_another_modality_is_refused_and_the_old_one_serves(
    svc: Running, movie: tuple[np.ndarray, Any]
) -> None:
    from livetrack.artifact import brightfield_model_dir

    reply = svc.control.request("load_model", timeout_ms=60000, path=str(brightfield_model_dir()))
    assert not reply["ok"]
    assert "modality 'fluorescence' but the model was trained on 'brightfield'" in reply["error"]
    frames, _ = movie
    svc.pub.publish(frames[0], seq=200)
    assert svc.results(wire.TOPIC_TRACKS, 1)


@pytest.mark.slow
def test_hot_swap_to_the_trained_model_without_dropping_the_stream(
    movie: tuple[np.ndarray, Any],
) -> None:
    from livetrack.artifact import default_model_dir

    frames, _ = movie
    r = start(policy="lossless")
    try:
        sent = 0
        done = threading.Event()
        result: dict[str, Any] = {}

        def swap() -> None:
            result.update(
                r.control.request("load_model", timeout_ms=60000, path=str(default_model_dir()))
            )
            done.set()

        # the swap needs its own control socket (REQ/REP is one request at a time)
        ctl = ControlClient(r.service.endpoints["control"], timeout_ms=60000, retries=1)
        r.control, spare = ctl, r.control
        t = threading.Thread(target=swap)
        t.start()
        while not done.is_set() and sent < 400:
            r.pub.publish(frames[sent % len(frames)], seq=sent)
            sent += 1
            time.sleep(0.01)
        t.join(60)
        assert result.get("ok"), result
        for k in range(5):
            r.pub.publish(frames[k], seq=sent + k)
        got = r.results(wire.TOPIC_TRACKS, sent + 5, timeout_s=20)
        assert [g.seq for g in got] == list(range(sent + 5))  # nothing dropped during the swap
        assert "default" in r.stats()["detector"]
        spare.close()
    finally:
        r.stop()


def test_late_and_dead_subscribers_do_not_disturb(
    svc: Running, movie: tuple[np.ndarray, Any]
) -> None:
    frames, _ = movie
    dead = ResultSubscriber(svc.service.endpoints["results"])
    time.sleep(0.2)
    for i in range(3):
        svc.pub.publish(frames[i], seq=i)
    dead.close()  # stops reading, goes away
    end = time.monotonic() + 10
    while svc.stats()["processed"] < 3 and time.monotonic() < end:
        time.sleep(0.05)
    late = ResultSubscriber(svc.service.endpoints["results"], topics=(wire.TOPIC_TRACKS,))
    time.sleep(0.3)
    for i in range(3, 6):
        svc.pub.publish(frames[i], seq=i)
    seen = []
    end = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < end:
        res = late.recv(200)
        if res is not None:
            seen.append(res.seq)
    late.close()
    assert seen == [3, 4, 5]
    assert svc.stats()["processed"] == 6


def test_clients_never_hang_on_a_missing_service(tmp_path: Path) -> None:
    # an address nobody listens on, and nobody else can take (a freed tcp port can be)
    nobody = f"ipc://{tmp_path / 'nobody'}"
    pub = FramePublisher(nobody)
    t0 = time.monotonic()
    assert not pub.publish(np.zeros((8, 8), np.uint16))
    assert pub.stats.dropped == 1
    ctl = ControlClient(nobody, timeout_ms=200, retries=2)
    with pytest.raises(ServiceUnavailableError):
        ctl.request("status")
    assert time.monotonic() - t0 < 10  # 2 × 200 ms timeouts: bounded, never a hang
    pub.close()
    ctl.close()


def test_off_loopback_binding_needs_keys_or_insecure() -> None:
    assert is_local("tcp://127.0.0.1:5555")
    assert is_local("ipc:///tmp/x")
    assert is_local("tcp://localhost:1")
    assert not is_local("tcp://0.0.0.0:5555")
    assert not is_local("tcp://192.168.1.2:5555")
    with pytest.raises(PermissionError, match="insecure"):
        Service(
            TrackpyDetector(), ServiceConfig(frames="tcp://0.0.0.0:0", results=LOCAL, control=LOCAL)
        )


def test_ipc_addresses_work(tmp_path: Any, movie: tuple[np.ndarray, Any]) -> None:
    frames, _ = movie
    cfg = ServiceConfig(
        frames=f"ipc://{tmp_path}/frames",
        results=f"ipc://{tmp_path}/results",
        control=f"ipc://{tmp_path}/control",
    )
    r = Running(Service(TrackpyDetector(), cfg))
    try:
        r.pub.publish(frames[0], seq=0)
        assert r.results(wire.TOPIC_TRACKS, 1)
    finally:
        r.stop()


@pytest.mark.slow
def test_serve_command_shuts_down_cleanly_on_sigterm() -> None:
    ctx = zmq.Context.instance()
    ports = []
    for _ in range(3):
        s = ctx.socket(zmq.PULL)
        ports.append(s.bind_to_random_port("tcp://127.0.0.1"))
        s.close(0)
    exe = os.path.join(os.path.dirname(sys.executable), "livetrack")
    cmd = [
        exe,
        "serve",
        "--classical",
        "--frames",
        f"tcp://127.0.0.1:{ports[0]}",
        "--results",
        f"tcp://127.0.0.1:{ports[1]}",
        "--control",
        f"tcp://127.0.0.1:{ports[2]}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ctl = ControlClient(f"tcp://127.0.0.1:{ports[2]}", timeout_ms=20000, retries=1)
        assert ctl.request("status")["ok"]
        ctl.close()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err


@pytest.mark.slow
def test_lossless_backlog_is_batched_and_kept_in_order(movie: tuple[np.ndarray, Any]) -> None:
    from livetrack.detection.detector import Detector

    frames, _ = movie
    r = start(Detector(), policy="lossless")
    try:
        n = 40
        for i in range(n):  # far faster than the service: a backlog builds
            r.pub.publish(frames[i % len(frames)], seq=i)
        got = r.results(wire.TOPIC_TRACKS, n, timeout_s=30)
        assert [g.seq for g in got] == list(range(n))
        st = r.stats()
        assert st["processed"] == n
        assert st["skipped"] == 0
        assert st["latency_ms"]["batch_size"]["p99"] > 1  # frames went through the network together
    finally:
        r.stop()


def test_prometheus_endpoint_serves_the_accounting(movie: tuple[np.ndarray, Any]) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    r = start(policy="lossless", metrics_port=0, status_interval_s=0.1)
    try:
        frames, _ = movie
        n = len(frames)
        for i, f in enumerate(frames):
            assert r.pub.publish(f, seq=i)
        r.pub.sock.send_multipart([b"not a header", b"x"])  # one rejected, by reason
        assert len(r.results(wire.TOPIC_DETECTIONS, n)) == n
        time.sleep(0.4)  # a status snapshot after the last frame
        body = urllib.request.urlopen(r.service.endpoints["metrics"], timeout=5).read().decode()
    finally:
        r.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
    }
    assert samples[("livetrack_frames_processed_total", ())] == n
    assert samples[("livetrack_frames_received_total", ())] == n + 1
    assert samples[("livetrack_frames_rejected_total", (("reason", "malformed"),))] == 1
    assert samples[("livetrack_published_total", (("topic", "det"),))] == n
    p99 = samples[("livetrack_latency_seconds", (("quantile", "0.99"), ("stage", "end_to_end")))]
    assert 0 < p99 < 60
    assert samples[("livetrack_policy", (("policy", "lossless"),))] == 1


def test_metrics_off_loopback_need_insecure() -> None:
    with pytest.raises(PermissionError, match="not a loopback address"):
        Service(
            TrackpyDetector(),
            ServiceConfig(LOCAL, LOCAL, LOCAL, metrics_host="0.0.0.0", metrics_port=0),
        )


class StagedDetector:
    """A real detector split in two slow stages that record when they ran."""

    def __init__(self, delay_s: float) -> None:
        self.inner = TrackpyDetector()
        self.delay_s = delay_s
        self.network: list[tuple[float, float]] = []
        self.readout: list[tuple[float, float]] = []

    def detect(self, frame: Any, threshold: float | None = None) -> Detections:
        return self.stage_readout(frame, self.stage_network(frame))

    def stage_network(self, frame: Any) -> Detections:
        t0 = time.monotonic()
        time.sleep(self.delay_s)
        det = self.inner.detect(frame)
        self.network.append((t0, time.monotonic()))
        return det

    def stage_readout(self, frame: Any, staged: Detections) -> Detections:
        t0 = time.monotonic()
        time.sleep(self.delay_s)
        self.readout.append((t0, time.monotonic()))
        return staged


def test_realtime_overlaps_the_next_network_with_this_read_out(
    movie: tuple[np.ndarray, Any],
) -> None:
    frames, _ = movie
    det = StagedDetector(0.1)
    det.inner.detect(frames[0])  # trackpy's first call is slow: not part of this test
    r = start(det, policy="realtime")
    try:
        for i, f in enumerate(frames):
            assert r.pub.publish(f, seq=i)
            time.sleep(0.04)
        got = r.results(wire.TOPIC_TRACKS, 3, timeout_s=5)
        end = time.monotonic() + 5  # the last frame may still be in the pipeline
        while (st := r.stats())["processed"] + st["skipped"] < len(frames):
            if time.monotonic() > end:
                break
            time.sleep(0.05)
    finally:
        r.stop()
    seqs = [g.seq for g in got]
    assert len(seqs) >= 3
    assert seqs == sorted(seqs)
    assert st["received"] == len(frames) == st["processed"] + st["skipped"]
    assert st["skipped"] > 0  # 40 ms apart, 100 ms per stage: the newest wins
    # some network ran while an earlier frame was being read out
    overlaps = [
        (n0 < r1 and r0 < n1) for n0, n1 in det.network for r0, r1 in det.readout if n0 > r0
    ]
    assert any(overlaps)


@pytest.mark.slow
def test_a_subscriber_that_stops_reading_never_slows_the_service() -> None:
    """PUB drops for the stalled subscriber only; it sees its losses as gaps in seq."""
    from livetrack.bench._overhead import NormaliseOnly

    frame = np.random.default_rng(0).poisson(100, (64, 64)).astype(np.uint16)
    r = start(NormaliseOnly(500, 64), policy="lossless")  # 8 kB per result
    stalled = ResultSubscriber(r.service.endpoints["results"], topics=(wire.TOPIC_TRACKS,), queue=5)
    try:
        time.sleep(0.3)
        # far beyond the service's queue per subscriber (1000), its own (5) and TCP's
        n = 3000
        for i in range(n):
            while not r.pub.publish(frame, seq=i):  # lossless: every frame goes in
                time.sleep(0.001)
        end = time.monotonic() + 60
        while r.stats()["processed"] < n and time.monotonic() < end:
            time.sleep(0.05)
        assert r.stats()["processed"] == n  # never blocked by the stalled subscriber
        got = []
        while (res := stalled.recv(300)) is not None:
            got.append(res.seq)
        stalled_got = len(got)
        # it reads again: new results arrive, and the gap shows what it lost
        for i in range(n, n + 5):
            while not r.pub.publish(frame, seq=i):
                time.sleep(0.001)
        while (res := stalled.recv(2000)) is not None and res.seq < n + 4:
            got.append(res.seq)
        if res is not None:
            got.append(res.seq)
    finally:
        stalled.close()
        r.stop()
    assert 0 < stalled_got < n
    assert got == sorted(got)
    assert got[-1] == n + 4
    assert stalled.missed.get(wire.TOPIC_TRACKS, 0) > 0  # the losses are visible to it


def test_status_percentiles_equal_numpys() -> None:
    """The one-partition p50/p99 of the status equal ``np.percentile`` (linear)."""
    from livetrack.service._stats import ServiceStats

    rng = np.random.default_rng(8)
    for n in (1, 2, 3, 7, 100, 2000, 2500):  # beyond the window too
        stats = ServiceStats()
        values = rng.lognormal(2.0, 0.5, n)
        for v in values:
            stats.add_latency("model", float(v))
        kept = values[-2000:]
        got = stats.percentiles()["model"]
        assert got["n"] == len(kept)
        assert got["p50"] == pytest.approx(np.percentile(kept, 50), rel=1e-12)
        assert got["p99"] == pytest.approx(np.percentile(kept, 99), rel=1e-12)
