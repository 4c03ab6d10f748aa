"""The characterisation model: a sphere's radius, index and height, each with its σ.

It reads them from a crop of the sphere's in-line hologram. Training crops are
Lorenz–Mie holograms of one sphere near the crop's centre (the
detector's position error is drawn as a jitter), with radius, index and height
drawn uniformly over the preset's ranges and the camera's noise applied. The crop
is normalised by its background (a hologram is ``I / I₀``) and block-averaged, so
the network sees the rings at a cost of a few MFLOP per particle. It predicts a
mean and a log-variance per quantity and is trained with the Gaussian negative
log-likelihood, which makes the stated σ mean something (checked on held-out crops:
the fraction of errors within 1σ should be near 68 %).
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.config import SimulationConfig
from livetrack.detection.normalise import normalise_hologram
from livetrack.simulation.camera import expose
from livetrack.simulation.lorenzmie import hologram

PARAMETERS = ("radius_um", "refractive_index", "z_um")


@dataclass(frozen=True)
class HoloCrops:
    """Network inputs (N, c, c, 1) and the truth per crop (N, parameters).

    ``baseline``: a classical estimate of the same quantities on the same crops
    (for the single-particle localiser: radial symmetry), when there is one.
    """

    images: NDArray[np.float32]
    truth: NDArray[np.float64]
    baseline: NDArray[np.float64] | None = None


def parameter_ranges(sim: SimulationConfig) -> dict[str, tuple[float, float]]:
    """The preset's range of each quantity (a finite distribution: mean ± 3 std)."""
    p = sim.particles
    out = {}
    for name, dist in (("radius_um", p.radius_um), ("refractive_index", p.refractive_index)):
        lo = dist.min if math.isfinite(dist.min) else dist.mean - 3 * dist.std
        hi = dist.max if math.isfinite(dist.max) else dist.mean + 3 * dist.std
        out[name] = (float(lo), float(hi))
    out["z_um"] = (float(p.z_um.min), float(p.z_um.max))
    for name, (lo, hi) in out.items():
        if not hi > lo:
            raise ValueError(f"{sim.preset.name}: {name} has no range to learn ({lo}..{hi})")
    return out


def render_raw_crops(
    sim: SimulationConfig, n: int, seed: Sequence[int] | int, crop: int, jitter_px: float
) -> tuple[NDArray[np.generic], NDArray[np.float64]]:
    """``n`` noisy single-sphere crops as the camera gives them (ADU), and their truth.

    Radius, index and height are drawn uniformly over the preset's ranges, the
    position within ``jitter_px`` of the crop's centre, the illumination within
    a factor e^±0.7 of the preset's. Truth columns: radius (µm), index, height
    (µm), x, y (crop pixels).
    """
    rng = np.random.default_rng(seed)
    ranges = parameter_ranges(sim)
    px = sim.pixel_size_um
    c = (crop - 1) / 2.0
    frames = []
    truth = np.empty((n, 5))
    for i in range(n):
        a, m, z = (rng.uniform(*ranges[k]) for k in PARAMETERS)
        x, y = c + rng.uniform(-jitter_px, jitter_px, 2)
        intensity, _ = hologram(
            (crop, crop),
            np.array([x]),
            np.array([y]),
            np.array([z / px]),
            np.array([a]),
            np.array([m]),
            pixel_um=px,
            n_medium=sim.optics.medium_index,
            wavelength_um=sim.optics.wavelength_um,
        )
        # domain randomisation: the illumination's brightness (hence the noise) varies
        illum = sim.holography.illumination_photons * math.exp(rng.uniform(-0.7, 0.7))
        frames.append(expose(intensity * illum, sim.camera, rng))
        truth[i] = (a, m, z, x, y)
    shape = (0, crop, crop)
    return (np.stack(frames) if frames else np.zeros(shape, np.uint16)), truth


def render_crops(
    sim: SimulationConfig,
    n: int,
    seed: Sequence[int] | int,
    crop: int,
    downsample: int,
    jitter_px: float,
) -> HoloCrops:
    """``n`` noisy single-sphere crops with parameters drawn over the preset's ranges.

    Normalised for the network (:func:`render_raw_crops`, then
    :func:`~livetrack.detection.normalise.normalise_hologram`).
    """
    frames, truth = render_raw_crops(sim, n, seed, crop, jitter_px)
    images = np.empty((n, crop // downsample, crop // downsample, 1), np.float32)
    for i, frame in enumerate(frames):
        images[i, ..., 0] = normalise_hologram(frame, downsample, sim.camera.offset_adu)
    return HoloCrops(images, truth[:, :3])


RenderCrops = Callable[[SimulationConfig, int, Sequence[int], int, int, float], HoloCrops]


def seeded_map(
    render: Callable[..., Any], sim: SimulationConfig, n: int, seed: int, workers: int, *args: Any
) -> list[Any]:
    """``render(sim, n_k, [seed, k], *args)`` for k < ``workers``, in as many processes.

    The ``n`` items are split as evenly as possible; each process draws from its
    own seeded stream. ``render`` must be a module-level function (it is pickled).
    """
    sizes = [n // workers + (k < n % workers) for k in range(workers)]
    # spawn, not fork: the caller may already run TensorFlow's threads
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(
            pool.map(
                render,
                [sim] * workers,
                sizes,
                [[seed, k] for k in range(workers)],
                *([a] * workers for a in args),
            )
        )


def render_crops_parallel(
    sim: SimulationConfig,
    n: int,
    seed: int,
    crop: int,
    downsample: int,
    jitter_px: float,
    workers: int = 2,
    render: RenderCrops | None = None,
) -> HoloCrops:
    """``render`` (default :func:`render_crops`) in ``workers`` processes.

    Each process draws from its own seeded stream; ``render`` must be a module-level
    function (it is pickled to the worker processes).
    """
    render = render or render_crops
    if workers <= 1 or n < 64:
        return render(sim, n, [seed, 0], crop, downsample, jitter_px)
    parts = seeded_map(render, sim, n, seed, workers, crop, downsample, jitter_px)
    baselines = [p.baseline for p in parts]
    return HoloCrops(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.truth for p in parts]),
        None if any(b is None for b in baselines) else np.concatenate(baselines),
    )


def build_characteriser(
    size: int,
    channels: tuple[int, int, int] = (16, 32, 64),
    dense: int = 128,
    seed: int = 0,
    outputs: int = 3,
    name: str = "livetrack_characteriser",
) -> Any:
    """A small CNN: three conv blocks with pooling, a dense layer, mean and log-variance.

    ``outputs`` quantities, each a mean and a log-variance (``2 × outputs`` numbers).
    """
    import keras
    from keras import layers

    init = keras.initializers.HeNormal(seed=seed)
    inp = keras.Input((size, size, 1), name="hologram")
    x = inp
    for k, ch in enumerate(channels):
        x = layers.Conv2D(
            ch, 3, padding="same", activation="relu", kernel_initializer=init, name=f"conv{k}a"
        )(x)
        x = layers.Conv2D(
            ch, 3, padding="same", activation="relu", kernel_initializer=init, name=f"conv{k}b"
        )(x)
        x = layers.MaxPooling2D(2, name=f"pool{k}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense, activation="relu", kernel_initializer=init, name="dense")(x)
    mean = layers.Dense(outputs, name="mean")(x)
    log_var = layers.Dense(
        outputs, bias_initializer=keras.initializers.Constant(-2.0), name="logvar"
    )(x)
    out = layers.Concatenate(name="mean_logvar")([mean, log_var])
    return keras.Model(inp, out, name=name)


def gaussian_nll() -> Any:
    """Negative log-likelihood of the (normalised) truth under N(mean, exp(log-variance))."""
    import keras
    from keras import ops

    def loss(y_true: Any, y_pred: Any) -> Any:
        k = y_pred.shape[-1] // 2  # means first, then log-variances
        mean, log_var = y_pred[..., :k], ops.clip(y_pred[..., k:], -12.0, 6.0)
        return ops.mean(0.5 * (log_var + ops.square(y_true - mean) * ops.exp(-log_var)))

    loss.__name__ = "gaussian_nll"
    return keras.saving.register_keras_serializable("livetrack")(loss)


def scales(
    ranges: dict[str, tuple[float, float]], names: Sequence[str] = PARAMETERS
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centre and half-width of each range: targets are normalised to about −1…1."""
    lo = np.array([ranges[k][0] for k in names])
    hi = np.array([ranges[k][1] for k in names])
    return (lo + hi) / 2, (hi - lo) / 2


def per_quantity(
    err: NDArray[np.float64], sigma: NDArray[np.float64], names: Sequence[str]
) -> dict[str, Any]:
    """RMSE, median error, σ coverage (68 % is honest) and median σ of each quantity."""
    out: dict[str, Any] = {"crops": len(err)}
    for k, name in enumerate(names):
        e = err[:, k]
        out[name] = {
            "rmse": float(np.sqrt(np.mean(e**2))),
            "median_abs_error": float(np.median(np.abs(e))),
            "within_1_sigma": float(np.mean(np.abs(e) <= sigma[:, k])),
            "median_sigma": float(np.median(sigma[:, k])),
        }
    return out


def calibrate_sigma(
    mean: NDArray[np.float64], sigma: NDArray[np.float64], truth: NDArray[np.float64]
) -> tuple[float, ...]:
    """One factor per quantity that puts 68.27 % of these errors within the scaled σ.

    Gaussian-NLL training leaves σ somewhat too small (the network fits its training
    crops better than new ones); scaling by the ratio found on validation crops
    fixes the coverage without touching the means.
    """
    ratio = np.abs(mean - truth) / sigma
    return tuple(float(np.quantile(ratio[:, k], 0.6827)) for k in range(ratio.shape[1]))


def held_out_metrics(
    mean: NDArray[np.float64], sigma: NDArray[np.float64], truth: NDArray[np.float64]
) -> dict[str, Any]:
    """Errors and calibration per quantity on held-out crops."""
    err = mean - truth
    out = per_quantity(err, sigma, PARAMETERS)
    rel = err[:, 0] / truth[:, 0]
    out["radius_um"]["relative_rmse"] = float(np.sqrt(np.mean(rel**2)))
    out["radius_um"]["relative_p95"] = float(np.percentile(np.abs(rel), 95))
    out["refractive_index"]["p95_abs_error"] = float(np.percentile(np.abs(err[:, 1]), 95))
    return out
