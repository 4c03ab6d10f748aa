"""Characterise detected spheres: radius, refractive index and height, each with σ.

Runs a characteriser artifact (``livetrack train config/holography_spheres.toml``)
on a crop around each detected position of a hologram frame. The card says the
crop size, the block averaging and how the outputs map to physical units. With
``fit=True`` each estimate starts a maximum-likelihood fit of the Lorenz–Mie model
to the crop's raw pixels (:mod:`livetrack.holography.hologram_fit`): ~100× more
precise, with σ that hold, at ~0.7 s per sphere instead of ~1 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from livetrack.artifact import MODEL_NAME, ArtifactError, ModelCard, model_dir, read_card
from livetrack.detection.normalise import normalise_hologram
from livetrack.runtime import quiet_tensorflow_start

if TYPE_CHECKING:
    from livetrack.holography.hologram_fit import HologramCamera, HologramOptics

COLUMNS = ("radius_um", "refractive_index", "z_um")


@dataclass(frozen=True, slots=True)
class Characterisation:
    """Per-particle means and standard deviations; ``edge``: the crop left the frame.

    After a fit, ``position`` holds the fitted hologram centres (x, y, frame
    pixels) and ``reduced_chi2`` each fit's goodness (≈ 1: the model explains the
    pixels to their noise); both are ``None`` without one.
    """

    mean: NDArray[np.float64]  # (N, 3): radius µm, index, z µm
    sigma: NDArray[np.float64]  # (N, 3)
    edge: NDArray[np.bool_]
    position: NDArray[np.float64] | None = None  # (N, 2)
    reduced_chi2: NDArray[np.float64] | None = None

    def as_dict(self) -> dict[str, NDArray[np.float64]]:
        """Columns by name (``radius_um``, ``radius_um_sigma``, …, ``fit_x``, …)."""
        out = {}
        for k, name in enumerate(COLUMNS):
            out[name] = self.mean[:, k]
            out[f"{name}_sigma"] = self.sigma[:, k]
        if self.position is not None and self.reduced_chi2 is not None:
            out["fit_x"], out["fit_y"] = self.position[:, 0], self.position[:, 1]
            out["fit_reduced_chi2"] = self.reduced_chi2
        return out


def decode(
    raw: NDArray[np.floating],
    centre: Sequence[float] | NDArray[np.float64],
    half: Sequence[float] | NDArray[np.float64],
    sigma_scale: Sequence[float] | NDArray[np.float64] = (),
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Network output (N, 2k) → physical means and standard deviations (N, k) each.

    ``sigma_scale`` (the card's calibration, empty: none) multiplies each σ.
    """
    r = np.asarray(raw, np.float64)
    k = r.shape[1] // 2
    c, h = np.asarray(centre), np.asarray(half)
    sigma = np.exp(0.5 * np.clip(r[:, k:], -12.0, 6.0)) * h
    if len(sigma_scale):
        sigma = sigma * np.asarray(sigma_scale, np.float64)
    return r[:, :k] * h + c, sigma


def guess_saturation(frame: NDArray[np.generic]) -> float:
    """The frame's maximum if it is 2ᵏ − 1 (k ≥ 8: an 8–16-bit camera's full scale).

    Cameras store 8–14-bit values in 16-bit integers, so the type does not say where
    they saturate; a maximum of 255, 1023, 4095, … does. Otherwise infinity (no
    pixel is taken as saturated). Censoring a few pixels that merely reached that
    value costs the fit little; fitting clipped pixels as if they were not biases it.
    """
    top = float(np.max(frame)) if np.size(frame) else 0.0
    k = math.log2(top + 1.0)
    return top if top >= 255.0 and k == round(k) else math.inf


def load_crop_model(path: Path, kind: str, what: str) -> tuple[ModelCard, Any]:
    """The card and network of a crop model (characteriser or localiser) of ``kind``."""
    card = read_card(path)
    out = card.outputs
    if out.kind != kind or out.crop_px is None:
        raise ArtifactError(
            f"{path}: a {out.kind!r} model, not {what} (its card's outputs.kind must be "
            f"{kind!r}, with crop_px)"
        )
    quiet_tensorflow_start()
    import keras

    try:
        model = keras.saving.load_model(path / MODEL_NAME, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for a bad file
        raise ArtifactError(f"{path / MODEL_NAME}: cannot load the model: {exc}") from None
    return card, model


def traced_call(model: Any, side: int | None = None) -> Any:
    """``model`` as a function of float32 (N, side, side, 1) arrays (None: any size).

    A traced graph under TensorFlow: an eager Keras call costs ~10 ms of Python.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        fn = tf.function(
            lambda t: model(t, training=False),
            input_signature=[tf.TensorSpec((None, side, side, 1), tf.float32)],
        )
        return lambda a: fn(a).numpy()
    return lambda a: np.asarray(model(a, training=False))


class Characteriser:
    """A characteriser artifact ready to run.

    Parameters
    ----------
    artifact
        Artifact directory whose card says ``outputs.kind = "characteriser"``.
    """

    def __init__(self, artifact: str | Path) -> None:
        self.path = model_dir(artifact)
        self.card, self.model = load_crop_model(self.path, "characteriser", "a characteriser")
        out = self.card.outputs
        self.crop = int(out.crop_px or 0)
        self.downsample = int(out.downsample)
        self.target_centre = np.asarray(out.target_centre, np.float64)
        self.target_half_width = np.asarray(out.target_half_width, np.float64)
        self.sigma_scale = np.asarray(out.sigma_scale, np.float64)

    def crops(
        self, frame: NDArray[np.generic], x: NDArray[np.floating], y: NDArray[np.floating]
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """Normalised network inputs around each (x, y), and whether each left the frame."""
        f = np.asarray(frame)
        h, w = f.shape
        c = self.crop
        half = (c - 1) / 2.0
        pad = c
        padded = np.pad(f, pad, mode="reflect")
        images = np.empty((len(x), c // self.downsample, c // self.downsample, 1), np.float32)
        edge = np.zeros(len(x), bool)
        offset = self.card.expects.camera_offset_adu
        for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
            c0 = round(float(xi) - half)
            r0 = round(float(yi) - half)
            edge[i] = c0 < 0 or r0 < 0 or c0 + c > w or r0 + c > h
            window = padded[r0 + pad : r0 + pad + c, c0 + pad : c0 + pad + c]
            images[i, ..., 0] = normalise_hologram(window, self.downsample, offset)
        return images, edge

    def characterise(
        self,
        frame: NDArray[np.generic],
        x: NDArray[np.floating],
        y: NDArray[np.floating],
        *,
        fit: bool = False,
        saturation_adu: float | None = None,
    ) -> Characterisation:
        """Radius, index and height with σ for each particle at (x, y) (pixels).

        Parameters
        ----------
        frame
            The raw hologram frame (ADU).
        x, y
            The particles' positions (pixels).
        fit
            Refine each estimate by a Lorenz–Mie fit to the crop's raw pixels.
        saturation_adu
            The camera's saturated value, for the fit (default:
            :func:`guess_saturation`).
        """
        xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
        images, edge = self.crops(frame, xs, ys)
        if len(images) == 0:
            z = np.zeros((0, 3))
            empty = (np.zeros((0, 2)), np.zeros(0)) if fit else (None, None)
            return Characterisation(z, z.copy(), np.zeros(0, bool), *empty)
        raw = np.asarray(self.model(images, training=False), np.float64)
        mean, sigma = decode(raw, self.target_centre, self.target_half_width, self.sigma_scale)
        if not fit:
            return Characterisation(mean, sigma, edge)
        return self._fit(np.asarray(frame), xs, ys, mean, sigma, edge, saturation_adu)

    def fit_settings(
        self, saturation_adu: float
    ) -> tuple[HologramOptics, HologramCamera, tuple[list[float], list[float]]]:
        """What :func:`~livetrack.holography.hologram_fit.fit_sphere` needs, from the card.

        The optics and camera, and the search range for a poor fit: all the network
        was trained on. Raises :class:`ArtifactError` if the card lacks the medium's
        refractive index.
        """
        from livetrack.holography.hologram_fit import HologramCamera, HologramOptics

        ex = self.card.expects
        if ex.medium_index is None:
            raise ArtifactError(
                f"{self.path}: the card does not state the medium's refractive index "
                "(expects.medium_index), which the fit needs; retrain with this "
                "version of livetrack or add it to card.json"
            )
        optics = HologramOptics(ex.pixel_size_um, ex.wavelength_um, ex.medium_index)
        camera = HologramCamera(
            ex.camera_offset_adu, ex.camera_gain_adu_per_e, ex.camera_read_noise_e, saturation_adu
        )
        search_range = (
            list(self.target_centre - self.target_half_width),
            list(self.target_centre + self.target_half_width),
        )
        return optics, camera, search_range

    def _fit(
        self,
        frame: NDArray[np.generic],
        x: NDArray[np.float64],
        y: NDArray[np.float64],
        mean: NDArray[np.float64],
        sigma: NDArray[np.float64],
        edge: NDArray[np.bool_],
        saturation_adu: float | None,
    ) -> Characterisation:
        from livetrack.holography.hologram_fit import fit_sphere

        optics, camera, search_range = self.fit_settings(
            guess_saturation(frame) if saturation_adu is None else saturation_adu
        )
        h, w = frame.shape
        half = (self.crop - 1) / 2.0
        out_mean, out_sigma = mean.copy(), sigma.copy()
        position = np.column_stack([x, y])
        chi2 = np.full(len(x), np.nan)
        for i in range(len(x)):
            # the part of the crop inside the frame: no invented (reflected) pixels
            c0, r0 = max(round(x[i] - half), 0), max(round(y[i] - half), 0)
            c1, r1 = min(round(x[i] - half) + self.crop, w), min(round(y[i] - half) + self.crop, h)
            got = fit_sphere(
                frame[r0:r1, c0:c1],
                mean[i],
                sigma[i],
                optics,
                camera,
                position=(float(x[i]) - c0, float(y[i]) - r0),
                search_range=search_range,
            )
            out_mean[i] = (got.radius_um, got.refractive_index, got.z_um)
            out_sigma[i] = got.sigma
            position[i] = (got.x + c0, got.y + r0)
            chi2[i] = got.reduced_chi2
        return Characterisation(out_mean, out_sigma, edge, position, chi2)
