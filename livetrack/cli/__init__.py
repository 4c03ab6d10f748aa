"""The ``livetrack`` command line: parses options and calls the library.

The commands live by concern in ``_trainer`` (simulate, train, evaluate), ``_serve``,
``_live`` (acquire, control, demo, soak) and ``_offline`` (process, plot, bench).
No ``from __future__ import annotations`` here: typer reads the annotations.
"""

import sys
from typing import Annotated

import typer

from livetrack import __version__
from livetrack.cli import _live, _offline, _serve, _trainer, _view

app = typer.Typer(
    name="livetrack",
    help="Real-time particle tracking beside the microscope.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"livetrack {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Real-time particle tracking beside the microscope."""


for command in (
    _trainer.simulate,
    _trainer.train,
    _trainer.adapt,
    _trainer.evaluate,
    _trainer.presets,
    _serve.serve,
    _serve.keys,
    _serve.conform,
    _live.acquire,
    _live.control,
    _live.demo,
    _live.soak,
    _offline.process,
    _offline.plot,
    _offline.bench,
    _view.view,
):
    app.command()(command)
app.command("check-config")(_trainer.check_config)


# the extra that brings each optional library (the base install is the light side)
_EXTRA_OF = {
    **dict.fromkeys(
        (
            "tensorflow",
            "keras",
            "onnxruntime",
            "onnx",
            "scipy",
            "numba",
            "pandas",
            "trackpy",
            "tifffile",
            "zarr",
            "ome_types",
            "pyarrow",
            "psfmodels",
        ),
        "track",
    ),
    "pymmcore_plus": "acquire",
    "useq": "acquire",
    "matplotlib": "plot",
    "dask": "dask",
    "distributed": "dask",
    "tables": "hdf5",
    "pylorenzmie": "holography",
    "prometheus_client": "metrics",
}


def main() -> None:
    """Entry point of the ``livetrack`` script."""
    from livetrack.runtime import tune_allocator

    tune_allocator()
    try:
        app()
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"error: this command needs {exc.name}, which this install leaves out: "
            f"pip install 'livetrack[{extra}]' (or 'livetrack[all]')",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
