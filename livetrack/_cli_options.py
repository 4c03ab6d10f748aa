"""Command-line options shared by ``serve`` and ``process`` (typer reads the annotations)."""

from typing import Annotated

import typer

SearchRange = Annotated[float, typer.Option(help="Linking search range (px).")]
Memory = Annotated[int, typer.Option(help="Frames a track may be missed.")]
BrightnessPenalty = Annotated[
    float, typer.Option(help="Weight of a brightness change in the link cost (0: distance only).")
]
