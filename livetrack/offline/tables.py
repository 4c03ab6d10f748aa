"""The tables ``process`` writes: trackpy-compatible rows, by extension, and the JSON sidecar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

TABLE_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".h5": "hdf5", ".hdf5": "hdf5"}


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write by extension: .parquet, .csv, .h5/.hdf5 (key ``tracks``)."""
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(
            f"{path}: unknown table format {path.suffix!r}; use one of {sorted(TABLE_SUFFIXES)}"
        )
    tmp = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "parquet":
            table.to_parquet(tmp, index=False)
        elif kind == "csv":
            table.to_csv(tmp, index=False)
        else:
            try:
                table.to_hdf(tmp, key="tracks", mode="w", format="table")
            except ImportError:
                raise ValueError("writing HDF5 needs PyTables: pip install tables") from None
        tmp.replace(path)  # a complete file or none: never a truncated table
    except OSError as exc:
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp.is_file():
            tmp.unlink()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`."""
    p = Path(path)
    kind = TABLE_SUFFIXES.get(p.suffix.lower())
    if kind == "parquet":
        return pd.read_parquet(p)
    if kind == "csv":
        return pd.read_csv(p)
    if kind == "hdf5":
        out = pd.read_hdf(p, key="tracks")
        assert isinstance(out, pd.DataFrame)
        return out
    raise ValueError(f"{p}: unknown table format {p.suffix!r}")


def write_sidecar(path: Path, record: dict[str, Any]) -> None:
    """The JSON record next to a table: model, config, versions, timing."""
    path.write_text(json.dumps(record, indent=2, default=str))
