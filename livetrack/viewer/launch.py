"""``livetrack view``: napari with ``process`` tables opened and, or, a live service."""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def open_viewer(
    tables: Sequence[str | Path] = (),
    results: str | None = None,
    control: str | None = None,
    screenshot: str | Path | None = None,
    settle_s: float = 2.0,
    frames: str | None = None,
) -> None:
    """Open napari with each table as Tracks and Points, and the live widget if ``results``.

    ``screenshot``: instead of running napari's event loop, draw for ``settle_s``
    seconds, save the window as this PNG and close (for documentation and tests).
    ``frames``: the service's frames address (for publishing a Micro-Manager core).
    SIGTERM closes the window (``livetrack demo --view`` ends it that way).
    """
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer()
    for table in tables:
        viewer.open(str(table), plugin="livetrack")
    widget: Any = None
    if results is not None:
        from livetrack.viewer.widget import LiveTrackWidget

        widget = LiveTrackWidget(
            viewer, results, control or "tcp://127.0.0.1:5557", frames or "tcp://127.0.0.1:5555"
        )
        viewer.window.add_dock_widget(widget, name="livetrack")
        widget.connect_service()
        print(f"livetrack view: connected to {results}", flush=True)
    said = False

    def say_counts() -> None:
        nonlocal said
        if widget is not None and not said:
            said = True
            print(
                f"livetrack view: {widget.layers.images_drawn} pictures, {widget.draws} draws",
                flush=True,
            )

    def on_sigterm(*_: Any) -> None:
        say_counts()  # first: a slow or failing teardown must not lose them
        viewer.close()

    if screenshot is None:
        signal.signal(signal.SIGTERM, on_sigterm)
        napari.run()
    else:
        end = time.monotonic() + settle_s
        while time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.01)
        viewer.screenshot(path=str(screenshot), canvas_only=False)
        viewer.close()
    say_counts()
