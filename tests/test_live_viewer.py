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


# napari in its own process (as a user runs it; see test_viewer.py)
_LIVE = """
import json, sys, time
import napari
from qtpy.QtWidgets import QApplication
from livetrack.viewer.widget import LiveTrackWidget
viewer = napari.Viewer()
widget = LiveTrackWidget(viewer, sys.argv[1], sys.argv[2])
viewer.window.add_dock_widget(widget, name="livetrack")
widget.connect_service()
print("ready", flush=True)
end = time.monotonic() + 40
while time.monotonic() < end and widget.view._seq < int(sys.argv[3]) - 1:
    QApplication.processEvents()
    time.sleep(0.005)
for _ in range(20):  # the last frame drawn
    QApplication.processEvents()
    time.sleep(0.01)
widget.draw()
widget._request("reset_tracks")
shot = viewer.screenshot(path=sys.argv[4], canvas_only=False)
print(json.dumps({
    "seq": widget.view._seq,
    "draws": widget.draws,
    "points": widget.points_layer.data.tolist(),
    "ids": widget.points_layer.features["particle"].tolist(),
    "track_ids": sorted(set(widget.tracks_layer.data[:, 0].astype(int).tolist())),
    "status": widget.status.text(),
    "reply": widget.reply.text(),
    "policy": widget.policy.currentText(),
    "tensorflow": "tensorflow" in sys.modules,
}), flush=True)
widget.disconnect_service()
viewer.close()
"""


@pytest.mark.gui
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="no display (install Xvfb)")
def test_the_napari_widget_draws_a_live_service(
    served: tuple[dict[str, str], np.ndarray], tmp_path: Any
) -> None:
    pytest.importorskip("napari")
    ep, frames = served
    sub = ResultSubscriber(ep["results"], topics=(wire.TOPIC_TRACKS,))
    shot = tmp_path / "live.png"
    args = [ep["results"], ep["control"], str(len(frames)), str(shot)]
    gui = subprocess.Popen([sys.executable, "-c", _LIVE, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert gui.stdout is not None
    assert gui.stdout.readline().strip() == "ready"
    time.sleep(0.5)  # the widget's subscription reaches the service
    _publish(ep["frames"], frames)
    last = None
    end = time.monotonic() + 20
    while time.monotonic() < end:
        r = sub.recv(200)
        if r is not None:
            last = r
            if r.seq == len(frames) - 1:
                break
    out, err = gui.communicate(timeout=60)
    sub.close()
    assert gui.returncode == 0, err[-3000:]
    seen = json.loads(out.strip().splitlines()[-1])
    assert last is not None
    assert seen["seq"] == len(frames) - 1
    np.testing.assert_allclose(np.array(seen["points"])[:, 1], last.columns["x"], atol=1e-4)
    assert seen["ids"] == last.columns["particle"].tolist()
    assert set(seen["ids"]) <= set(seen["track_ids"])
    assert 1 <= seen["draws"] <= len(frames) + 5
    assert "processed" in seen["status"]
    assert seen["reply"] == "reset_tracks: ok"
    assert seen["policy"] == "lossless"  # the service's, shown
    assert not seen["tensorflow"]
    assert shot.stat().st_size > 10_000
