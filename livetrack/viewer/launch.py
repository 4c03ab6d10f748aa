"""``livetrack view``: napari with ``process`` tables opened and, or, a live service."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path


def open_viewer(
    tables: Sequence[str | Path] = (),
    results: str | None = None,
    control: str | None = None,
    screenshot: str | Path | None = None,
    settle_s: float = 2.0,
) -> None:
    """Open napari with each table as Tracks and Points, and the live widget if ``results``.

    ``screenshot``: instead of running napari's event loop, draw for ``settle_s``
    seconds, save the window as this PNG and close (for documentation and tests).
    """
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer()
    for table in tables:
        viewer.open(str(table), plugin="livetrack")
    if results is not None:
        from livetrack.viewer.widget import LiveTrackWidget

        widget = LiveTrackWidget(viewer, results, control or "tcp://127.0.0.1:5557")
        viewer.window.add_dock_widget(widget, name="livetrack")
        widget.connect_service()
    if screenshot is None:
        napari.run()
        return
    end = time.monotonic() + settle_s
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)
    viewer.screenshot(path=str(screenshot), canvas_only=False)
    viewer.close()
