"""Single-particle localisation: one particle in a small field (an optical trap).

Classical and fast: the particle is found as the strongest blob of the
background-subtracted, smoothed frame (bright or dark: holograms and brightfield
rings work too), then centred by radial symmetry (Parthasarathy, Nat. Methods
2012) on a crop around it, re-centred once. Radial symmetry uses the whole
ring/core structure of the image, not only the bright pixels, so it stays
accurate where centroids are pulled by noise. With a localiser artifact the
centre comes from its network instead (:class:`~livetrack.single.localiser.CropLocaliser`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from livetrack.detection.detector import Detections


def radial_symmetry_centre(window: NDArray[np.floating]) -> tuple[float, float]:
    """Centre (x, y) of a spot in a small window by radial symmetry (Parthasarathy 2012).

    Returns coordinates relative to the window (pixel centres at integers).
    """
    img = np.asarray(window, np.float64)
    ny, nx = img.shape
    # gradients at the corners between pixels (Roberts cross), smoothed 3×3
    du = img[:-1, 1:] - img[1:, :-1]
    dv = img[:-1, :-1] - img[1:, 1:]
    k = np.ones((3, 3)) / 9.0
    from scipy.ndimage import convolve

    du = convolve(du, k, mode="nearest")
    dv = convolve(dv, k, mode="nearest")
    xm = np.arange(nx - 1)[None, :] + 0.5 + np.zeros((ny - 1, 1))
    ym = np.arange(ny - 1)[:, None] + 0.5 + np.zeros((1, nx - 1))
    grad2 = du * du + dv * dv
    with np.errstate(divide="ignore", invalid="ignore"):
        m = -(du + dv) / (du - dv)
    bad = ~np.isfinite(m)
    m[bad] = 0.0
    b = ym - m * xm
    sdI2 = grad2.sum()
    xc0 = (grad2 * xm).sum() / sdI2
    yc0 = (grad2 * ym).sum() / sdI2
    w = grad2 / np.sqrt((xm - xc0) ** 2 + (ym - yc0) ** 2 + 1e-12)
    w[bad] = 0.0
    wm2p1 = w / (m * m + 1.0)
    sw = wm2p1.sum()
    smmw = (m * m * wm2p1).sum()
    smw = (m * wm2p1).sum()
    smbw = (m * b * wm2p1).sum()
    sbw = (b * wm2p1).sum()
    det = smw * smw - smmw * sw
    xc = (smbw * sw - smw * sbw) / det
    yc = (smbw * smw - smmw * sbw) / det
    return float(xc), float(yc)


class SingleParticleDetector:
    """One particle per frame, behind the detector interface.

    Parameters
    ----------
    crop
        Side of the crop used for radial symmetry (px; an even one is taken as the
        next odd one); about twice the particle's visible diameter. Also sets the
        smoothing that finds the particle.
    model
        A localiser artifact (``outputs.kind = "localiser"``): its network centres
        the particle instead of radial symmetry.
    """

    name = "single-particle radial symmetry"

    def __init__(self, crop: int = 31, model: str | Path | None = None) -> None:
        if crop < 7:
            raise ValueError(f"single-particle crop {crop} px: at least 7 px (about twice the "
                             "particle's visible diameter)")  # fmt: skip
        self.crop = crop | 1  # a centre pixel: 48 → 49
        self.localiser = None
        if model is not None:
            from livetrack.single.localiser import CropLocaliser

            self.localiser = CropLocaliser(model)
            self.name = f"single-particle localiser {self.localiser.card.name!r}"

    def detect(self, frame: NDArray[np.generic], threshold: float | None = None) -> Detections:
        """The particle's centre in this frame (empty if the frame is flat)."""
        t0 = time.perf_counter()
        f = np.asarray(frame, np.float64)
        h, w = f.shape
        r = self.crop // 2
        smooth = ndimage.gaussian_filter(np.abs(f - np.median(f)), r / 4.0)
        iy, ix = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
        cx, cy = int(ix), int(iy)
        x = y = float("nan")
        if self.localiser is not None and np.ptp(f) > 0:
            x, y, _, _ = self.localiser.locate(f, float(cx), float(cy))
        for _ in range(0 if self.localiser is not None else 2):
            # coarse, then re-centred on the first estimate
            x0 = int(np.clip(cx - r, 0, max(w - self.crop, 0)))
            y0 = int(np.clip(cy - r, 0, max(h - self.crop, 0)))
            win = f[y0 : y0 + self.crop, x0 : x0 + self.crop]
            if win.shape[0] < 7 or win.shape[1] < 7 or np.ptp(win) == 0:
                break
            dx, dy = radial_symmetry_centre(win)
            x, y = x0 + dx, y0 + dy
            cx, cy = round(x), round(y)
        ok = np.isfinite(x) and 0 <= x < w and 0 <= y < h
        n = 1 if ok else 0
        nan = np.full(n, np.nan)
        ms = (time.perf_counter() - t0) * 1e3
        xs, ys = np.array([x])[:n], np.array([y])[:n]
        return Detections(xs, ys, np.ones(n), nan, nan, nan, {"model": ms})
