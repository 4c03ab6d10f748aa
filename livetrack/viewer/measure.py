"""``python -m livetrack.viewer.measure RESULTS CONTROL SECONDS``: the live widget, timed.

Opens napari with the live widget connected to a running service (its preview on,
as a user sees it), lets napari's own event loop run for ``SECONDS``, and prints one
JSON line: pictures drawn per second, draws, what was left undrawn, and the cost of a
draw. ``livetrack bench --only viewer`` runs it as the viewer process (napari is
another process beside the service, as in use). Needs a display (Xvfb works).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np


def measure(results: str, control: str, seconds: float, warm_up_s: float = 1.0) -> dict[str, Any]:
    """Run the widget for ``warm_up_s`` + ``seconds``; count over the last ``seconds``."""
    import napari
    from qtpy.QtCore import QTimer

    from livetrack.viewer.widget import LiveTrackWidget

    viewer = napari.Viewer()
    widget = LiveTrackWidget(viewer, results, control)
    viewer.window.add_dock_widget(widget, name="livetrack")
    widget.connect_service()
    start: dict[str, Any] = {}

    def begin() -> None:
        start.update(t=time.monotonic(), images=widget.layers.images_drawn, draws=widget.draws)
        widget.draw_ms.clear()

    out: dict[str, Any] = {"viewer": "napari"}

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
        )
        viewer.close()

    QTimer.singleShot(int(warm_up_s * 1e3), begin)
    QTimer.singleShot(int((warm_up_s + seconds) * 1e3), finish)
    print("ready", flush=True)
    napari.run()
    return out


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2], float(sys.argv[3]))), flush=True)
