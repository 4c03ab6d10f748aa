"""Running a self-supervised (LodeSTAR) model: every cell votes for a particle's centre.

LodeSTAR (Midtvedt et al., Nat. Commun. 13, 7492, 2022) learns from a movie's own
crops, without labels, a fully convolutional network whose every cell (4 px) gives
a displacement to the particle's centre and a weight. Trained on crops of one
particle each, the weights of a crop sum (softmax) to one vote. On a whole frame
each particle gathers its cells' votes in one tight cluster. Each cell's weight is
taken relative to the crop around it, as in training (:func:`local_weights`), so a
particle's votes weigh ~1 and the background's little; clusters weighing more than
the card's threshold are the particles, each at its votes' weighted mean.
The network is built and trained by :mod:`livetrack.training.lodestar`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from livetrack.artifact import ArtifactError, model_dir
from livetrack.detection.detector import Detections

FloatArray = NDArray[np.float64]
#: the network's cell, px: two 2× poolings
STRIDE = 4


def lodestar_normalise(frame: NDArray[np.generic]) -> NDArray[np.float32]:
    """(frame − median) / standard deviation: the network's input, whatever the camera."""
    f = np.asarray(frame, np.float32)
    med = float(np.median(f[::2, ::2]))
    std = float(np.std(f[::2, ::2]))
    return (f - np.float32(med)) / np.float32(std if std > 0 else 1.0)


def cell_votes(out: NDArray[np.floating]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each cell's vote (x, y in px of the network's input) and its weight logit."""
    h, w = out.shape[:2]
    cy, cx = np.mgrid[0:h, 0:w].astype(np.float64)
    vx = (cx + 0.5) * STRIDE - 0.5 + out[..., 0]
    vy = (cy + 0.5) * STRIDE - 0.5 + out[..., 1]
    return vx.ravel(), vy.ravel(), np.asarray(out[..., 2], np.float64).ravel()


def local_weights(logit: NDArray[np.floating], cells: int) -> NDArray[np.float64]:
    """Each cell's weight as the training gave it: a softmax over the crop around it.

    In training every crop's weights sum to 1 and its particle takes nearly all of
    it; the logits' level is free and differs between particles. Here each cell is
    normalised by the exponentials of the ``cells`` × ``cells`` cells around it, so a
    particle's cells sum to ~1 and a crop of plain background spreads its 1 thinly.
    """
    z = np.asarray(logit, np.float64)
    e = np.exp(np.maximum(z - z.max(), -600.0))  # float64 keeps e^-600
    total = ndimage.uniform_filter(e, size=cells, mode="constant") * cells * cells
    w: NDArray[np.float64] = e / total
    return w


def cluster_votes(
    vx: FloatArray,
    vy: FloatArray,
    weight: FloatArray,
    shape: tuple[int, int],
    radius: float,
    min_mass: float,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Particles where the votes' weight within ``radius`` px of one point reaches ``min_mass``.

    A particle's cells all point at it; the background's scatter, with little weight.
    The weights are summed at their votes' pixels; peaks of that sum over a disc of
    ``radius`` (apart by at least ``radius``) are the particles, each at its votes'
    weighted mean. Returns x, y and mass.
    """
    h, w = shape
    # votes of no weight cannot make a particle: fewer to bin and to search
    inside = (vx > -0.5) & (vx < w - 0.5) & (vy > -0.5) & (vy < h - 0.5) & (weight > 1e-4)
    vx, vy, weight = vx[inside], vy[inside], weight[inside]
    e = np.zeros(0)
    if not len(vx):
        return e, e, e
    ix, iy = np.rint(vx).astype(np.intp), np.rint(vy).astype(np.intp)
    density = np.bincount(iy * w + ix, weight, minlength=h * w).reshape(h, w).astype(np.float32)
    r = max(1, round(radius))
    # a box of the disc's width finds the peaks (separable: ~50× cheaper than the
    # disc); each peak's mass is then taken over the disc itself, below
    mass = ndimage.uniform_filter(density, 2 * r + 1, mode="constant") * (2 * r + 1) ** 2
    py, px = np.nonzero(mass >= min_mass)
    if not len(px):
        return e, e, e
    # the box sum has plateaus; the lightly blurred density has one top per cluster
    smooth = np.pad(ndimage.gaussian_filter(density, 1.0), 1, mode="constant")
    top = np.ones(len(px), bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            top &= smooth[py + 1, px + 1] >= smooth[py + dy, px + dx]
    py, px = py[top], px[top]
    order = np.argsort(-mass[py, px], kind="stable")
    py, px = py[order], px[order]
    # two tops of one cluster: the heavier keeps it
    keep = np.ones(len(px), bool)
    for i, j in sorted(cKDTree(np.column_stack([px, py])).query_pairs(radius)):
        if keep[i]:
            keep[j] = False
    py, px = py[keep], px[keep]
    tree = cKDTree(np.column_stack([vx, vy]))
    xs, ys, ms = [], [], []
    taken = np.zeros(len(vx), bool)
    for members in tree.query_ball_point(np.column_stack([px, py]), radius + 0.5):
        idx = np.asarray(members, np.intp)
        idx = idx[~taken[idx]]
        m = float(weight[idx].sum())
        if m < min_mass:
            continue
        taken[idx] = True
        xs.append(float(np.dot(weight[idx], vx[idx]) / m))
        ys.append(float(np.dot(weight[idx], vy[idx]) / m))
        ms.append(m)
    return np.array(xs), np.array(ys), np.array(ms)


class LodestarDetector:
    """A LodeSTAR artifact behind the detector interface.

    Parameters
    ----------
    artifact
        Directory whose card says ``outputs.kind = "lodestar"`` (``livetrack adapt
        --self-supervised``).
    single
        One particle per frame (a trap): the one with the largest mass.
    views
        Reads of each frame, mirrored in x, y or both and mapped back, whose votes are
        pooled (1–4); the network is only nearly equivariant, and the mirrored reads
        average its error out (synthetic rings: 0.12 → 0.04 px RMS, the bias gone).
        None: 4 for one particle (small frames), 1 for whole frames (live: each read
        costs ~10 ms per 512² frame on 2 cores); ``process`` asks for 4.
    """

    #: process: frames need no index (no per-block state)
    indexed = False

    def __init__(
        self, artifact: str | Path, single: bool = False, views: int | None = None
    ) -> None:
        from livetrack.holography.characterise import load_crop_model, traced_call

        self.path = model_dir(artifact)
        self.card, self.model = load_crop_model(self.path, "lodestar", "a LodeSTAR model")
        out = self.card.outputs
        if out.vote_radius_px is None:
            raise ArtifactError(f"{self.path}: a LodeSTAR card needs vote_radius_px")
        self.single = single
        self.views = (4 if single else 1) if views is None else views
        if not 1 <= self.views <= 4:
            raise ValueError(f"views must be 1 to 4, got {self.views}")
        self.name = f"LodeSTAR {self.card.name!r}" + (" (one particle)" if single else "")
        self._call = traced_call(self.model)

    def reset(self) -> None:
        """Nothing is kept between frames."""

    def warm_up(self, shape: tuple[int, int] = (512, 512)) -> None:
        """Trace the network for frames of ``shape`` before the first real one is timed."""
        self.detect(np.zeros(shape, np.float32))

    def _input(self, frame: NDArray[np.generic]) -> NDArray[np.float32]:
        img = lodestar_normalise(frame)
        h, w = img.shape
        ph, pw = -h % STRIDE, -w % STRIDE
        return np.pad(img, ((0, ph), (0, pw)), mode="reflect") if ph or pw else img

    def votes(self, frame: NDArray[np.generic]) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Every cell's vote (x, y) and weight, over :attr:`views` mirrored reads."""
        img = self._input(frame)
        h, w = img.shape
        cells = int(self.card.outputs.crop_px or 32) // STRIDE
        flips = ((1, 1), (-1, 1), (1, -1), (-1, -1))[: self.views]
        batch = np.stack([img[::fy, ::fx] for fx, fy in flips])[..., None]
        outs = np.asarray(self._call(np.ascontiguousarray(batch)), np.float32)
        xs, ys, ws = [], [], []
        for out, (fx, fy) in zip(outs, flips, strict=True):
            vx, vy, _ = cell_votes(out)
            xs.append(vx if fx > 0 else w - 1 - vx)  # back into the frame's own axes
            ys.append(vy if fy > 0 else h - 1 - vy)
            ws.append(local_weights(out[..., 2], cells).ravel() / len(flips))
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)

    def detect(
        self,
        frame: NDArray[np.generic],
        threshold: float | None = None,
        index: int | None = None,
    ) -> Detections:
        """Every particle's centre in one frame.

        ``score``: its votes' weight (~1: as the training saw it); ``threshold``
        overrides the card's least weight; ``index`` is taken and not needed (nothing
        is kept between frames).
        """
        t0 = time.perf_counter()
        f = np.asarray(frame)
        if f.ndim != 2:
            raise ValueError(f"expected a 2-D frame, got shape {f.shape}")
        vx, vy, weight = self.votes(f)
        t1 = time.perf_counter()
        o = self.card.outputs
        share = o.threshold if threshold is None else threshold
        x, y, mass = cluster_votes(vx, vy, weight, f.shape, float(o.vote_radius_px or 3), share)
        if self.single and len(x) > 1:
            best = int(np.argmax(mass))
            x, y, mass = x[best : best + 1], y[best : best + 1], mass[best : best + 1]
        nan = np.full(len(x), np.nan)
        t2 = time.perf_counter()
        return Detections(x, y, mass, nan, nan, nan,
                          {"model": (t1 - t0) * 1e3, "readout": (t2 - t1) * 1e3})  # fmt: skip

    def detect_many(self, frames: list[NDArray[np.generic]]) -> list[Detections]:
        """:meth:`detect` on each frame."""
        return [self.detect(f) for f in frames]
