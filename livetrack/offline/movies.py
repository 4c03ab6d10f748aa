"""Recorded movies, read frame-chunk by frame-chunk (bounded memory).

TIFF / OME-TIFF / Micro-Manager / ImageJ TIFF (memory-mapped when the file allows,
else page by page), Zarr / OME-Zarr, and image sequences (a glob of TIFF or PNG
files). Pixel size and frame interval are taken from the metadata when present.
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


class MovieError(ValueError):
    """A movie that cannot be read, with the reason."""


@dataclass(frozen=True, slots=True)
class MovieInfo:
    """What a movie is: frames, frame shape, pixel type, and its scales when known."""

    path: str
    n_frames: int
    shape: tuple[int, int]
    dtype: str
    pixel_size_um: float | None
    frame_interval_s: float | None
    format: str


def _tiff_scales(tif: Any) -> tuple[float | None, float | None]:
    """(pixel size µm, frame interval s) from OME, Micro-Manager or ImageJ metadata."""
    if tif.is_ome and tif.ome_metadata:
        from ome_types import from_xml

        try:
            pix = from_xml(tif.ome_metadata).images[0].pixels
            dt = pix.time_increment
            unit = str(getattr(pix, "time_increment_unit", "s")).split(".")[-1].lower()
            scale = {"ms": 1e-3, "millisecond": 1e-3, "µs": 1e-6}.get(unit, 1.0)
            return (
                float(pix.physical_size_x) if pix.physical_size_x else None,
                float(dt) * scale if dt else None,
            )
        except Exception:  # malformed OME (ome_types raises many types): the other sources
            pass
    mm = tif.micromanager_metadata
    if mm:
        s = mm.get("Summary", {})
        size = s.get("PixelSize_um")
        dt = s.get("Interval_ms")
        return (float(size) if size else None, float(dt) / 1e3 if dt else None)
    ij = tif.imagej_metadata
    if ij:
        dt = ij.get("finterval")
        px: float | None = None
        tags = tif.pages[0].tags
        if ij.get("unit") in ("micron", "um", "µm") and "XResolution" in tags:
            num, den = tags["XResolution"].value
            px = den / num if num else None
        return (px, float(dt) if dt else None)
    return (None, None)


class MovieReader:
    """A movie opened for streaming.

    Parameters
    ----------
    source
        A TIFF / OME-TIFF file, a Zarr / OME-Zarr store, or a glob of image files.
    """

    def __init__(self, source: str | Path) -> None:
        self.source = str(source)
        self._files: list[str] = []
        self._array: Any = None
        self._tif: Any = None
        p = Path(self.source)
        if any(c in self.source for c in "*?["):
            self._open_glob()
        elif not p.exists():
            raise MovieError(f"{p}: no such file or folder")
        elif (
            p.suffix.lower() in (".zarr",)
            or (p.is_dir() and (p / ".zattrs").exists())
            or (p.is_dir() and (p / "zarr.json").exists())
        ):
            self._open_zarr(p)
        elif p.suffix.lower() in (".tif", ".tiff", ".btf"):
            self._open_tiff(p)
        else:
            raise MovieError(
                f"{p}: unknown movie format; expected .tif/.ome.tif, .zarr, or a glob of images"
            )

    # -- openers -------------------------------------------------------------------

    def _open_tiff(self, p: Path) -> None:
        import tifffile

        try:
            tif = tifffile.TiffFile(p)
        except Exception as exc:
            raise MovieError(f"{p}: not a readable TIFF: {exc}") from None
        series = tif.series[0]
        shape = series.shape
        if len(shape) < 2:
            raise MovieError(f"{p}: a {len(shape)}-D image is not a movie")
        try:  # uncompressed, contiguous: read through the page cache, no copy
            self._array = tifffile.memmap(p, mode="r")
            self.format = "tiff (memory-mapped)"
        except Exception:
            self._array = None
            self._tif = tif
            self.format = "tiff"
        frames = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        px, dt = _tiff_scales(tif)
        self.info = MovieInfo(
            str(p), frames, (shape[-2], shape[-1]), str(series.dtype), px, dt, self.format
        )
        if self._array is not None:
            self._array = self._array.reshape(frames, shape[-2], shape[-1])
            tif.close()

    def _open_zarr(self, p: Path) -> None:
        import zarr

        try:
            node: Any = zarr.open(str(p), mode="r")
        except Exception as exc:
            raise MovieError(f"{p}: not a readable Zarr store: {exc}") from None
        px = None
        arr: Any
        if hasattr(node, "shape"):
            arr = node
        else:  # an OME-Zarr group: the full-resolution level of the first multiscale
            attrs: dict[str, Any] = dict(node.attrs)
            ms: Any = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
            if not ms:
                raise MovieError(f"{p}: a Zarr group without 'multiscales' (OME-Zarr) metadata")
            ds = ms[0]["datasets"][0]
            arr = node[ds["path"]]
            for t in ds.get("coordinateTransformations", []):
                if t.get("type") == "scale":
                    px = float(t["scale"][-1])
        if arr.ndim < 3:
            raise MovieError(f"{p}: a {arr.ndim}-D array is not a movie")
        index = (slice(None),) + (0,) * (arr.ndim - 3)  # (t, [c, z,] y, x): first c and z
        self._array = _ZarrFrames(arr, index)
        self.format = "zarr"
        self.info = MovieInfo(
            str(p),
            int(arr.shape[0]),
            (arr.shape[-2], arr.shape[-1]),
            str(arr.dtype),
            px,
            None,
            "zarr",
        )

    def _open_glob(self) -> None:
        files = sorted(globlib.glob(self.source))
        if not files:
            raise MovieError(f"{self.source}: no file matches")
        self._files = files
        first = _read_image(files[0])
        self.format = "image sequence"
        self.info = MovieInfo(
            self.source, len(files), first.shape, str(first.dtype), None, None, self.format
        )

    # -- reading ---------------------------------------------------------------------

    def read(self, start: int, stop: int) -> NDArray[Any]:
        """Frames ``start`` to ``stop`` (exclusive) as an array (T, H, W)."""
        stop = min(stop, self.info.n_frames)
        if self._files:
            return np.stack([_read_image(f) for f in self._files[start:stop]])
        if self._array is not None:
            return np.asarray(self._array[start:stop])
        out: NDArray[Any] = self._tif.asarray(key=range(start, stop))
        return out.reshape(stop - start, *self.info.shape)

    def chunks(self, size: int) -> Iterator[tuple[int, NDArray[Any]]]:
        """(first frame index, frames) in chunks of ``size`` frames."""
        for start in range(0, self.info.n_frames, size):
            yield start, self.read(start, start + size)

    def close(self) -> None:
        """Release the file."""
        if self._tif is not None:
            self._tif.close()


class _ZarrFrames:
    def __init__(self, arr: Any, index: tuple[Any, ...]) -> None:
        self.arr = arr
        self.index = index

    def __getitem__(self, t: slice) -> NDArray[Any]:
        return np.asarray(self.arr[(t, *self.index[1:])])


def _read_image(path: str) -> NDArray[Any]:
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        a: NDArray[Any] = tifffile.imread(path)
    else:
        from PIL import Image

        a = np.asarray(Image.open(path))
    if a.ndim == 3:  # colour: the mean of the channels
        a = a[..., :3].mean(axis=-1).astype(np.float32)
    if a.ndim != 2:
        raise MovieError(f"{path}: expected a 2-D image, got shape {a.shape}")
    return a
