"""Recorded movies, read frame-chunk by frame-chunk (bounded memory).

TIFF / OME-TIFF / Micro-Manager / ImageJ TIFF (memory-mapped when the file allows,
else page by page), Zarr / OME-Zarr, image sequences (a glob of TIFF or PNG files),
and videos through OpenCV where it is installed (:mod:`livetrack.offline.video`).
Pixel size and frame interval are taken from the metadata when present.
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: what is read as a video, through OpenCV (anything else it may decode is not tried)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".wmv")


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


def _layout(
    where: str, shape: tuple[int, ...], axes: str, channel: int | None
) -> tuple[tuple[Any, ...], tuple[int, ...]]:
    """How to read frames from an array with these axes: (index, frame axes' sizes).

    ``axes`` names each dimension (tifffile's letters: Y, X the image, C and S channels,
    anything else a frame axis). A channel axis longer than 1 needs ``channel``;
    without it, or with a layout that is not frames of 2-D images, :class:`MovieError`
    names the shape found and what is expected.
    """
    found = f"shape {tuple(shape)} (axes {axes})"
    if "Y" not in axes or "X" not in axes:
        raise MovieError(f"{where}: {found}: no image axes Y and X")
    if "Z" in axes and shape[axes.index("Z")] > 1:
        raise MovieError(f"{where}: {found}: a z-stack per frame; expected one plane per frame")
    chans = [i for i, a in enumerate(axes) if a in "CS" and shape[i] > 1]
    if len(chans) > 1:
        raise MovieError(f"{where}: {found}: two channel axes; expected at most one")
    n = shape[chans[0]] if chans else 1
    if chans and channel is None:
        raise MovieError(
            f"{where}: {found}: each frame has {n} channels; choose one with "
            f"--channel N (0 to {n - 1})"
        )
    if channel is not None and not 0 <= channel < n:
        raise MovieError(f"{where}: --channel {channel}: the movie has {n} channel(s), {found}")
    index: list[Any] = []
    lead: list[int] = []
    for i, a in enumerate(axes):
        if a in "CS":
            index.append(channel if i in chans else 0)
        else:
            index.append(slice(None))
            if a not in "YX":
                lead.append(shape[i])
    kept = [a for i, a in enumerate(axes) if a not in "CS"]
    if kept[-2:] != ["Y", "X"]:
        raise MovieError(f"{where}: {found}: expected frames of Y × X images")
    return tuple(index), tuple(lead)


class _Frames:
    """Frames ``k`` of an array (numpy memmap or zarr) with a layout from :func:`_layout`."""

    def __init__(self, arr: Any, index: tuple[Any, ...], lead: tuple[int, ...]) -> None:
        self.arr, self.index, self.lead = arr, index, lead
        self.n = int(np.prod(lead)) if lead else 1
        # the index's slices before the image's two walk the frame axes
        self._walk = [i for i, s in enumerate(index) if isinstance(s, slice)][:-2]

    def frame(self, k: int) -> NDArray[Any]:
        """Frame ``k`` (frame axes flattened in C order)."""
        idx = list(self.index)
        for i, v in zip(self._walk, np.unravel_index(k, self.lead), strict=True):
            idx[i] = int(v)
        return np.asarray(self.arr[tuple(idx)])

    def read(self, start: int, stop: int) -> NDArray[Any]:
        """Frames ``start`` to ``stop`` (exclusive), (T, H, W)."""
        if len(self._walk) == 1:  # one frame axis: one slice, read at once
            idx = list(self.index)
            idx[self._walk[0]] = slice(start, stop)
            return np.asarray(self.arr[tuple(idx)])
        return np.stack([self.frame(k) for k in range(start, stop)])


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
    channel
        Which channel of a multichannel or colour movie to read; a movie with several
        and none chosen is refused, naming its shape.
    """

    def __init__(self, source: str | Path, channel: int | None = None) -> None:
        self.source = str(source)
        self.channel = channel
        self._files: list[str] = []
        self._frames: _Frames | None = None
        self._tif: Any = None
        self._store: Any = None
        self._video: Any = None
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
        elif p.suffix.lower() in VIDEO_SUFFIXES:
            self._open_video(p)
        else:
            raise MovieError(
                f"{p}: unknown movie format; expected .tif/.ome.tif, .zarr, a video "
                f"({', '.join(VIDEO_SUFFIXES)}) or a glob of images"
            )

    # -- openers -------------------------------------------------------------------

    def _open_tiff(self, p: Path) -> None:
        import tifffile

        try:
            tif = tifffile.TiffFile(p)
            series = tif.series[0]
        except Exception as exc:
            raise MovieError(f"{p}: not a readable TIFF: {exc}") from None
        shape, axes = tuple(series.shape), str(series.axes)
        if len(shape) < 2:
            raise MovieError(f"{p}: a {len(shape)}-D image is not a movie")
        try:
            index, lead = _layout(str(p), shape, axes, self.channel)
            px, dt = _tiff_scales(tif)
            try:  # uncompressed, contiguous: read through the page cache, no copy
                arr: Any = tifffile.memmap(p, mode="r").reshape(shape)
                self.format = "tiff (memory-mapped)"
            except Exception:  # compressed or scattered: pages on demand, through zarr
                import zarr

                self._store = tif.aszarr()
                arr = zarr.open(self._store, mode="r")
                self.format = "tiff"
        except MovieError:
            tif.close()
            raise
        if self._store is None:  # memory-mapped: the file handle is not needed
            tif.close()
        else:  # pages on demand: the store reads through it until close()
            self._tif = tif
        self._frames = _Frames(arr, index, lead)
        self.info = MovieInfo(
            str(p), self._frames.n, (shape[axes.index("Y")], shape[axes.index("X")]),
            str(series.dtype), px, dt, self.format,
        )  # fmt: skip

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
        shape = tuple(int(v) for v in arr.shape)
        axes = _ome_axes(node, arr.ndim) or ("T" + "Q" * (arr.ndim - 3) + "YX")
        if "Q" in axes and any(v > 1 for v in shape[1:-2]):
            raise MovieError(
                f"{p}: shape {shape} without OME axes metadata: expected (frames, rows, "
                "columns), or axes in the store's 'multiscales' metadata"
            )
        index, lead = _layout(str(p), shape, axes, self.channel)
        self._frames = _Frames(arr, index, lead)
        self.format = "zarr"
        self.info = MovieInfo(
            str(p), self._frames.n, (shape[axes.index("Y")], shape[axes.index("X")]),
            str(arr.dtype), px, None, "zarr",
        )  # fmt: skip

    def _open_video(self, p: Path) -> None:
        from livetrack.offline.video import VideoFrames

        self._video = VideoFrames(p, self.channel)
        self.format = "video (lossy; gray by luminance)" if self.channel is None else "video"
        self.info = MovieInfo(
            str(p), self._video.n, self._video.shape, "uint8", None,
            self._video.frame_interval_s, self.format,
        )  # fmt: skip

    def _open_glob(self) -> None:
        files = sorted(globlib.glob(self.source))
        if not files:
            raise MovieError(f"{self.source}: no file matches")
        self._files = files
        first = _read_image(files[0], self.channel)
        self.format = "image sequence"
        self.info = MovieInfo(
            self.source, len(files), first.shape, str(first.dtype), None, None, self.format
        )

    # -- reading ---------------------------------------------------------------------

    def read(self, start: int, stop: int) -> NDArray[Any]:
        """Frames ``start`` to ``stop`` (exclusive) as an array (T, H, W)."""
        stop = min(stop, self.info.n_frames)
        if self._files:
            return np.stack([_read_image(f, self.channel) for f in self._files[start:stop]])
        if self._video is not None:
            frames: NDArray[Any] = self._video.read(start, stop)
            return frames
        assert self._frames is not None
        return self._frames.read(start, stop)

    def chunks(self, size: int) -> Iterator[tuple[int, NDArray[Any]]]:
        """(first frame index, frames) in chunks of ``size`` frames."""
        for start in range(0, self.info.n_frames, size):
            yield start, self.read(start, start + size)

    def close(self) -> None:
        """Release the file."""
        if self._video is not None:
            self._video.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._tif is not None:
            self._tif.close()
            self._tif = None


def _ome_axes(node: Any, ndim: int) -> str | None:
    """The OME-Zarr axes of a multiscales group as letters (t c z y x → TCZYX), if stated."""
    attrs: dict[str, Any] = dict(getattr(node, "attrs", {}) or {})
    ms: Any = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    names = (
        [a["name"] if isinstance(a, dict) else a for a in (ms[0].get("axes") or [])] if ms else []
    )
    if len(names) != ndim:
        return None
    return "".join(str(n).upper()[:1] for n in names)


def _read_image(path: str, channel: int | None) -> NDArray[Any]:
    """One image of a sequence; a colour image gives the channel asked for."""
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        a: NDArray[Any] = tifffile.imread(path)
    else:
        from PIL import Image

        a = np.asarray(Image.open(path))
    if a.ndim == 3:
        if channel is not None:
            if not 0 <= channel < a.shape[-1]:
                raise MovieError(f"{path}: --channel {channel}: the image has shape {a.shape}")
            return a[..., channel]
        if all(np.array_equal(a[..., 0], a[..., c]) for c in range(1, min(3, a.shape[-1]))):
            return a[..., 0]  # grey stored as colour: nothing to choose
        raise MovieError(
            f"{path}: a colour image of shape {a.shape}; choose a channel with --channel N "
            f"(0 to {a.shape[-1] - 1})"
        )
    if a.ndim != 2:
        raise MovieError(f"{path}: expected a 2-D image, got shape {a.shape}")
    return a
