"""Training crops generated on the fly from the simulator, with domain randomisation.

Every crop draws its own PSF width, photons, background, gradient and camera
(offset, gain, read noise), so the network learns the physics rather than one
camera. Labels: one positive cell (stride 4) per particle whose SNR reaches
``min_snr_label``, with its sub-cell offset; cells of fainter particles are
ignored by the loss (neither positive nor negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from livetrack.config import Camera, SimulationConfig
from livetrack.detection.normalise import robust_normalise
from livetrack.simulation import GaussianPSF, expose, snr
from livetrack.training._config import TrainingConfig

STRIDE = 4


@dataclass(frozen=True, slots=True)
class Batch:
    """Network inputs (B, H, W, 1) and targets (B, H/4, W/4, 4): pos, offx, offy, weight."""

    images: NDArray[np.float32]
    targets: NDArray[np.float32]


def _log_uniform(
    rng: np.random.Generator, lo: float, hi: float, size: int | None = None
) -> NDArray[np.float64]:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size))


def make_crop(
    sim: SimulationConfig, cfg: TrainingConfig, rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.float32], dict[str, NDArray[np.float64]]]:
    """One randomised crop: normalised image, targets, and its ground truth."""
    r = cfg.randomisation
    c = cfg.crop
    base = GaussianPSF.from_optics(sim.optics)
    psf = GaussianPSF(base.sigma_px * rng.uniform(*r.sigma_scale), base.rayleigh_um)
    n = int(rng.integers(r.particles_per_crop[0], r.particles_per_crop[1] + 1))
    margin = 3.0 * psf.sigma_px
    x = rng.uniform(-margin, c - 1 + margin, n)
    y = rng.uniform(-margin, c - 1 + margin, n)
    z = rng.uniform(*r.z_um, n)
    photons = _log_uniform(rng, *r.photons, n)
    bg = float(_log_uniform(rng, *r.background_photons))
    gx, gy = rng.uniform(-r.gradient, r.gradient, 2)
    xx = (np.arange(c) - c / 2) / c
    background = bg * np.clip(1 + gy * xx[:, None] + gx * xx[None, :], 0.05, None)
    rendered = psf.render(x, y, z, photons, (c, c))
    cam = Camera(
        width=c,
        height=c,
        quantum_efficiency=1.0,
        gain_adu_per_e=float(rng.uniform(*r.gain_adu_per_e)),
        offset_adu=float(rng.uniform(*r.offset_adu)),
        read_noise_e=float(rng.uniform(*r.read_noise_e)),
        bit_depth=16,
    )
    frame = expose(background + rendered.image, cam, rng)
    image = robust_normalise(frame)
    inside = (x >= -0.5) & (x < c - 0.5) & (y >= -0.5) & (y < c - 0.5)
    np.clip(np.floor((x + 0.5) / STRIDE).astype(int), 0, c // STRIDE - 1)
    np.clip(np.floor((y + 0.5) / STRIDE).astype(int), 0, c // STRIDE - 1)
    s = snr(
        rendered.peak_photons,
        background[
            np.clip(np.rint(y), 0, c - 1).astype(int), np.clip(np.rint(x), 0, c - 1).astype(int)
        ],
        cam,
    )
    target = heatmap_targets(x, y, s, inside, c // STRIDE, r.min_snr_label)
    truth = {
        "x": x[inside],
        "y": y[inside],
        "photons": photons[inside],
        "snr": s[inside],
        "sigma": np.full(int(inside.sum()), psf.sigma_px),
        "background": np.full(int(inside.sum()), bg),
    }
    return image[..., None], target, truth


HEAT_SIGMA_CELLS = 0.6


def heatmap_targets(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    snr_values: NDArray[np.float64],
    inside: NDArray[np.bool_],
    grid: int,
    min_snr: float,
) -> NDArray[np.float32]:
    """Soft targets (grid, grid, 4): heat, offset x, offset y (cells), loss weight.

    Each labelled particle spreads a Gaussian (σ = 0.6 cell) over the 3×3 cells
    around it, so a particle on a cell border is not a coin toss between two
    cells; every cell near a particle learns the offset to it, so whichever cell
    wins the peak search reads the right position. Cells near particles too faint
    to label (SNR < ``min_snr``) get weight 0: neither positive nor negative.
    """
    target = np.zeros((grid, grid, 4), np.float32)
    target[..., 3] = 1.0
    u = (x + 0.5) / STRIDE - 0.5  # cell coordinates: cell i is centred on u = i
    v = (y + 0.5) / STRIDE - 0.5
    for i in np.argsort(snr_values):  # bright particles last: they win shared cells
        if not inside[i]:
            continue
        ci, cj = int(np.rint(u[i])), int(np.rint(v[i]))
        for dj in (-1, 0, 1):
            for di in (-1, 0, 1):
                a, b = ci + di, cj + dj
                if not (0 <= a < grid and 0 <= b < grid):
                    continue
                du, dv = u[i] - a, v[i] - b
                h = float(np.exp(-(du * du + dv * dv) / (2 * HEAT_SIGMA_CELLS**2)))
                if snr_values[i] < min_snr:
                    if target[b, a, 0] == 0.0 and h > 0.1:
                        target[b, a, 3] = 0.0
                    continue
                if h >= target[b, a, 0]:
                    target[b, a, :3] = (h, du, dv)
                    target[b, a, 3] = 1.0
    return target


def make_batch(
    sim: SimulationConfig,
    cfg: TrainingConfig,
    rng: np.random.Generator,
    size: int,
    truths: list[dict[str, NDArray[np.float64]]] | None = None,
) -> Batch:
    """``size`` crops stacked; their ground truth is appended to ``truths`` if given."""
    imgs, tgts = [], []
    for _ in range(size):
        im, t, tr = make_crop(sim, cfg, rng)
        imgs.append(im)
        tgts.append(t)
        if truths is not None:
            truths.append(tr)
    return Batch(np.stack(imgs), np.stack(tgts))
