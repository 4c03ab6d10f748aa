"""Command-line options shared by ``serve`` and ``process`` (typer reads the annotations)."""

from typing import Annotated

import typer

SearchRange = Annotated[float, typer.Option(help="Linking search range (px).")]
Memory = Annotated[
    int, typer.Option(help="Frames a track may be missed (one hidden in an encounter).")
]
BrightnessPenalty = Annotated[
    float, typer.Option(help="Weight of a brightness change in the link cost (0: distance only).")
]
Precision = Annotated[
    str,
    typer.Option(
        help="Network arithmetic: auto (on a CPU int8 through ONNX Runtime, else "
        "bfloat16 where native, else float32), float32, bfloat16, int8."
    ),
]
