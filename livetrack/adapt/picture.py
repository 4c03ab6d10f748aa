"""The picture of an adaptation: the movie's spots, their fit, the residual, simulated spots.

Rows: real crops of isolated spots; the fitted pixel-integrated Gaussian; the residual
(real − fit, on the same grey scale as the noise); and crops of the adapted preset's
own simulated frame. Needs matplotlib (``livetrack[plot]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from livetrack.adapt.measure import Measured, candidates, fit_spot, isolated, spot_model
from livetrack.config import load_simulation_config
from livetrack.simulation import simulate_movie

CROPS = 5


def _real(frame: np.ndarray, sigma: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(crop, fitted model) of up to CROPS isolated spots of middling brightness."""
    c = isolated(candidates(frame, sigma), 6.0 * sigma)
    c = c[np.argsort(c[:, 2])][len(c) // 3 :]  # the middle and upper brightness
    r = int(np.ceil(3.0 * sigma)) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    out = []
    for x, y, _ in c:
        fit = fit_spot(frame, x, y, sigma)
        if fit is None:
            continue
        xi, yi = round(x), round(y)
        crop = frame[yi - r : yi + r + 1, xi - r : xi + r + 1]
        fx, fy, s, n, b = fit
        out.append((crop, spot_model(np.array([fx - xi, fy - yi, s, n, b]), xx, yy)))
        if len(out) == CROPS:
            break
    return out


def _simulated(preset: Path, sigma: float) -> list[np.ndarray]:
    cfg = load_simulation_config(preset)
    cam = cfg.camera.model_copy(update={"width": 160, "height": 160})
    parts = cfg.particles.model_copy(update={"number": 12})
    movie = simulate_movie(cfg.model_copy(update={"camera": cam, "particles": parts}), 1, seed=0)
    frame = movie.frames[0].astype(np.float64)
    r = int(np.ceil(3.0 * sigma)) + 1
    t = movie.truth
    inside = t[(t.x > r) & (t.y > r) & (t.x < 159 - r) & (t.y < 159 - r)]
    return [
        frame[round(y) - r : round(y) + r + 1, round(x) - r : round(x) + r + 1]
        for x, y in inside[["x", "y"]].to_numpy()[:CROPS]
    ]


def draw_fit(stack: Any, preset: Path, measured: Measured, path: Path) -> Path:
    """Draw the picture to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = np.asarray(stack[0], np.float64)
    real = _real(frame, measured.sigma_px)
    sim = _simulated(preset, measured.sigma_px)
    movie = "movie, inverted" if measured.polarity == "dark-on-bright" else "movie"
    rows = [
        (movie, [c for c, _ in real]),
        ("Gaussian fit", [m for _, m in real]),
        ("residual", [c - m for c, m in real]),
        ("simulated", sim),
    ]
    fig, axes = plt.subplots(4, CROPS, figsize=(1.6 * CROPS, 6.8), squeeze=False)
    for r, (label, crops) in enumerate(rows):
        for k in range(CROPS):
            ax = axes[r, k]
            ax.set_xticks([])
            ax.set_yticks([])
            if k < len(crops):
                img = crops[k]
                lo, hi = (-3, 3) if label == "residual" else np.percentile(img, (1, 99.5))
                scale = np.std(crops[k]) if label == "residual" else 1.0
                ax.imshow(img / scale if label == "residual" else img, cmap="gray", vmin=lo,
                          vmax=hi)  # fmt: skip
        axes[r, 0].set_ylabel(label)
    title = (
        f"σ {measured.sigma_px:.2f} px · {measured.photons[1]:.0f} photons · background "
        f"{measured.background_photons:.1f}/px · {measured.spots} spots fitted"
    )
    return _save(fig, title, path)


def _save(fig: Any, title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def draw_rings_fit(
    mean: np.ndarray, model: np.ndarray, preset: Path, measured: Any, path: Path
) -> Path:
    """The movie's mean particle, the fitted sphere, the residual, a simulated particle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    half = mean.shape[0] // 2
    cfg = load_simulation_config(preset)
    side = max(160, 6 * half)
    cam = cfg.camera.model_copy(update={"width": side, "height": side})
    parts = cfg.particles.model_copy(update={"number": 3})
    sim = simulate_movie(cfg.model_copy(update={"camera": cam, "particles": parts}), 1, seed=0)
    frame = np.pad(sim.frames[0].astype(np.float64), half, mode="edge")
    simulated = np.full_like(mean, np.median(frame))
    for x, y in sim.truth[["x", "y"]].to_numpy()[:1].round().astype(int):
        simulated = frame[y : y + 2 * half + 1, x : x + 2 * half + 1]
    lo, hi = np.percentile(mean, (0.5, 99.5))
    fig, axes = plt.subplots(1, 5, figsize=(12, 2.8))
    panels = (("movie: mean particle", mean), ("Lorenz–Mie fit", model),
              ("residual (×5)", 5 * (mean - model) + np.median(mean)),
              ("simulated (preset)", simulated))  # fmt: skip
    for ax, (label, img) in zip(axes, panels, strict=False):
        scale = (lo, hi) if label != "simulated (preset)" else np.percentile(img, (0.5, 99.5))
        ax.imshow(img, cmap="gray", vmin=scale[0], vmax=scale[1])
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[4].plot(mean[half], label="movie")
    axes[4].plot(model[half], label="fit")
    axes[4].set_title("through the centre", fontsize=9)
    axes[4].legend(fontsize=7)
    m = measured
    title = (
        f"radius {m.radius_um:.2f} µm · index {m.refractive_index:.3f} · {m.z_um:.1f} µm from "
        f"focus · {m.crops} particles averaged · residual {100 * m.residual:.1f} %"
    )
    return _save(fig, title, path)
