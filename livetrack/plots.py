"""``livetrack plot``: pictures of a track table people would rather look at than read."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _scales(
    table_path: Path, pixel_size_um: float | None, fps: float | None
) -> tuple[float | None, float | None]:
    """Pixel size and frame rate: given, else from the sidecar JSON of `process`."""
    side = table_path.with_suffix(".json")
    if side.exists() and (pixel_size_um is None or fps is None):
        rec = json.loads(side.read_text())
        pixel_size_um = pixel_size_um or rec.get("pixel_size_um")
        dt = (rec.get("movie") or {}).get("frame_interval_s")
        fps = fps or (1.0 / dt if dt else None)
    return pixel_size_um, fps


def plot_table(
    table_path: str | Path,
    output: str | Path,
    movie: str | None = None,
    pixel_size_um: float | None = None,
    fps: float | None = None,
) -> list[Path]:
    """Write PNGs for a track table; returns their paths.

    ``trajectories.png`` (over the movie's first frame when given),
    ``msd.png`` (ensemble MSD by ``trackpy.emsd`` with a fitted diffusion
    coefficient), ``size_index.png`` (radius vs refractive index, when the table
    has them), ``detections.png`` (detections per frame).
    """
    import matplotlib

    matplotlib.use("Agg")
    from livetrack.offline.tables import read_table

    table_path = Path(table_path)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t = read_table(table_path)
    for col in ("frame", "particle", "x", "y"):
        if col not in t.columns:
            raise KeyError(f"{table_path}: no '{col}' column; not a track table")
    mpp, rate = _scales(table_path, pixel_size_um, fps)
    written = [
        _save(_trajectories(t, movie), out / "trajectories.png"),
        _save(_msd(t, mpp, rate), out / "msd.png"),
    ]
    if {"radius_um", "refractive_index"} <= set(t.columns):
        written.append(_save(_size_index(t), out / "size_index.png"))
    written.append(_save(_detections(t), out / "detections.png"))
    return written


def _trajectories(t: pd.DataFrame, movie: str | None) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 7))
    if movie is not None:
        from livetrack.offline.movies import MovieReader

        r = MovieReader(movie)
        img = r.read(0, 1)[0]
        r.close()
        lo, hi = np.percentile(img, [1, 99.7])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
    for _, g in t.groupby("particle"):
        if len(g) > 1:
            ax.plot(g["x"], g["y"], lw=0.8)
    ax.set_aspect("equal")
    if movie is None:
        ax.invert_yaxis()
    n_tracks = t["particle"].nunique()
    ax.set_title(f"{n_tracks} trajectories, {t['frame'].nunique()} frames")
    return fig


def _msd(t: pd.DataFrame, mpp: float | None, rate: float | None) -> Any:
    import matplotlib.pyplot as plt
    import trackpy

    fig, ax = plt.subplots(figsize=(6, 4.5))
    long = t.groupby("particle").filter(lambda g: len(g) >= 5)
    if len(long):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            em = trackpy.emsd(long, mpp or 1.0, rate or 1.0, max_lagtime=min(100, len(t)))
        lag = em.index.to_numpy(float)
        msd = em.to_numpy(float)
        ok = np.isfinite(msd) & (lag > 0)
        k = max(2, ok.sum() // 4)  # the short lags, where statistics are best
        unit_x, unit_y = ("s" if rate else "frames"), ("µm²" if mpp else "px²")
        ax.loglog(lag[ok], msd[ok], "o", ms=3, label="ensemble MSD")
        if ok.sum() >= 2:
            slope = np.polyfit(lag[ok][:k], msd[ok][:k], 1)
            d = slope[0] / 4.0
            ax.loglog(
                lag[ok],
                np.polyval(slope, lag[ok]),
                "-",
                label=f"fit 4Dt + c: D = {d:.3g} {unit_y}/{unit_x}",
            )
        ax.set_xlabel(f"lag ({unit_x})")
        ax.set_ylabel(f"MSD ({unit_y})")
        ax.legend()
    ax.set_title("ensemble mean squared displacement")
    return fig


def _size_index(t: pd.DataFrame) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    per = t.groupby("particle")[["radius_um", "refractive_index"]].median()
    ax.scatter(per["radius_um"], per["refractive_index"], s=10, alpha=0.7)
    ax.set_xlabel("radius (µm)")
    ax.set_ylabel("refractive index")
    ax.set_title("size and index per particle (median over its track)")
    return fig


def _detections(t: pd.DataFrame) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    counts = t.groupby("frame").size()
    ax.plot(counts.index, counts.to_numpy(), lw=1)
    ax.set_xlabel("frame")
    ax.set_ylabel("detections")
    ax.set_ylim(bottom=0)
    return fig


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path


__all__ = ["pd", "plot_table"]
