"""The live viewer: a real service's results drawn in napari, never slowing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from livetrack.detection.classical import TrackpyDetector
from livetrack.service import Service, ServiceConfig
from livetrack.viewer.layers import NOW
from livetrack.viewer.live import LiveView, status_line
from livetrack.wire import protocol as wire
from livetrack.wire.client import ControlClient, FramePublisher, ResultSubscriber

from .conftest import small


@pytest.fixture
def served(beads: Any) -> Iterator[tuple[dict[str, str], np.ndarray]]:
    """``livetrack serve``'s loop (trackpy's locate: no model to load) and a movie for it."""
    from livetrack.simulation import simulate_movie

    frames = simulate_movie(small(beads, 128, 128, number=10), 60, seed=4).frames
    service = Service(
        TrackpyDetector(7, 50.0),
        ServiceConfig(
            frames="tcp://127.0.0.1:0",
            results="tcp://127.0.0.1:0",
            control="tcp://127.0.0.1:0",
            policy="lossless",
        ),
    )
    th = threading.Thread(target=service.run, daemon=True)
    th.start()
    assert service.ready.wait(30)
    yield service.endpoints, frames
    ctl = ControlClient(service.endpoints["control"], timeout_ms=2000)
    ctl.request("shutdown")
    ctl.close()
    th.join(10)


def _publish(address: str, frames: np.ndarray, fps: float = 60.0) -> None:
    pub = FramePublisher(address, queue=1000)
    time.sleep(0.3)
    for i, f in enumerate(frames):
        assert pub.publish(f, seq=i)
        time.sleep(1 / fps)
    pub.close()


def test_the_view_keeps_the_newest_frame_and_bounded_tails(
    served: tuple[dict[str, str], np.ndarray],
) -> None:
    ep, frames = served
    sub = ResultSubscriber(ep["results"])
    view = LiveView(tail_frames=10)
    sender = threading.Thread(target=_publish, args=(ep["frames"], frames))
    sender.start()
    last: dict[int, wire.Result] = {}
    statuses = 0
    end = time.monotonic() + 30
    while (len(last) < len(frames) or statuses < 3) and time.monotonic() < end:
        r = sub.recv(200)
        if r is None:
            continue
        view.feed(r)
        if r.topic == wire.TOPIC_TRACKS:
            last[r.seq] = r
        statuses += r.topic == wire.TOPIC_STATUS
    sender.join()
    sub.close()
    snap = view.snapshot()
    assert snap is not None
    assert snap.seq == len(frames) - 1
    newest = last[snap.seq].columns
    np.testing.assert_allclose(snap.points[:, 1], newest["x"])
    np.testing.assert_allclose(snap.points[:, 0], newest["y"])
    np.testing.assert_array_equal(snap.point_ids, newest["particle"])
    assert set(np.unique(snap.tracks[:, 1])) <= set(range(len(frames) - 10, len(frames)))
    assert snap.undrawn == len(frames) - 1  # all but the newest went undrawn: latest wins
    assert snap.status["processed"] == len(frames)
    assert snap.status["fps"] >= 0
    assert "processed 60" in status_line(snap.status, snap.undrawn)
    assert view.snapshot() is None  # nothing new: nothing to draw


# napari in its own process (as a user runs it; see test_viewer.py); it clicks on a
# particle a third of the way in, as a user would (a mouse click through Qt)
_LIVE = """
import json, sys, time
import numpy as np
import napari
from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication
from livetrack.viewer.widget import LiveTrackWidget
viewer = napari.Viewer()
widget = LiveTrackWidget(viewer, sys.argv[1], sys.argv[2])
viewer.window.add_dock_widget(widget, name="livetrack")
widget.connect_service()
print("ready", flush=True)
n = int(sys.argv[3])
clicked = None
end = time.monotonic() + 60
while time.monotonic() < end and widget.view._seq < n - 1:
    QApplication.processEvents()
    time.sleep(0.005)
    last = widget.layers._last
    if clicked is None and last is not None and last.seq >= n // 3 and (last.point_ids >= 0).any():
        k = int(np.flatnonzero(last.point_ids >= 0)[-1])
        y, x = last.points[k] + 0.7  # a real click, through Qt, near the particle
        canvas = viewer.window._qt_viewer.canvas
        cx, cy = canvas.view.scene.transform.map([x, y])[:2]
        QTest.mouseClick(canvas.native, Qt.MouseButton.LeftButton,
                         Qt.KeyboardModifier.NoModifier, QPoint(round(cx), round(cy)))
        for _ in range(5):
            QApplication.processEvents()
        clicked = {"id": int(last.point_ids[k]), "seq": int(last.seq), "reply": widget.reply.text()}
for _ in range(50):  # the last pictures drawn
    QApplication.processEvents()
    time.sleep(0.01)
rates = [widget._request("status")["status"]["preview_hz"]]
widget.preview_hz.setValue(12)  # the panel's pictures a second reach the service
rates.append(widget._request("status")["status"]["preview_hz"])
widget._request("reset_tracks")
shot = viewer.screenshot(path=sys.argv[4], canvas_only=False)
drawn = widget.layers._last
frame = viewer.layers["livetrack frame"]
points = widget.layers.points
print(json.dumps({
    "seq": widget.view._seq,
    "drawn_seq": drawn.seq,
    "draws": widget.draws,
    "images": widget.layers.images_drawn,
    "frame_sum": int(frame.data.astype(np.int64).sum()),
    "frame_scale": list(frame.scale),
    "points": points.data[points.shown].tolist(),
    "ids": points.features["particle"][points.shown].tolist(),
    "hidden_ids": sorted(set(points.features["particle"][~points.shown])),
    "tracks": widget.layers.tracks.data.tolist(),
    "tracks_seq": widget.layers.tracks_seq,
    "followed_layer": widget.layers.followed.data.tolist(),
    "clicked": clicked,
    "status": widget.status.text(),
    "reply": widget.reply.text(),
    "policy": widget.policy.currentText(),
    "preview_rates": rates,
    "tensorflow": "tensorflow" in sys.modules,
}), flush=True)
widget.disconnect_service()
viewer.close()
"""


@pytest.mark.gui
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="no display (install Xvfb)")
def test_the_napari_widget_draws_a_live_service_and_a_click_steers_the_controller(
    served: tuple[dict[str, str], np.ndarray], tmp_path: Any
) -> None:
    pytest.importorskip("napari")
    from livetrack.acquisition import ControllerConfig, FeedbackController
    from livetrack.acquisition.actuation import RemoteActuator
    from livetrack.acquisition.session import run_control_loop
    from livetrack.wire.client import free_loopback_addresses

    ep, frames = served
    frames = np.concatenate([frames, frames[::-1]])  # 120 frames, 4 s at 30 frames/s
    actuator = RemoteActuator(free_loopback_addresses(1)[0])  # mode none: never used
    ctl = FeedbackController(
        ControllerConfig(mode="none", identity_by_brightness=False, timeout_s=30.0),
        actuator,
        0.1,
        frames.shape[1:],
    )
    stop = threading.Event()
    loop = threading.Thread(
        target=run_control_loop, args=(ctl, ep["results"]), kwargs={"should_stop": stop.is_set}
    )
    loop.start()
    sub = ResultSubscriber(ep["results"], topics=(wire.TOPIC_TRACKS,))
    shot = tmp_path / "live.png"
    args = [ep["results"], ep["control"], str(len(frames)), str(shot)]
    gui = subprocess.Popen([sys.executable, "-c", _LIVE, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert gui.stdout is not None
    assert gui.stdout.readline().strip() == "ready"
    time.sleep(0.5)  # the widget's subscription reaches the service
    _publish(ep["frames"], frames, fps=30.0)
    trk: dict[int, wire.Result] = {}
    end = time.monotonic() + 20
    while time.monotonic() < end and len(frames) - 1 not in trk:
        r = sub.recv(200)
        if r is not None:
            trk[r.seq] = r
    out, err = gui.communicate(timeout=90)
    stop.set()
    loop.join(5)
    sub.close()
    actuator.close()
    assert gui.returncode == 0, err[-3000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["seq"] == len(frames) - 1
    # the picture drawn is the frame as sent, and the points over it were found in it
    drawn = trk[seen["drawn_seq"]].columns
    assert seen["frame_sum"] == int(frames[seen["drawn_seq"]].astype(np.int64).sum())
    assert seen["frame_scale"] == [1.0, 1.0]
    np.testing.assert_allclose(np.array(seen["points"])[:, 1], drawn["x"], atol=1e-4)
    assert seen["ids"] == drawn["particle"].tolist()
    assert seen["hidden_ids"] in ([], [-1])  # rows kept from other frames are nobody's
    # every tail point is a published track position: id, frame, x and y
    tails = np.array(seen["tracks"])
    assert len(tails) > 0
    tails[:, 1] += seen["tracks_seq"] - NOW  # the layer's time is relative to a drawn frame
    for pid, seq, y, x in tails:
        t = trk[int(seq)].columns
        row = np.flatnonzero(t["particle"] == int(pid))
        assert len(row) == 1
        assert (t["x"][row[0]], t["y"][row[0]]) == pytest.approx((x, y), abs=1e-4)
    assert 20 <= seen["images"] <= seen["draws"] <= len(frames) + 5
    # the click reached the controller, which followed that particle within 2 frames
    clicked = seen["clicked"]
    assert clicked is not None
    assert clicked["reply"] == "follow: ok"
    (switched, particle), *_ = ctl.stats.follow_requests
    assert particle == clicked["id"]
    assert trk[switched].fields["follow"] == clicked["id"]
    # within 2 frames of the request (the click's frame was drawn up to 2 pictures late)
    assert 0 <= switched - clicked["seq"] <= 2 + 6
    assert "following" in seen["status"]
    assert seen["reply"] == "reset_tracks: ok"
    assert seen["policy"] == "lossless"  # the service's, shown
    assert seen["preview_rates"] == [60.0, 12.0]
    assert not seen["tensorflow"]
    assert shot.stat().st_size > 10_000


#: the start of a script that drives the live layers in napari, in its own process
_HEADLESS = """
import json, os, tempfile
os.environ["NAPARI_CONFIG"] = os.path.join(tempfile.mkdtemp(), "settings.yaml")
import numpy as np, napari
from livetrack.viewer.layers import NOW, LiveLayers
from livetrack.viewer.live import Snapshot
viewer = napari.Viewer(show=False)
layers = LiveLayers(viewer)
"""


def _headless(script: str) -> Any:
    """What a script after :data:`_HEADLESS` printed last (JSON)."""
    run = subprocess.run(
        [sys.executable, "-c", _HEADLESS + script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


_QUIET = """
seen = []
viewer.layers.events.connect(lambda e: seen.append(e.type))
rng = np.random.default_rng(0)
frames = [rng.integers(0, 4000, (64, 64)).astype(np.uint16) for _ in range(4)]
layers.draw_image(frames[0], 1)  # made, then written in place
layers.draw_image(frames[1], 1)  # the first thumbnail is due
due = len(seen)
seen.clear()
layers.draw_image(frames[2], 1)  # within a second of it: no thumbnail
quiet = len(seen)
drawn = bool((viewer.layers["livetrack frame"].data == frames[2]).all())
layers._thumbnails_at.clear()
layers.draw_image(frames[3], 1)
print(json.dumps({"due": due, "quiet": quiet, "after": len(seen), "drawn": drawn}))
viewer.close()
"""


@pytest.mark.gui
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="no display (install Xvfb)")
def test_a_picture_reaches_its_layer_without_repainting_the_layer_list() -> None:
    pytest.importorskip("napari")
    seen = _headless(_QUIET)
    assert seen["drawn"]  # the new picture is in the layer
    assert seen["quiet"] == 0  # the list (and its view) heard nothing of it
    assert seen["due"] > 0  # once a second it does: the thumbnail
    assert seen["after"] > 0


_SPAN = """
rng = np.random.default_rng(0)
ranged = []
viewer.dims.events.range.connect(lambda e: ranged.append(e.type))

def draw(seq, frames, short=0):  # 5 particles anywhere in 60², the last `short` frames unseen
    rows = np.array([[i, t, *rng.uniform(0, 60, 2)] for i in range(5)
                     for t in range(seq - frames + 1, seq + 1 - short)])
    layers._tracks_at = -np.inf  # a rebuild is due
    layers.draw(Snapshot(seq, np.zeros((0, 2)), np.zeros(0, int), rows, {}, 0), 30, None)
    rows[:, 1] += NOW - seq
    return bool(np.allclose(layers.tracks.data, rows))

def holds():
    return viewer.dims.range[0].start <= NOW <= viewer.dims.range[0].stop

first = draw(10, 4, short=2)  # tails ending before the drawn frame: NOW out of range
before = holds()
ranged.clear()
reached = draw(11, 4)
after_reaching = len(ranged)
ranged.clear()
moved = draw(12, 4)  # every particle elsewhere, NOW in range
longer = draw(13, 6)
print(json.dumps({"before": before, "reaching": after_reaching, "holds": holds(),
                  "same": len(ranged), "point": float(viewer.dims.point[0]),
                  "drawn": [first, reached, moved, longer]}))
viewer.close()
"""


@pytest.mark.gui
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="no display (install Xvfb)")
def test_tails_are_drawn_without_ranging_the_axes_again_while_now_is_in_range() -> None:
    pytest.importorskip("napari")
    seen = _headless(_SPAN)
    assert seen["drawn"] == [True] * 4  # every rebuild reached the Tracks layer
    assert not seen["before"]
    assert seen["reaching"] > 0  # ranged anew to hold NOW
    assert seen["holds"]
    assert seen["same"] == 0  # moved and longer tails are not ranged again
    assert seen["point"] == NOW


_ROWS = """
rng = np.random.default_rng(1)
ranged = []
viewer.dims.events.range.connect(lambda e: ranged.append(e.type))
out = []
for seq, n in enumerate([20, 24, 17, 0, 21, 40, 38]):
    pts, ids = rng.uniform(0, 60, (n, 2)), rng.permutation(1000)[:n]
    layers.draw(Snapshot(seq, pts, ids, np.zeros((0, 4)), {}, 0), 30, None)
    p = layers.points
    shown = p.shown
    out.append({
        "rows": len(p.data), "same": bool(np.array_equal(p.data[shown], pts)),
        "ids": bool(np.array_equal(p.features["particle"][shown], ids)),
        "hidden": sorted(set(p.features["particle"][~shown].tolist())),
        "viewed": int((p._view_size > 0).sum()), "ranged": len(ranged),
        "seen_borders": p._view_border_color[:, 3].tolist(),
    })
    ranged.clear()
print(json.dumps(out))
viewer.close()
"""


@pytest.mark.gui
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="no display (install Xvfb)")
def test_the_detections_layer_shows_each_frames_points_in_rows_it_keeps() -> None:
    pytest.importorskip("napari")
    seen = _headless(_ROWS)
    counts = [20, 24, 17, 0, 21, 40, 38]
    assert all(s["same"] and s["ids"] for s in seen)  # the shown rows are the frame's
    assert [s["viewed"] for s in seen] == counts  # and only they are drawn
    assert [sum(s["seen_borders"]) for s in seen] == counts  # the others leave no dot
    assert all(s["hidden"] in ([], [-1]) for s in seen)
    # rows made once (20), again for 24 (with room to spare) and 40; never for fewer
    rows = [s["rows"] for s in seen]
    assert rows[0] == 20
    assert rows[1] > 24
    assert rows[2:5] == [rows[1]] * 3
    assert rows[5] > 40
    assert rows[6] == rows[5]
    assert [s["ranged"] for s in seen][2:5] == [0, 0, 0]  # moved in place: no new ranges
