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
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from livetrack.artifact import MODEL_NAME, ArtifactError, model_dir
from livetrack.detection._onnx import Network
from livetrack.detection.detector import Detections
from livetrack.detection.normalise import sub_sample
from livetrack.detection.symmetry import centred_inside_frame

FloatArray = NDArray[np.float64]
#: the network's cell, px (the trunk's fold)
STRIDE = 4
#: the movie's frames int8 is calibrated on, beside the model (:func:`calibration_frames`)
CALIBRATION = "calibration.npy"


def lodestar_normalise(frame: NDArray[np.generic]) -> NDArray[np.float32]:
    """(frame − median) / standard deviation: the network's input, whatever the camera."""
    f = np.asarray(frame, np.float32)
    sample, _ = sub_sample(f)
    med = float(np.median(sample))
    std = float(np.std(sample))
    return (f - np.float32(med)) / np.float32(std if std > 0 else 1.0)


def cell_votes(out: NDArray[np.floating]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each cell's vote (x, y in px of the network's input) and its weight logit."""
    cx, cy = _cell_centres(*out.shape[:2])
    vx = cx + out[..., 0]
    vy = cy + out[..., 1]
    return vx.ravel(), vy.ravel(), np.asarray(out[..., 2], np.float64).ravel()


@lru_cache(maxsize=8)
def _cell_centres(h: int, w: int) -> tuple[FloatArray, FloatArray]:
    """The centres (x, y; px of the network's input) of an ``h`` × ``w`` grid of cells."""
    cy, cx = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = (cx + 0.5) * STRIDE - 0.5, (cy + 0.5) * STRIDE - 0.5
    x.setflags(write=False)  # shared between calls
    y.setflags(write=False)
    return x, y


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


#: the grid (px) the votes are binned on to find the particles (the network's cell):
#: the 2-px grid cost 1.6× the time, the 1-px grid 4–5× (box sums and blurs of the
#: whole frame), for the same particles (real rings: 99 % within 0.02 px of the 2-px
#: grid's, all within 0.13 px; the centres are the claimed votes' weighted means)
BIN = 4


def _bin(vx: FloatArray, vy: FloatArray, columns: int) -> NDArray[np.intp]:
    """Each vote's bin, row-major over a grid ``columns`` bins wide."""
    bx = np.floor((vx + 0.5) / BIN).astype(np.intp)
    by = np.floor((vy + 0.5) / BIN).astype(np.intp)
    out: NDArray[np.intp] = by * columns + bx
    return out


def _box_sum(a: NDArray[np.float32], r: int) -> NDArray[np.float32]:
    """Each bin's sum over the ``2r + 1`` square around it (zero beyond the edges)."""
    p = np.pad(a, r)
    h, w = a.shape
    rows = np.zeros((h, p.shape[1]), np.float32)
    for i in range(2 * r + 1):
        rows += p[i : i + h]
    out = np.zeros((h, w), np.float32)
    for j in range(2 * r + 1):
        out += rows[:, j : j + w]
    return out


def _binomial(a: NDArray[np.float32]) -> NDArray[np.float32]:
    """``a`` blurred by (1, 2, 1)/4 along both axes, one pixel lost at each edge."""
    rows = 2 * a[1:-1] + a[:-2] + a[2:]
    out: NDArray[np.float32] = (2 * rows[:, 1:-1] + rows[:, :-2] + rows[:, 2:]) / 16
    return out


def _disc_bins(
    tx: FloatArray, ty: FloatArray, grid: tuple[int, int], reach: float
) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """The bins (row-major, one row per centre) that the disc of ``reach`` px may touch."""
    hb, wb = grid
    rb = int(np.ceil(reach / BIN)) + 1
    oy, ox = (o.ravel() for o in np.mgrid[-rb : rb + 1, -rb : rb + 1])
    by = np.floor((ty + 0.5) / BIN).astype(np.intp)[:, None] + oy
    bx = np.floor((tx + 0.5) / BIN).astype(np.intp)[:, None] + ox
    return by * wb + bx, (by >= 0) & (by < hb) & (bx >= 0) & (bx < wb)


def _painted(
    tx: FloatArray, ty: FloatArray, grid: tuple[int, int], reach: float
) -> NDArray[np.bool_]:
    """The bins within ``reach`` px (and a bin) of any centre, as a flat mask."""
    where, ok = _disc_bins(tx, ty, grid, reach)
    mask = np.zeros(grid[0] * grid[1], bool)
    mask[where[ok]] = True
    return mask


def _claim(
    vx: FloatArray, vy: FloatArray, bins: NDArray[np.intp], tx: FloatArray, ty: FloatArray,
    grid: tuple[int, int], reach: float,
) -> NDArray[np.intp]:  # fmt: skip
    """Each vote's centre (index into ``tx``, or −1): the first whose disc holds it.

    The centres, heaviest first, paint their discs' bins; the heaviest paints last and
    wins the bins two share. A vote (in bin ``bins``) then takes its bin's centre if
    within ``reach``.
    """
    where, ok = _disc_bins(tx, ty, grid, reach)
    owner = np.broadcast_to(np.arange(len(tx))[:, None], where.shape)
    label = np.full(grid[0] * grid[1], -1, np.intp)
    label[where[ok][::-1]] = owner[ok][::-1]
    lab = label[bins]
    mine = lab >= 0
    far = np.hypot(vx[mine] - tx[lab[mine]], vy[mine] - ty[lab[mine]]) > reach
    lab[np.flatnonzero(mine)[far]] = -1
    return lab


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
    The weights are summed in bins of :data:`BIN` px; where a box of the disc's width
    holds ``min_mass``, the tops of the lightly blurred sum (apart by at least
    ``radius``, the heavier first) start the particles. Each takes the votes within
    ``radius`` + ½ px of it and moves to their weighted mean, twice; those whose
    votes weigh ``min_mass`` are the particles. Returns x, y and mass.
    """
    h, w = shape
    # votes of no weight cannot make a particle: fewer to bin and to search
    inside = (vx > -0.5) & (vx < w - 0.5) & (vy > -0.5) & (vy < h - 0.5) & (weight > 1e-4)
    vx, vy, weight = vx[inside], vy[inside], weight[inside]
    e = np.zeros(0)
    if not len(vx):
        return e, e, e
    grid = (-(-h // BIN), -(-w // BIN))
    bins = _bin(vx, vy, grid[1])
    total = np.bincount(bins, weight, minlength=grid[0] * grid[1])
    density = total.reshape(grid).astype(np.float32)
    box = _box_sum(density, max(1, round(radius / BIN)))
    py, px = np.nonzero(box >= min_mass)
    if not len(px):
        return e, e, e
    # the box sum has plateaus; the lightly blurred sum has one top per cluster
    smooth = _binomial(np.pad(density, 2))  # padded by one
    top = np.ones(len(px), bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            top &= smooth[py + 1, px + 1] >= smooth[py + dy, px + dx]
    py, px = py[top], px[top]
    order = np.argsort(-box[py, px], kind="stable")
    tx = ((px[order] + 0.5) * BIN - 0.5).astype(np.float64)
    ty = ((py[order] + 0.5) * BIN - 0.5).astype(np.float64)
    keep = np.ones(len(tx), bool)
    for i, j in sorted(cKDTree(np.column_stack([tx, ty])).query_pairs(radius)):
        if keep[i]:
            keep[j] = False
    tx, ty = tx[keep], ty[keep]
    # a centre claims within R of where it stands and moves by at most R, so no vote
    # beyond 2R of every start is ever claimed: the rest need not be looked at
    near = _painted(tx, ty, grid, 2 * (radius + 0.5))[bins]
    vx, vy, weight, bins = vx[near], vy[near], weight[near], bins[near]
    mass: FloatArray = np.zeros(len(tx))
    for _ in range(2):
        lab = _claim(vx, vy, bins, tx, ty, grid, radius + 0.5)
        sel = lab >= 0
        mass = np.bincount(lab[sel], weight[sel], minlength=len(tx)).astype(np.float64)
        held = np.maximum(mass, 1e-300)
        tx = np.where(mass > 0, np.bincount(lab[sel], weight[sel] * vx[sel], len(tx)) / held, tx)
        ty = np.where(mass > 0, np.bincount(lab[sel], weight[sel] * vy[sel], len(tx)) / held, ty)
    ok = mass >= min_mass
    return tx[ok], ty[ok], mass[ok]


def calibration_frames(stack: NDArray[Any]) -> NDArray[np.float16]:
    """Up to 4 of a movie's frames as the network sees them, ≤ 256 px a side.

    ``adapt --self-supervised`` keeps them beside the model (:data:`CALIBRATION`):
    int8 is calibrated on the movie's own light, the same in every process.
    """
    idx = np.unique(np.linspace(0, len(stack) - 1, 4).round().astype(int))
    out = []
    for i in idx:
        f = lodestar_normalise(stack[i])
        h, w = f.shape
        sh, sw = min(h, 256) // STRIDE * STRIDE, min(w, 256) // STRIDE * STRIDE
        y0, x0 = (h - sh) // 2, (w - sw) // 2
        out.append(f[y0 : y0 + sh, x0 : x0 + sw])
    return np.stack(out).astype(np.float16)


def _network(model: Any, path: Path, precision: str) -> tuple[Network, str]:
    """The model's network and its arithmetic.

    On a CPU, through ONNX Runtime: ``auto`` is int8 where the folder holds its
    movie's calibration frames (~2× faster than float32), else float32 (~1.7× faster
    than TensorFlow at 512²). On a GPU, or for another architecture: TensorFlow.
    """
    from livetrack.detection._int8 import cached_lodestar_int8
    from livetrack.detection._onnx import lodestar_graph, network_threads, session_network
    from livetrack.detection.precision import _cpu_only, requested_precision, resolve_precision
    from livetrack.holography.characterise import traced_call

    calibration = path / CALIBRATION
    asked = requested_precision(precision)
    chosen = resolve_precision(asked, int8=calibration.is_file())
    if chosen == "int8":
        if not calibration.is_file():
            raise ArtifactError(
                f"{path}: precision int8 needs {CALIBRATION} (written by livetrack adapt "
                "--self-supervised); use --precision auto"
            )
        try:
            return cached_lodestar_int8(model, path / MODEL_NAME, calibration), "int8"
        except (RuntimeError, ValueError) as exc:
            if asked == "int8":
                raise ArtifactError(f"{path}: {exc}") from None
    if _cpu_only():
        try:
            graph = lodestar_graph(model).SerializeToString()
            return session_network(graph, network_threads()), "float32"
        except (ValueError, ImportError):  # another architecture, or no ONNX Runtime
            pass
    return traced_call(model), "float32"


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
        average its error out (synthetic rings: 0.10 → 0.05 px RMS). None: 4 for one
        particle (small frames), 1 for whole frames (live: a 512² frame read once takes
        ~4 ms in int8 on one core, four times ~13 ms); ``process`` asks for 4.
    precision
        ``"auto"``, ``"int8"`` or ``"float32"`` (see :func:`_network`); the chosen one
        is :attr:`precision`.
    refine
        Centre each detection on its radial symmetry where the card says so (a model
        of rings); False: the network's own positions.
    """

    #: process: frames need no index (no per-block state)
    indexed = False

    def __init__(
        self,
        artifact: str | Path,
        single: bool = False,
        views: int | None = None,
        precision: str = "auto",
        refine: bool = True,
    ) -> None:
        from livetrack.holography.characterise import load_crop_model

        self.path = model_dir(artifact)
        self.card, self.model = load_crop_model(self.path, "lodestar", "a LodeSTAR model")
        out = self.card.outputs
        if out.vote_radius_px is None:
            raise ArtifactError(f"{self.path}: a LodeSTAR card needs vote_radius_px")
        self.single = single
        self.refine = refine
        self.views = (4 if single else 1) if views is None else views
        if not 1 <= self.views <= 4:
            raise ValueError(f"views must be 1 to 4, got {self.views}")
        self.name = f"LodeSTAR {self.card.name!r}" + (" (one particle)" if single else "")
        self._call, self.precision = _network(self.model, self.path, precision)

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
        if len(flips) == 1:  # live: the frame as it is, no copy
            batch = img[None, ..., None]
        else:
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
        if self.refine:
            x, y, mass = centred_inside_frame(f, x, y, mass, o)
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
