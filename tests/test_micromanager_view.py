"""Micro-Manager in napari: napari-micromanager drives the simulated microscope (a real
UniMMCore with Python devices), one click in the livetrack widget publishes its frames
to a real service, and the results are drawn over napari-micromanager's own layer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from livetrack.detection.classical import TrackpyDetector
from tests.test_service import Running, start

pytest.importorskip("napari_micromanager")

_MM = """
import json, sys, time
import napari, useq
from qtpy.QtWidgets import QApplication
from napari_micromanager import MainWindow
from livetrack.acquisition.setup import open_core
from livetrack.viewer.widget import LiveTrackWidget

def pump(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.005)

core, _, _ = open_core("demo", seed=1, interval_ms=40)
viewer = napari.Viewer()
viewer.window.add_dock_widget(MainWindow(viewer, mmcore=core), name="Micro-Manager")
widget = LiveTrackWidget(viewer, *sys.argv[1:4])
viewer.window.add_dock_widget(widget, name="livetrack")
widget.connect_service()
widget.mm_button.click()  # the one click
pump(0.5)
core.startContinuousSequenceAcquisition(0)  # napari-micromanager's Live button
pump(3.0)
core.stopSequenceAcquisition()
pump(1.0)
live = widget.mm.counts()
preview = viewer.layers["preview"]
points = widget.layers.points
out = {
    "linked_core": widget.mm.core is core,
    "live": [live.acquired, live.sent, live.dropped],
    "preview_shape": list(preview.data.shape),
    "preview_scale": list(preview.scale),
    "points_scale": list(points.scale),
    "points": int(points.shown.sum()),
    "draws": widget.draws,
    "reply": widget.reply.text(),
}
core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 6}))
pump(1.0)
mda = widget.mm.counts()
out["mda_sent"] = mda.sent - live.sent
widget.link_micromanager(False)
widget.disconnect_service()
print(json.dumps(out), flush=True)
viewer.close()
"""


@pytest.fixture
def served() -> Iterator[Running]:
    running = start(TrackpyDetector(9, 200.0), policy="lossless")
    yield running
    running.stop()


@pytest.mark.gui
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="no display (install Xvfb)")
def test_one_click_sends_a_micromanager_core_to_the_service_and_draws_on_its_layer(
    served: Running,
) -> None:
    ep = served.service.endpoints
    args = [ep["results"], ep["control"], ep["frames"]]
    gui = subprocess.run(
        [sys.executable, "-c", _MM, *args], capture_output=True, text=True, timeout=120
    )
    assert gui.returncode == 0, gui.stderr[-3000:]
    seen: dict[str, Any] = json.loads(gui.stdout.strip().splitlines()[-1])
    assert seen["linked_core"]  # napari-micromanager's own core, found in the viewer
    acquired, sent, dropped = seen["live"]
    assert sent >= 30  # 3 s of live mode at 25 frames/s
    assert acquired == sent + dropped
    assert seen["mda_sent"] == 6  # every MDA frame
    # every frame sent reached the service and was processed
    time.sleep(0.5)  # the last frames in flight
    status = served.stats()
    assert status["received"] == status["processed"] == sent + 6
    assert seen["preview_shape"] == [512, 512]  # its layer, fed with the frames sent
    # the results sit on that layer: the same µm per pixel
    assert seen["points_scale"] == seen["preview_scale"]
    assert seen["preview_scale"][0] == pytest.approx(0.1, rel=0.5)
    assert seen["points"] > 5
    assert seen["draws"] > 10
    assert seen["reply"].startswith("publishing napari-micromanager")
