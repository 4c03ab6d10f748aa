"""The simulated microscope: pymmcore-plus ``UniMMCore`` with Python devices.

A camera that renders a :class:`~livetrack.acquisition.sample.SimulatedSample`
with our simulator in real time (exposure, binning, ROI, bit depth, frame
interval), an XY stage and a focus stage that move the rendered sample, and an
optical trap (generic device: target position in camera pixels) that pulls the
trapped particle. All are real devices of a real core: MDA, sequence
acquisition and property access work as with hardware.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pymmcore_plus.experimental.unicore import (
    CameraDevice,
    GenericDevice,
    StageDevice,
    UniMMCore,
    XYStageDevice,
    pymm_property,
)

from livetrack.acquisition.sample import SimulatedSample
from livetrack.config import SimulationConfig

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

CAMERA, XY_STAGE, FOCUS, TRAP = "Camera", "XYStage", "Focus", "Trap"


class SimCamera(CameraDevice):
    """A camera looking at the simulated sample, in real time."""

    def __init__(self, sample: SimulatedSample) -> None:
        super().__init__()
        self.sample = sample
        cam = sample.config.camera
        self._exposure_ms = float(cam.exposure_ms)
        self._interval_ms = float(cam.frame_interval_ms)
        self._binning = 1
        self._sensor = (cam.height, cam.width)
        self._roi: tuple[int, int, int, int] | None = None
        self._dtype = np.dtype(np.uint8 if cam.bit_depth <= 8 else np.uint16)
        if cam.bit_depth > 16:
            self._dtype = np.dtype(np.uint32)
        self._max = 2**cam.bit_depth - 1
        self.set_property_allowed_values("Binning", (1, 2, 4))

    # -- required --------------------------------------------------------------------

    def get_exposure(self) -> float:
        """Exposure (ms)."""
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        """Set the exposure (ms)."""
        if exposure <= 0:
            raise ValueError(f"exposure must be positive (ms), got {exposure}")
        self._exposure_ms = float(exposure)

    def get_interval_ms(self) -> float:
        """Frame interval of sequence acquisition (ms); at least the exposure."""
        return self._interval_ms

    def set_interval_ms(self, value: float) -> None:
        """Set the frame interval (ms)."""
        self._interval_ms = float(value)

    def get_binning(self) -> int:
        """Binning factor."""
        return self._binning

    def set_binning(self, value: int) -> None:
        """Set the binning factor (1, 2 or 4)."""
        self._binning = int(value)

    def shape(self) -> tuple[int, int]:
        """(height, width) of the image read out."""
        if self._roi is not None:
            return (self._roi[3], self._roi[2])
        b = self._binning
        return (self._sensor[0] // b, self._sensor[1] // b)

    def dtype(self) -> DTypeLike:
        """Pixel type (from the preset's bit depth)."""
        return self._dtype

    def get_roi(self) -> tuple[int, int, int, int]:
        """ROI (x, y, width, height)."""
        if self._roi is not None:
            return self._roi
        h, w = self.shape()
        return (0, 0, w, h)

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        """Set a ROI within the (binned) sensor."""
        h, w = self._sensor[0] // self._binning, self._sensor[1] // self._binning
        if x < 0 or y < 0 or width <= 0 or height <= 0 or x + width > w or y + height > h:
            raise ValueError(f"ROI ({x}, {y}, {width}, {height}) is outside the {w}x{h} sensor")
        self._roi = (x, y, width, height)

    def clear_roi(self) -> None:
        """Read the whole sensor."""
        self._roi = None

    # -- imaging ---------------------------------------------------------------------

    def _read_out(self, frame: np.ndarray) -> np.ndarray:
        b = self._binning
        if b > 1:
            h, w = frame.shape[0] // b * b, frame.shape[1] // b * b
            f = frame[:h, :w].reshape(h // b, b, w // b, b).sum(axis=(1, 3), dtype=np.int64)
            frame = np.minimum(f, self._max)
        if self._roi is not None:
            x, y, w, h = self._roi
            frame = frame[y : y + h, x : x + w]
        return frame

    def start_sequence(
        self, n: int | None, get_buffer: Callable[[Sequence[int], DTypeLike], np.ndarray]
    ) -> Iterator[Mapping[str, Any]]:
        """Expose, read out and hand over frames at the frame interval, in real time.

        The sample is rendered as it was half-way through each exposure (while the
        exposure runs); the frame is stamped ``t_acq_ns`` when its exposure ends.
        A camera that falls behind does not burst to catch up: it skips slots.
        """
        self.sample.start()
        exposure_s = self._exposure_ms / 1e3
        interval_s = max(self._interval_ms / 1e3, exposure_s)
        t_next = time.monotonic()
        i = 0
        while n is None or i < n:
            delay = t_next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t0 = time.monotonic()
            shot = self.sample.expose(exposure_s)
            image = self._read_out(shot.frame)
            left = t0 + exposure_s - time.monotonic()
            if left > 0:
                time.sleep(left)
            t_acq_ns = time.time_ns()
            buf = get_buffer(image.shape, self._dtype)
            buf[:] = image
            i += 1
            t_next += interval_s
            if t_next < time.monotonic():
                t_next = time.monotonic()
            yield {
                "t_acq_ns": str(t_acq_ns),
                "livetrack_stage_um": f"{shot.stage_um[0]:.6f},{shot.stage_um[1]:.6f}",
                "livetrack_focus_um": f"{shot.focus_um:.6f}",
                "livetrack_trap_px": f"{shot.trap_px[0]:.4f},{shot.trap_px[1]:.4f}",
                "Exposure-ms": f"{self._exposure_ms:.3f}",
            }


class SimXYStage(XYStageDevice):
    """An XY stage that moves the field of view over the simulated sample."""

    def __init__(self, sample: SimulatedSample) -> None:
        super().__init__()
        self.sample = sample
        self._origin = (0.0, 0.0)

    def set_position_um(self, x: float, y: float) -> None:
        """Move to an absolute position (µm)."""
        self.sample.set_stage(x + self._origin[0], y + self._origin[1])

    def get_position_um(self) -> tuple[float, float]:
        """Current position (µm)."""
        sx, sy = self.sample.stage_um
        return (sx - self._origin[0], sy - self._origin[1])

    def set_origin_x(self) -> None:
        """Zero x here."""
        self._origin = (self.sample.stage_um[0], self._origin[1])

    def set_origin_y(self) -> None:
        """Zero y here."""
        self._origin = (self._origin[0], self.sample.stage_um[1])

    def home(self) -> None:
        """Go to the origin."""
        self.set_position_um(0.0, 0.0)

    def stop(self) -> None:
        """Moves are instantaneous: nothing to stop."""


class SimFocus(StageDevice):
    """A focus drive: moving it defocuses the sample (per the preset's PSF model)."""

    def __init__(self, sample: SimulatedSample) -> None:
        super().__init__()
        self.sample = sample

    def set_position_um(self, val: float) -> None:
        """Move to an absolute position (µm)."""
        self.sample.set_focus(val)

    def get_position_um(self) -> float:
        """Current position (µm)."""
        return self.sample.focus_um

    def home(self) -> None:
        """Go to the origin."""
        self.sample.set_focus(0.0)

    def stop(self) -> None:
        """Moves are instantaneous: nothing to stop."""

    def set_origin(self) -> None:
        """The focal plane is the origin; nothing to re-zero."""


class SimTrap(GenericDevice):
    """An optical trap steered in camera pixels (as with an SLM or galvo pair).

    Stiffness and which particle is trapped come from the preset's ``[motion.trap]``.
    """

    def __init__(self, sample: SimulatedSample) -> None:
        super().__init__()
        self.sample = sample

    @pymm_property(name="X-px")
    def x_px(self) -> float:
        """Trap x (camera pixels)."""
        return self.sample.trap_px[0]

    @x_px.setter
    def _set_x(self, value: float) -> None:
        self.sample.set_trap(float(value), self.sample.trap_px[1])

    @pymm_property(name="Y-px")
    def y_px(self) -> float:
        """Trap y (camera pixels)."""
        return self.sample.trap_px[1]

    @y_px.setter
    def _set_y(self, value: float) -> None:
        self.sample.set_trap(self.sample.trap_px[0], float(value))

    @pymm_property(name="Stiffness-pN-per-um", is_read_only=True)
    def stiffness(self) -> float:
        """Trap stiffness from the preset."""
        return float(self.sample.config.motion.trap.stiffness_pN_per_um)


def simulated_core(config: SimulationConfig, seed: int = 0) -> tuple[UniMMCore, SimulatedSample]:
    """A ``UniMMCore`` with the simulated camera, XY stage, focus and trap loaded.

    The pixel size is registered (``Res`` configuration) so MDA metadata and
    ``getPixelSizeUm`` give the preset's value.
    """
    sample = SimulatedSample(config, seed)
    # Python devices only: point the adapter search at a folder without C++ adapters,
    # so no Micro-Manager installation is needed (or looked for).
    core = UniMMCore(mm_path=str(Path(__file__).parent))
    for label, dev in (
        (CAMERA, SimCamera(sample)),
        (XY_STAGE, SimXYStage(sample)),
        (FOCUS, SimFocus(sample)),
        (TRAP, SimTrap(sample)),
    ):
        core.loadPyDevice(label, dev)
        core.initializeDevice(label)
    core.setCameraDevice(CAMERA)
    core.setXYStageDevice(XY_STAGE)
    core.setFocusDevice(FOCUS)
    core.definePixelSizeConfig("Res")
    core.setPixelSizeUm("Res", config.pixel_size_um)
    core.setPixelSizeConfig("Res")
    return core, sample
