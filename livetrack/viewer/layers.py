"""The napari layers the live widget draws: the frame, detections, tracks, the followed one.

Everything is in camera pixels scaled by ``scale`` (µm per pixel when drawn over
napari-micromanager's ``preview`` layer, which is in µm; 1 otherwise), so the
results sit on the acquisition's own image.

The frame and the detections are updated on every draw, in place; the track tails,
whose rebuild is napari's costliest update, at most :data:`TRACKS_HZ` times a second.
The detections layer keeps its rows from frame to frame (resizing a Points layer
resizes its colours, sizes and symbols and re-ranges the viewer: ~2 ms of a ~37 ms
picture on one llvmpipe core): a frame's detections are its first rows and ``shown``,
the rest hidden with particle −1, size 0 and a transparent border (napari draws a 2D
layer's rows whatever ``shown`` says), so ``layer.data[layer.shown]`` is the frame's. Tail
times are frames relative to the drawn one (:data:`NOW` = the drawn frame, ``NOW − 1``
the one before; napari takes no negative times), so napari's time slider stays at
``NOW`` and is never moved: moving it re-slices every layer, the image included
(~5 ms of 512² each time).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from livetrack.viewer.live import Snapshot

#: the frame layer when the frames come from the service's preview
FRAME_LAYER = "livetrack frame"
#: napari-micromanager's layer for live and snapped images
PREVIEW_LAYER = "preview"
#: a detection's marker (screen px)
POINT_SIZE = 10.0
#: a click farther than this from every detection follows nothing
CLICK_RADIUS_PX = 8.0
#: track tail updates a second (a tail moves little in 0.2 s; each rebuild costs ~10 ms,
#: at 10 a second a tenth of a core painting in software)
TRACKS_HZ = 5.0
#: the drawn frame's time in the Tracks layer (above the longest tail the widget allows)
NOW = 2048
#: layer-list thumbnails redrawn a second: each costs a downsampled copy and a Qt repaint
#: (~3 ms of a 512² frame), and nobody reads a thumbnail 30 times a second
THUMBNAILS_HZ = 1.0


class LiveLayers:
    """Create the layers on first use and update them in place afterwards."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.scale = (1.0, 1.0)
        self.points: Any = None
        self.tracks: Any = None
        self.followed: Any = None
        self.images_drawn = 0
        self._last: Snapshot | None = None
        self._tracks_at = 0.0
        self.tracks_seq = -1  # the frame at NOW in the Tracks layer
        self._thumbnails_at: dict[str, float] = {}

    def set_scale(self, scale: tuple[float, float]) -> None:
        """Draw in these units per pixel from now on (the layers made so far too)."""
        self.scale = scale
        for layer in (self.points, self.followed):
            if self._alive(layer):
                layer.scale = scale
        if self._alive(self.tracks):
            self.tracks.scale = (1.0, *scale)

    def _alive(self, layer: Any) -> bool:
        return layer is not None and layer in self.viewer.layers

    def draw(self, snap: Snapshot, tail: int, followed: int | None) -> None:
        """Draw one snapshot: detections, tracks up to its frame, the followed particle."""
        self._last = snap
        if not self._alive(self.points):
            self.points = self.viewer.add_points(
                snap.points, name="livetrack detections", size=POINT_SIZE,
                features={"particle": snap.point_ids}, face_color="transparent",
                border_color="yellow", border_width=0.15, scale=self.scale,
            )  # fmt: skip
        else:
            self._move_points(snap.points, snap.point_ids)
        now = time.monotonic()
        if len(snap.tracks) and now - self._tracks_at >= 1.0 / TRACKS_HZ:
            self._tracks_at = now
            self.tracks_seq = snap.seq
            tails = snap.tracks.copy()
            tails[:, 1] += NOW - snap.seq  # newer rows than the drawn frame wait after it
            tails = tails[tails[:, 1] >= 0]
            if not self._alive(self.tracks):
                self.tracks = self.viewer.add_tracks(
                    tails, name="livetrack tracks", tail_length=tail, tail_width=3,
                    scale=(1.0, *self.scale),
                )  # fmt: skip
            else:
                with self._ranged():
                    self.tracks.data = tails
            if self.viewer.dims.point[0] != NOW:  # once, or after napari clamped it
                self.viewer.dims.set_point(0, NOW)
        if followed is not None or self._alive(self.followed):
            self._draw_followed(snap, followed)

    def _move_points(self, points: np.ndarray, ids: np.ndarray) -> None:
        """Put a frame's detections into the layer's rows, in place while they fit."""
        layer, n = self.points, len(points)
        rows = len(layer.data)
        resized = n > rows or rows > 4 * max(n, 16)  # grown past the rows, or far fewer
        if resized:
            rows = n + n // 4 + 8
            with layer.events.blocker_all():  # one refresh below, not one per attribute
                # napari resizes the feature table to it; hidden rows sit on the frame
                layer.data = np.tile(points[0] if n else (0.0, 0.0), (rows, 1))
        layer.data[:n] = points
        self._hide_past(n)
        # the column in place: setting the table re-validates it (~0.5 ms)
        layer.features["particle"] = np.concatenate([ids, np.full(rows - n, -1)])
        if resized:
            layer.refresh()
            return
        thumbnail = self._thumbnail_due("points")
        with self._unlisted(thumbnail):
            layer.refresh(thumbnail=thumbnail, highlight=False, extent=False)

    def _hide_past(self, n: int) -> None:
        """Show the detection layer's first ``n`` rows and hide the others (in place)."""
        layer = self.points
        shown = np.arange(len(layer.data)) < n
        layer.shown[:] = shown
        layer.size[:] = np.where(shown, POINT_SIZE, 0.0)  # nothing to hover or pick
        layer.border_color[:, 3] = shown  # a marker of size 0 still leaves a dot

    def _draw_followed(self, snap: Snapshot, followed: int | None) -> None:
        data = snap.points[snap.point_ids == followed] if followed is not None else np.zeros((0, 2))
        if not self._alive(self.followed):
            self.followed = self.viewer.add_points(
                data, name="livetrack followed", size=22, face_color="transparent",
                border_color="red", border_width=0.12, scale=self.scale,
            )  # fmt: skip
        else:
            self.followed.data = data

    def draw_image(self, image: np.ndarray, step: int, name: str = FRAME_LAYER) -> None:
        """Show a frame (every ``step``-th pixel) in layer ``name``, made on first use."""
        scale = (self.scale[0] * step, self.scale[1] * step)
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            data = layer.data
            if (
                isinstance(data, np.ndarray)
                and data.shape == image.shape
                and data.dtype == image.dtype
                and data.flags.writeable
            ):  # in place: napari skips re-validating a new array (~2 ms of 512²)
                data[...] = image
                thumbnail = self._thumbnail_due(name)
                with self._unlisted(thumbnail):
                    layer.refresh(thumbnail=thumbnail, highlight=False, extent=False)
            else:
                layer.data = image.copy()
            if tuple(layer.scale) != scale:
                layer.scale = scale
        else:
            image = image.copy()  # its own buffer, written in place from now on
            lo, hi = np.percentile(image, (0.5, 99.8))
            layer = self.viewer.add_image(
                image, name=name, scale=scale, contrast_limits=(float(lo), float(max(hi, lo + 1)))
            )
            self.viewer.layers.move(self.viewer.layers.index(layer), 0)  # under the results
        self.images_drawn += 1

    def _ranged(self) -> AbstractContextManager[Any]:
        """Keep new tails from re-ranging the viewer's axes while its time axis holds NOW.

        napari re-ranges every axis, its sliders included, on each data event (~10 of
        ~17 ms a rebuild); the time axis is the only one not drawn, and the slider on
        it stays at NOW, so its range matters only in holding NOW.
        """
        rerange = getattr(self.viewer, "_on_layers_change", None)
        dims = self.viewer.dims
        if (
            rerange is None
            or dims.ndim != 3
            or not dims.range[0].start <= NOW <= dims.range[0].stop
        ):
            return nullcontext()
        blocker: AbstractContextManager[Any] = self.tracks.events.data.blocker(rerange)
        return blocker

    def _unlisted(self, thumbnail: bool) -> AbstractContextManager[Any]:
        """Keep a refresh's events from the layer list unless a thumbnail is due.

        The list passes on every event of its layers, and its view repaints the
        layer's row for each (~2.6 ms a picture on llvmpipe, of ~24); in napari itself
        that view is its only listener.
        """
        return nullcontext() if thumbnail else self.viewer.layers.events.blocker()

    def _thumbnail_due(self, layer: str) -> bool:
        now = time.monotonic()
        if now - self._thumbnails_at.get(layer, -np.inf) < 1.0 / THUMBNAILS_HZ:
            return False
        self._thumbnails_at[layer] = now
        return True

    def particle_at(self, world_yx: tuple[float, float]) -> int | None:
        """The id of the drawn detection nearest a clicked point, if one is close enough."""
        snap = self._last
        if snap is None or len(snap.points) == 0:
            return None
        yx = np.asarray(world_yx[-2:], float) / np.asarray(self.scale)
        d = np.hypot(*(snap.points - yx).T)
        k = int(np.argmin(d))
        if d[k] > CLICK_RADIUS_PX or snap.point_ids[k] < 0:
            return None
        return int(snap.point_ids[k])
