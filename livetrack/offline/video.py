"""Videos (MP4, AVI, …) read through OpenCV, where it is installed.

Video codecs are lossy, and most store colour: a video is read as gray levels by
luminance (OpenCV's BGR → gray, as DeepTrack's example videos are decoded), or one of
its red, green and blue channels with ``--channel`` 0, 1 or 2. Frames are decoded in
order, so a chunk that does not follow the last one starts the video again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.offline.movies import MovieError


def _opencv(path: Path) -> Any:
    try:
        import cv2
    except ImportError:
        raise MovieError(
            f"{path}: a video; reading it needs OpenCV (pip install opencv-python-headless), "
            "or convert it to TIFF"
        ) from None
    return cv2


class VideoFrames:
    """A video's frames, decoded in order (see the module docstring)."""

    def __init__(self, path: Path, channel: int | None) -> None:
        if channel is not None and not 0 <= channel < 3:
            raise MovieError(f"{path}: --channel {channel}: a video has channels 0–2 (R, G, B)")
        self.path, self.channel = path, channel
        self._cv2 = _opencv(path)
        cap = self._open()
        fps = float(cap.get(self._cv2.CAP_PROP_FPS) or 0.0)
        ok, first = cap.read()
        if not ok:
            cap.release()
            raise MovieError(f"{path}: OpenCV decodes no frame of it")
        n = 1
        while cap.grab():  # the header's frame count is an estimate for many codecs
            n += 1
        cap.release()
        self.n = n
        self.shape = (int(first.shape[0]), int(first.shape[1]))
        self.frame_interval_s = 1.0 / fps if fps > 0 else None
        self._cap: Any = None
        self._next = 0

    def _open(self) -> Any:
        cap = self._cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise MovieError(f"{self.path}: not a video OpenCV can open")
        return cap

    def _gray(self, frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
        if frame.ndim == 2:
            return frame
        if self.channel is not None:
            return np.ascontiguousarray(frame[..., 2 - self.channel])  # BGR in OpenCV
        out: NDArray[np.uint8] = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2GRAY)
        return out

    def read(self, start: int, stop: int) -> NDArray[np.uint8]:
        """Frames ``start`` to ``stop`` (exclusive), (T, H, W) uint8."""
        stop = min(stop, self.n)
        if self._cap is None or start < self._next:
            self.close()
            self._cap, self._next = self._open(), 0
        while self._next < start:
            self._cap.grab()
            self._next += 1
        frames = []
        for _ in range(start, stop):
            ok, frame = self._cap.read()
            if not ok:
                raise MovieError(f"{self.path}: frame {self._next} could not be decoded")
            frames.append(self._gray(frame))
            self._next += 1
        return np.stack(frames) if frames else np.zeros((0, *self.shape), np.uint8)

    def close(self) -> None:
        """Release the decoder."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
