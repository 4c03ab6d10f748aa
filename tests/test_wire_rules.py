"""The protocol's rules, as docs/protocol.md states them: seqs, header types, control shapes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from livetrack.simulation.scenarios import Scenario
from livetrack.wire import protocol as wire

from .test_service import Running, start

GOOD = {
    "version": 1,
    "seq": 1,
    "t_acq_ns": 5,
    "shape": [4, 4],
    "dtype": "uint16",
}


def header(**change: Any) -> bytes:
    return msgpack.packb({**GOOD, **change})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (header(version=1.0), "wrong_version"),
        (header(version=True), "wrong_version"),
        (header(version=2), "wrong_version"),
        (header(stage_um=[1.0]), "bad_header"),
        (header(stage_um=[1.0, 2.0, 3.0, 4.0]), "bad_header"),
        (header(meta={"a": [1.0, math.nan]}), "bad_header"),
        (header(meta={"a": {"b": math.inf}}), "bad_header"),
        (header(seq=2**63), "bad_header"),
        (header(seq=-1), "bad_header"),
        (header(seq=1.0), "bad_header"),
        (header(pixel_size_um=0.0), "bad_header"),
        (header(exposure_ms=-1.0), "bad_header"),
        (header() + b"\x00", "malformed"),  # trailing bytes
        (b"\x86" + header()[1:] + msgpack.packb("seq") + msgpack.packb(9), "malformed"),
    ],
)
def test_headers_are_type_strict(raw: bytes, reason: str) -> None:
    with pytest.raises(wire.ProtocolError) as err:
        wire.decode_header(raw)
    assert err.value.reason == reason


def test_a_duplicate_key_is_refused_not_last_wins() -> None:
    # a map of 6 entries whose last repeats 'seq'
    raw = b"\x86" + msgpack.packb(GOOD)[1:] + msgpack.packb("seq") + msgpack.packb(9)
    with pytest.raises(wire.ProtocolError, match="duplicate key 'seq'") as err:
        wire.decode_header(raw)
    assert err.value.reason == "malformed"


def test_the_good_header_and_its_optional_fields_pass() -> None:
    h = wire.decode_header(header(stage_um=[1, 2], pixel_size_um=0.1, meta={"a": [1.5]}))
    assert h.stage_um == (1.0, 2.0)
    assert h.pixel_size_um == 0.1


@pytest.fixture
def svc() -> Iterator[Running]:
    r = start(policy="lossless")
    yield r
    r.stop()


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    f, _ = Scenario("rules", 12, 7.0, 6, size=96, seed=2).render()
    return f


def accounted(st: dict[str, Any]) -> bool:
    return st["received"] == st["processed"] + st["skipped"] + st["rejected_total"]


def settle(svc: Running, received: int) -> dict[str, Any]:
    for _ in range(100):
        st = svc.stats()
        if st["received"] >= received and accounted(st):
            return st
        zmq.select([], [], [], 0.05)
    return svc.stats()


def test_a_repeated_or_decreasing_seq_is_rejected_once_and_never_published(
    svc: Running, frames: np.ndarray
) -> None:
    seqs = [5, 6, 6, 4, 7]
    for s in seqs:
        svc.pub.publish(frames[s % len(frames)], seq=s)
    st = settle(svc, len(seqs))
    assert st["rejected"] == {"seq_order": 2}
    assert st["processed"] == 3
    assert accounted(st)
    dets = svc.results(wire.TOPIC_DETECTIONS, 3)
    assert [r.seq for r in dets] == [5, 6, 7]
    assert svc.results(wire.TOPIC_DETECTIONS, 1, timeout_s=0.5) == []  # none for 6 or 4 again


def test_seq_zero_is_a_restarted_sender_and_ends_every_track(
    svc: Running, frames: np.ndarray
) -> None:
    for s in (10, 11):
        svc.pub.publish(frames[s % len(frames)], seq=s)
    before = svc.results(wire.TOPIC_TRACKS, 2)
    ids = set(before[-1].columns["particle"].tolist())
    for s in (0, 1):
        svc.pub.publish(frames[s], seq=s)
    st = settle(svc, 4)
    assert st["processed"] == 4
    assert st["stream_restarts"] == 1
    assert accounted(st)
    events = [r for r in svc.results(wire.TOPIC_EVENTS, 4, timeout_s=3) if r.seq == 0]
    assert ids <= set(events[0].fields["ended"])  # every old track ended at the restart


def test_reset_tracks_lets_the_stream_start_again_at_any_seq(
    svc: Running, frames: np.ndarray
) -> None:
    svc.pub.publish(frames[0], seq=20)
    settle(svc, 1)
    assert svc.control.request("reset_tracks")["ok"]
    svc.pub.publish(frames[1], seq=3)
    st = settle(svc, 2)
    assert st["processed"] == 2
    assert st["rejected_total"] == 0


def test_frames_without_a_stage_keep_the_last_one(svc: Running, frames: np.ndarray) -> None:
    f = frames[0]
    for s in range(6):  # still spots; the stage stated on every other frame only
        stage = {"stage_um": (50.0, 20.0), "pixel_size_um": 0.1} if s % 2 == 0 else {}
        svc.pub.publish(f, seq=s, **stage)
    tracks = svc.results(wire.TOPIC_TRACKS, 6)
    assert len(tracks) == 6
    ids = [sorted(r.columns["particle"].tolist()) for r in tracks]
    assert all(i == ids[0] for i in ids)  # no track ended: the same ids throughout


def raw_request(svc: Running, parts: list[bytes]) -> dict[str, Any]:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.connect(svc.service.endpoints["control"])
    try:
        sock.send_multipart(parts)
        reply: dict[str, Any] = msgpack.unpackb(sock.recv(), raw=False)
        return reply
    finally:
        sock.close(0)


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ([msgpack.packb({"cmd": "status"}), b"extra"], "wrong_parts"),
        ([msgpack.packb({"cmd": "status", "pad": b"x" * 100_000})], "oversized"),
        ([b"\xc1"], "malformed"),
        ([msgpack.packb(["status"])], "bad_control"),
        ([msgpack.packb({"cmd": "fly"})], "unknown_command"),
        ([msgpack.packb({"cmd": "set_policy", "policy": "fast"})], "bad_control"),
    ],
)
def test_any_bad_control_request_gets_an_error_reply_and_the_service_serves_on(
    svc: Running, parts: list[bytes], reason: str
) -> None:
    reply = raw_request(svc, parts)
    assert reply["ok"] is False
    assert reply["reason"] == reason
    st = svc.stats()  # alive
    assert st["control_rejected"] == {reason: 1}


def test_detections_carry_their_timings_in_ms(svc: Running, frames: np.ndarray) -> None:
    svc.pub.publish(frames[0], seq=1)
    (det,) = svc.results(wire.TOPIC_DETECTIONS, 1)
    assert {"receive", "link"} <= set(det.fields["timings_ms"])
    assert "timings" not in det.fields


def test_every_message_the_service_and_client_send_fits_the_schema(
    svc: Running, frames: np.ndarray
) -> None:
    from livetrack.wire.schema import errors

    # what the Python client puts on the wire
    h = wire.FrameHeader(1, 5, (96, 96), "uint16", 0.065, 10.0, (1.0, 2.0), "cam", {"a": 1})
    assert errors("frame_header", msgpack.unpackb(h.to_bytes())) == []
    for s in range(3):
        svc.pub.publish(frames[s], seq=s, pixel_size_um=0.065, stage_um=(1.0, 2.0))
    seen: dict[bytes, list[Any]] = {}
    for _ in range(60):
        topic, body = svc.sub.sock.recv_multipart()
        seen.setdefault(topic, []).append(msgpack.unpackb(body, raw=False))
        if {b"det", b"trk", b"evt", b"sta"} <= set(seen):
            break
    names = {b"det": "det_body", b"trk": "trk_body", b"evt": "evt_body", b"sta": "sta_body"}
    for topic, bodies in seen.items():
        for body in bodies:
            assert errors(names[topic], body) == [], topic
    for request in ({"cmd": "status"}, {"cmd": "reset_tracks"}, {"cmd": "nope"}):
        assert errors("control_request", request) == [] or request["cmd"] == "nope"
        reply = raw_request(svc, [msgpack.packb(request)])
        assert errors("control_reply", reply) == [], reply
    # and the schema can fail: a float version, a NaN stage, a missing column
    assert errors("frame_header", {**GOOD, "version": 1.0})
    assert errors("frame_header", {**GOOD, "stage_um": [math.nan, 1.0]})
    bad = dict(seen[b"trk"][0])
    bad["columns"] = {k: v for k, v in bad["columns"].items() if k != "photons"}
    assert errors("trk_body", bad)


def test_a_frame_that_states_its_camera_is_seen_in_the_models_camera(beads: Any) -> None:
    from livetrack.detection import Detector
    from livetrack.simulation import simulate_movie

    from .conftest import small

    det = Detector(split=False)
    e = det.card.expects
    cam = beads.camera.model_copy(
        update={"offset_adu": e.camera_offset_adu, "gain_adu_per_e": e.camera_gain_adu_per_e}
    )
    cfg = small(beads, 128, 128, number=12).model_copy(update={"camera": cam})
    f = simulate_movie(cfg, 1, seed=4).frames[0].astype(np.int64)
    electrons = f - e.camera_offset_adu
    # the same exposure from two other cameras: offset -100 (int16), and 10 000 at 2x gain
    other = {
        "int16 at -100 ADU": ((electrons - 100).astype(np.int16), -100.0, e.camera_gain_adu_per_e),
        "uint16 at 10 000 ADU, 2x gain": (
            (electrons * 2 + 10_000).astype(np.uint16), 10_000.0, 2 * e.camera_gain_adu_per_e,
        ),
    }  # fmt: skip
    r = start(det, policy="lossless")
    try:
        r.pub.publish(f.astype(np.uint16), seq=0)
        (ref,) = r.results(wire.TOPIC_DETECTIONS, 1)
        seq = 1
        for frame, offset, gain in other.values():
            r.pub.publish(frame, seq=seq, camera_offset_adu=offset, camera_gain_adu_per_e=gain)
            r.pub.publish(frame, seq=seq + 1)  # the same frame, its camera unstated
            stated, unstated = r.results(wire.TOPIC_DETECTIONS, 2)
            seq += 2
            assert len(stated.columns["x"]) == len(ref.columns["x"]) >= 10
            for k in ("x", "y"):
                np.testing.assert_allclose(stated.columns[k], ref.columns[k], atol=0.05)
            np.testing.assert_allclose(stated.columns["photons"], ref.columns["photons"], rtol=0.02)
            assert len(unstated.columns["x"]) != len(ref.columns["x"]) or not np.allclose(
                unstated.columns["photons"], ref.columns["photons"], rtol=0.02
            )
    finally:
        r.stop()
