"""The frame preview on the wire (``prv``) and click-to-follow (``follow``), end to end.

A real service on loopback; a real controller subscribed to its results, sending
stage commands to a PULL socket of the test's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from livetrack.acquisition import ControllerConfig, FeedbackController
from livetrack.acquisition.actuation import RemoteActuator
from livetrack.acquisition.session import run_control_loop
from livetrack.simulation.scenarios import Scenario
from livetrack.wire import protocol as wire
from livetrack.wire.client import ResultSubscriber
from livetrack.wire.schema import errors
from tests.test_service import Running, start

PIXEL_UM = 0.1


@pytest.fixture(scope="module")
def movie() -> tuple[np.ndarray, Any]:
    return Scenario("prv", 10, 6.0, 120, size=128, step_px=1.0, seed=11).render()


@pytest.fixture
def svc() -> Iterator[Running]:
    r = start(policy="lossless")
    yield r
    r.stop()


def _collect(sub: ResultSubscriber, last_seq: int, quiet_s: float = 0.5) -> list[wire.Result]:
    """Results until the trk of ``last_seq`` (at most 20 s), then ``quiet_s`` more."""
    out: list[wire.Result] = []
    end = time.monotonic() + 20.0
    while time.monotonic() < end:
        r = sub.recv(100)
        if r is not None:
            out.append(r)
            if r.topic == wire.TOPIC_TRACKS and r.seq == last_seq:
                end = time.monotonic() + quiet_s
    return out


def test_the_preview_is_off_until_asked_and_shows_the_frame_its_results_belong_to(
    svc: Running, movie: tuple[np.ndarray, Any]
) -> None:
    frames, _ = movie
    everything = ResultSubscriber(svc.service.endpoints["results"], topics=(b"",))
    time.sleep(0.3)
    for i in range(10):
        svc.pub.publish(frames[i], seq=i)
    got = _collect(everything, 9)
    assert len([r for r in got if r.topic == wire.TOPIC_TRACKS]) == 10
    assert not [r for r in got if r.topic == wire.TOPIC_PREVIEW]  # off by default

    reply = svc.control.request("set_preview", hz=20)
    assert reply == {"ok": True, "hz": 20.0, "max_side": 1024}
    assert not errors("control_reply", reply)
    t0 = time.monotonic()
    for i in range(10, 110):  # 100 frames at ~200 frames/s
        svc.pub.publish(frames[i], seq=i)
        time.sleep(0.005)
    got = _collect(everything, 109)
    seconds = time.monotonic() - t0
    previews = [r for r in got if r.topic == wire.TOPIC_PREVIEW]
    assert 3 <= len(previews) <= 20 * seconds + 1  # throttled to the rate asked for
    order = [(r.topic, r.seq) for r in got]
    for p in previews:
        # its picture is the frame as sent, and its results came out before it
        assert np.array_equal(wire.preview_image(p), frames[p.seq])
        assert order.index((wire.TOPIC_TRACKS, p.seq)) < order.index((wire.TOPIC_PREVIEW, p.seq))
        assert p.fields["step"] == 1
    raw = svc.service._ctx.socket(zmq.SUB)  # the body as a peer in another language sees it
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_PREVIEW)
    raw.connect(svc.service.endpoints["results"])
    time.sleep(0.3)
    svc.pub.publish(frames[109] + 1, seq=200)  # after a long gap: a preview is due
    assert raw.poll(10_000)
    topic, body = raw.recv_multipart()
    assert topic == wire.TOPIC_PREVIEW
    assert not errors("prv_body", msgpack.unpackb(body))
    raw.close(0)
    # the default subscriber (the result topics) never sees a preview
    assert not [r for r in svc.results(wire.TOPIC_PREVIEW, 1, 0.5)]

    # subsampled so the longest side is at most max_side; off again with 0
    assert svc.control.request("set_preview", hz=60, max_side=50)["ok"]
    svc.pub.publish(frames[110], seq=210)
    got = _collect(everything, 210)
    p = next(r for r in got if r.topic == wire.TOPIC_PREVIEW and r.seq == 210)
    assert p.fields["step"] == 3
    assert np.array_equal(wire.preview_image(p), frames[110][::3, ::3])
    assert svc.stats()["preview_hz"] == 60.0
    assert svc.control.request("set_preview", hz=0)["ok"]
    svc.pub.publish(frames[111], seq=211)
    assert not [r for r in _collect(everything, 211) if r.topic == wire.TOPIC_PREVIEW]
    everything.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({}, "hz None"),
        ({"hz": 61}, "0-60"),
        ({"hz": True}, "hz True"),
        ({"hz": float("nan")}, "hz nan"),
        ({"hz": 10, "max_side": 8}, "max_side 8"),
        ({"hz": 10, "max_side": 64.0}, "max_side 64.0"),
    ],
)
def test_a_bad_preview_request_is_refused_with_what_was_expected(
    svc: Running, args: dict[str, Any], says: str
) -> None:
    reply = svc.control.request("set_preview", **args)
    assert reply["ok"] is False
    assert reply["reason"] == "bad_control"
    assert says in reply["error"]
    assert svc.stats()["preview_hz"] == 0.0


def test_follow_refuses_what_is_not_a_track_now(svc: Running) -> None:
    for particle, says in [(5, "not a track now"), (-1, "track id"), ("3", "track id")]:
        reply = svc.control.request("follow", particle=particle)
        assert reply["ok"] is False, reply
        assert reply["reason"] == "bad_control"
        assert says in reply["error"]


def test_click_to_follow_changes_the_controllers_target_within_two_frames(
    svc: Running, movie: tuple[np.ndarray, Any]
) -> None:
    frames, _ = movie
    ctx: zmq.Context[Any] = zmq.Context.instance()
    stage_cmds = ctx.socket(zmq.PULL)  # where the acquisition would take the commands
    stage_cmds.setsockopt(zmq.LINGER, 0)
    port = stage_cmds.bind_to_random_port("tcp://127.0.0.1")
    actuator = RemoteActuator(f"tcp://127.0.0.1:{port}")
    cfg = ControllerConfig(mode="centre", identity_by_brightness=False, timeout_s=5.0)
    ctl = FeedbackController(cfg, actuator, PIXEL_UM, frames.shape[1:])
    stop = threading.Event()
    loop = threading.Thread(
        target=run_control_loop,
        args=(ctl, svc.service.endpoints["results"]),
        kwargs={"should_stop": stop.is_set},
        daemon=True,
    )
    loop.start()
    tracks = ResultSubscriber(svc.service.endpoints["results"], topics=(wire.TOPIC_TRACKS,))
    time.sleep(0.4)
    by_seq: dict[int, wire.Result] = {}

    def send(seqs: range) -> None:
        for i in seqs:
            svc.pub.publish(frames[i], seq=i, stage_um=(0.0, 0.0), pixel_size_um=PIXEL_UM)
            time.sleep(0.02)  # 50 frames/s
        while (r := tracks.recv(300)) is not None:
            by_seq[r.seq] = r

    send(range(30))
    first = ctl.followed
    assert first is not None
    last = by_seq[max(by_seq)]
    ids = last.columns["particle"]
    chosen = int(next(i for i in ids if i != first))  # another particle, as a click would
    reply = svc.control.request("follow", particle=chosen)
    assert reply["ok"]
    assert reply["particle"] == chosen
    after = reply["after_seq"]
    send(range(30, 60))
    stop.set()
    loop.join(5)
    assert ctl.followed == chosen
    switched, particle = ctl.stats.follow_requests[-1]
    assert particle == chosen
    assert switched - after <= 2
    assert by_seq[switched].fields["follow"] == chosen  # on the wire, once
    assert sum("follow" in r.fields for r in by_seq.values()) == 1
    # the stage goals from that frame on centre the chosen particle, not the first one
    goals = {}
    while stage_cmds.poll(100):
        m = msgpack.unpackb(stage_cmds.recv())
        goals[m["seq"]] = np.array([m["x_um"], m["y_um"]])
    target = (np.array(frames.shape[:0:-1]) - 1) / 2.0
    for seq in range(switched, 60):
        if seq in goals and seq in by_seq:
            r = by_seq[seq]
            row = np.flatnonzero(r.columns["particle"] == chosen)
            if len(row):
                xy = np.array([r.columns["x"][row[0]], r.columns["y"][row[0]]])
                assert np.allclose(goals[seq], (xy - target) * PIXEL_UM, atol=1e-4)
    assert any(s >= switched for s in goals)
    tracks.close()
    actuator.close()
    stage_cmds.close(0)
