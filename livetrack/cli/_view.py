"""``livetrack view``: parse, then call :func:`livetrack.viewer.launch.open_viewer`."""

from pathlib import Path
from typing import Annotated

import typer

from livetrack.cli._options import fail


def view(
    tables: Annotated[
        list[Path] | None, typer.Argument(help="Tables written by `livetrack process`.")
    ] = None,
    results: Annotated[
        str | None, typer.Option("--results", help="A running service's results address (live).")
    ] = None,
    control: Annotated[
        str | None, typer.Option("--control", help="Its control address (reset, policy).")
    ] = None,
    frames: Annotated[
        str | None,
        typer.Option("--frames", help="Its frames address (to publish a Micro-Manager core)."),
    ] = None,
    screenshot: Annotated[
        Path | None, typer.Option(help="Save the window as this PNG and close (no event loop).")
    ] = None,
) -> None:
    """Open napari: tables as tracks over their movie, and, or, a live service's results."""
    for t in tables or []:
        if not t.is_file():
            raise fail(f"{t}: no such table")
    try:
        from livetrack.viewer.launch import open_viewer
    except ImportError:
        raise fail("`livetrack view` needs napari: pip install 'livetrack[napari]'") from None
    open_viewer(tables or [], results, control, screenshot, frames=frames)
