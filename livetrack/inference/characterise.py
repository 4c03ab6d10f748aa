"""Characterise detected spheres: radius, refractive index and height, each with σ.

Runs a characteriser artifact (``livetrack train config/holography_spheres.toml``)
on a crop around each detected position of a hologram frame. The card says the
crop size, the block averaging and how the outputs map to physical units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.artifact import MODEL_NAME, ArtifactError, ModelCard, read_card
from livetrack.inference._normalise import normalise_hologram

COLUMNS = ("radius_um", "refractive_index", "z_um")


@dataclass(frozen=True, slots=True)
class Characterisation:
    """Per-particle means and standard deviations; ``edge``: the crop left the frame."""

    mean: NDArray[np.float64]  # (N, 3): radius µm, index, z µm
    sigma: NDArray[np.float64]  # (N, 3)
    edge: NDArray[np.bool_]

    def as_dict(self) -> dict[str, NDArray[np.float64]]:
        """Columns by name (``radius_um``, ``radius_um_sigma``, …)."""
        out = {}
        for k, name in enumerate(COLUMNS):
            out[name] = self.mean[:, k]
            out[f"{name}_sigma"] = self.sigma[:, k]
        return out


def decode(
    raw: NDArray[np.floating],
    centre: Sequence[float] | NDArray[np.float64],
    half: Sequence[float] | NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Network output (N, 2k) → physical means and standard deviations (N, k) each."""
    r = np.asarray(raw, np.float64)
    k = r.shape[1] // 2
    c, h = np.asarray(centre), np.asarray(half)
    sigma = np.exp(0.5 * np.clip(r[:, k:], -12.0, 6.0)) * h
    return r[:, :k] * h + c, sigma


def load_crop_model(path: Path, kind: str, what: str) -> tuple[ModelCard, Any]:
    """The card and network of a crop model (characteriser or localiser) of ``kind``."""
    card = read_card(path)
    out = card.outputs
    if out.kind != kind or out.crop_px is None:
        raise ArtifactError(
            f"{path}: a {out.kind!r} model, not {what} (its card's outputs.kind must be "
            f"{kind!r}, with crop_px)"
        )
    import keras

    try:
        model = keras.saving.load_model(path / MODEL_NAME, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for a bad file
        raise ArtifactError(f"{path / MODEL_NAME}: cannot load the model: {exc}") from None
    return card, model


class Characteriser:
    """A characteriser artifact ready to run.

    Parameters
    ----------
    artifact
        Artifact directory whose card says ``outputs.kind = "characteriser"``.
    """

    def __init__(self, artifact: str | Path) -> None:
        self.path = Path(artifact)
        self.card, self.model = load_crop_model(self.path, "characteriser", "a characteriser")
        out = self.card.outputs
        self.crop = int(out.crop_px or 0)
        self.downsample = int(out.downsample)
        self.target_centre = np.asarray(out.target_centre, np.float64)
        self.target_half_width = np.asarray(out.target_half_width, np.float64)

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
        self, frame: NDArray[np.generic], x: NDArray[np.floating], y: NDArray[np.floating]
    ) -> Characterisation:
        """Radius, index and height with σ for each particle at (x, y) (pixels)."""
        images, edge = self.crops(frame, np.asarray(x), np.asarray(y))
        if len(images) == 0:
            z = np.zeros((0, 3))
            return Characterisation(z, z.copy(), np.zeros(0, bool))
        raw = np.asarray(self.model(images, training=False), np.float64)
        mean, sigma = decode(raw, self.target_centre, self.target_half_width)
        return Characterisation(mean, sigma, edge)
