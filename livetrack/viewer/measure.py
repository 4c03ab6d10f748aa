"""``python -m livetrack.viewer.measure RESULTS CONTROL SECONDS [HZ]``: the live widget, timed.

Opens napari with the live widget connected to a running service (its preview on,
as a user sees it, at ``HZ`` pictures a second or the widget's default), lets
napari's own event loop run for ``SECONDS``, and prints one JSON line: pictures drawn
per second, draws, what was left undrawn, the cost of a draw, the canvas, the window
and the zoom, and the CPU napari used. ``livetrack bench --only viewer`` runs it as
the viewer process (napari is another process beside the service, as in use). Needs
a display (Xvfb works).

The canvas is fixed at :data:`CANVAS_PX` square and a 512² frame drawn at 1:1: in
software OpenGL a paint costs in proportion to the window's pixels, so a measurement
in napari's saved window size would depend on whoever last resized it. napari's
settings go to a temporary file, never the user's.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

#: the canvas's side in screen pixels
CANVAS_PX = 560


def _size_canvas(viewer: Any, side: int) -> None:
    """Fix the canvas at ``side`` × ``side`` screen pixels (the window is laid out around it)."""
    from qtpy.QtWidgets import QApplication

    viewer.window._qt_viewer.canvas.native.setFixedSize(side, side)
    QApplication.processEvents()


def measure(
    results: str, control: str, seconds: float, hz: int | None = None, warm_up_s: float = 1.0
) -> dict[str, Any]:
    """Run the widget for ``warm_up_s`` + ``seconds``; count over the last ``seconds``."""
    with tempfile.TemporaryDirectory() as settings:
        os.environ["NAPARI_CONFIG"] = os.path.join(settings, "settings.yaml")
        return _measure(results, control, seconds, hz, warm_up_s)


def _measure(
    results: str, control: str, seconds: float, hz: int | None, warm_up_s: float
) -> dict[str, Any]:
    import napari
    from qtpy.QtCore import QTimer

    from livetrack.viewer.widget import LiveTrackWidget

    viewer = napari.Viewer()
    widget = LiveTrackWidget(viewer, results, control)
    viewer.window.add_dock_widget(widget, name="livetrack")
    _size_canvas(viewer, CANVAS_PX)
    if hz is not None:
        widget.preview_hz.setValue(hz)
    widget.connect_service()
    start: dict[str, Any] = {}

    def begin() -> None:
        viewer.camera.zoom = 1.0  # a frame pixel on a screen pixel
        start.update(t=time.monotonic(), images=widget.layers.images_drawn, draws=widget.draws)
        start.update(cpu=sum(os.times()[:2]))
        widget.draw_ms.clear()

    out: dict[str, Any] = {"viewer": "napari", "preview_hz": widget.preview_hz.value()}

    def finish() -> None:
        elapsed = time.monotonic() - start["t"]
        widget.disconnect_service()
        ms = np.asarray(widget.draw_ms, float)
        out.update(
            images_per_s=(widget.layers.images_drawn - start["images"]) / elapsed,
            draws_per_s=(widget.draws - start["draws"]) / elapsed,
            pictures_received=widget.view.images,
            pictures_undrawn=widget.view.images_undrawn,
            draw_p50_ms=float(np.percentile(ms, 50)) if len(ms) else None,
            draw_p99_ms=float(np.percentile(ms, 99)) if len(ms) else None,
            canvas_px=list(viewer.canvas.size[::-1]),
            window_px=list(viewer.window.geometry()[2:]),
            zoom=float(viewer.camera.zoom),  # screen pixels per frame pixel
            viewer_cores=(sum(os.times()[:2]) - start["cpu"]) / elapsed,
        )
        viewer.close()

    QTimer.singleShot(int(warm_up_s * 1e3), begin)
    QTimer.singleShot(int((warm_up_s + seconds) * 1e3), finish)
    print("ready", flush=True)
    napari.run()
    return out


if __name__ == "__main__":
    hz = int(sys.argv[4]) if len(sys.argv) > 4 else None
    print(json.dumps(measure(sys.argv[1], sys.argv[2], float(sys.argv[3]), hz)), flush=True)
