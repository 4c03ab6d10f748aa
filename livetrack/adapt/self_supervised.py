"""``livetrack adapt MOVIE --self-supervised``: LodeSTAR on the movie's own crops.

For particles the simulator cannot render (rings of unknown optics, irregular or
decorated particles): the particles are found as the strongest smoothed deviations
from each frame's median, bright or dark; the crop is sized from the strongest
one's visible radius; windows around the isolated ones (no other particle within
the crop) are the training data (:mod:`livetrack.training.lodestar`). The folder
holds ``model.keras``, ``card.json`` (``outputs.kind = "lodestar"``),
``calibration.npy`` (a few of the movie's frames, normalised, that int8 is
calibrated on) and ``fit.png`` (a frame with what the model finds), written atomically as
:func:`livetrack.adapt.run.adapt_movie` writes its.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from livetrack.adapt.measure import AdaptError
from livetrack.adapt.run import model_folder, read_movie, refuse_existing
from livetrack.artifact import Expects, ModelCard, Outputs, Training, write_card
from livetrack.detection.appearance import movie_polarity
from livetrack.detection.lodestar import (
    CALIBRATION,
    STRIDE,
    calibration_frames,
    lodestar_normalise,
)
from livetrack.single.size import particle_extent

#: frames read for training windows (the movie's first ones)
FRAMES = 32
#: a particle stands this many robust σ above the smoothed deviation map
PEAK_SIGMAS = 8.0
#: windows training needs; fewer and ``adapt`` says what it found
MIN_WINDOWS = 8
#: the crop's side is kept within these (px). At 16 px a crop holds 4 × 4 cells, and
#: plain background, whose weights sum to 1 over any such crop, reaches a particle's
#: weight in a vote disc: on simulated beads (σ 2 px) the network learnt an origin
#: 0.66 / −0.37 px off the centre; 24 px: −0.04 / −0.02 px (32 px: 0.06 / −0.04)
CROP_RANGE = (24, 96)
#: a cluster counts as a particle with this share of the weight a training crop's
#: particle gathers
VOTE_SHARE = 0.5
#: px around the visible particle kept in the crop: room for the shifts
MARGIN_PX = 3
#: a particle's votes are gathered within this radius (px)
VOTE_RADIUS_PX = 3.0
#: training steps (32 pairs of views each): ~25–90 s on 2 cores, by the crop's size
STEPS = 1500
#: particles whose crops' median radial-symmetry F reaches this are radially symmetric
#: (rings, discs, spots), and the model's detections are centred on their symmetry
#: (``refinement = "radial_symmetry"``). The six real ring movies here: 399–4883; the
#: bacteria (bright, elongated): 57. On DeepTrack's noisy beads, lit from one side, the
#: network's own origin sat 0.69 / 0.40 px off an expert trackpy's centres (75 % within
#: 1 px both ways; centred: 100 %)
SYMMETRIC_F = 200.0
#: a detection scoring this or more looks like the training crops: the learnt kind
#: scores 0.996 ± 0.017 on DeepTrack's bacteria, ≥ 0.976 for 95 % of the ring movies'
#: detections; the microspheres among the bacteria 0.67 ± 0.17
LIKE_CROPS_SCORE = 0.9
#: frames the finished model is run on to count its detections by kind
SCORED_FRAMES = 8
#: ``adapt`` names two kinds when this share of the detections or more score less
#: (the bacteria among microspheres: 71 %; the real ring, colloid and trap movies
#: 0–1.6 %; beads in several focal planes, one kind: 47 %, so it is said, not cut)
UNLIKE_SHARE = 0.25


@dataclass(frozen=True)
class Scores:
    """What the finished model finds on the movie's first frames, by its score."""

    #: detections a frame that score like the training crops (≥ LIKE_CROPS_SCORE)
    like_crops: float
    #: those scoring less: another kind of particle, or the same looking otherwise
    #: (out of focus, cut by the edge, touching another)
    unlike: float

    @property
    def unlike_share(self) -> float:
        """The share of the detections unlike the crops."""
        return self.unlike / max(self.like_crops + self.unlike, 1e-9)


@dataclass(frozen=True)
class Found:
    """What the movie showed: the particles' size, and the training windows."""

    radius_px: float
    crop: int
    windows: int
    per_frame: float
    polarity: str | None
    #: the median radial-symmetry F of the crops (see :data:`SYMMETRIC_F`)
    symmetry_f: float = 0.0

    @property
    def symmetric(self) -> bool:
        """The particles are radially symmetric: centre the detections on their symmetry."""
        return self.symmetry_f >= SYMMETRIC_F

    @property
    def symmetry_half_px(self) -> int:
        """The half side of the window the centring reads."""
        return max(8, int(np.ceil(self.radius_px)))


def crop_side(radius: float) -> int:
    """A multiple of the network's cell holding the visible particle with a margin."""
    side = int(np.ceil((2 * radius + 2 * MARGIN_PX) / STRIDE) * STRIDE)
    return int(np.clip(side, *CROP_RANGE))


def particle_peaks(frame: NDArray[np.float32], radius: float) -> NDArray[np.intp]:
    """(N, 2) integer x, y of the particles in a normalised frame, strongest first."""
    smooth = ndimage.gaussian_filter(np.abs(frame), max(1.0, radius / 3))
    med = float(np.median(smooth))
    mad = 1.4826 * float(np.median(np.abs(smooth - med)))
    size = 2 * max(1, int(radius)) + 1
    peak = (smooth == ndimage.maximum_filter(smooth, size=size)) & (
        smooth > med + PEAK_SIGMAS * max(mad, 1e-6)
    )
    ys, xs = np.nonzero(peak)
    order = np.argsort(-smooth[ys, xs])
    return np.column_stack([xs[order], ys[order]])


def training_windows(
    frames: list[NDArray[np.float32]], crop: int, pad: int
) -> tuple[NDArray[np.float32], float]:
    """Windows (crop + 2·pad) around isolated particles, and the particles per frame."""
    half = crop // 2 + pad
    out, count = [], 0
    for f in frames:
        pts = particle_peaks(f, (crop / 2 - MARGIN_PX))
        count += len(pts)
        alone = np.ones(len(pts), bool)
        if len(pts) > 1:
            d, _ = cKDTree(pts).query(pts, k=2)
            alone = d[:, 1] > 0.75 * crop
        h, w = f.shape
        for (x, y), ok in zip(pts, alone, strict=True):
            if ok and half <= y <= h - half and half <= x <= w - half:
                out.append(f[y - half : y + half, x - half : x + half])
    return np.array(out, np.float32).reshape(-1, 2 * half, 2 * half), count / max(len(frames), 1)


def find_particles(stack: NDArray[Any], pad: int) -> tuple[Found, NDArray[np.float32]]:
    """Size the particles and cut the training windows, or say what was found (AdaptError)."""
    if stack.ndim != 3 or len(stack) == 0:
        raise AdaptError(f"expected a movie of 2-D frames, got shape {stack.shape}")
    frames = [lodestar_normalise(f) for f in stack]
    _, _, radius = particle_extent(stack[0])
    crop = crop_side(radius)
    if min(stack.shape[1:]) < crop + 2 * pad:
        raise AdaptError(f"frames of {stack.shape[2]}×{stack.shape[1]} px are too small for "
                         f"particles {2 * radius:.0f} px across: --self-supervised needs "
                         f"{crop + 2 * pad} px around each")  # fmt: skip
    windows, per_frame = training_windows(frames, crop, pad)
    if len(windows) < MIN_WINDOWS:
        raise AdaptError(
            f"found {len(windows)} isolated particles in {len(frames)} frames "
            f"({per_frame:.1f} per frame, {2 * radius:.0f} px across): --self-supervised "
            f"needs at least {MIN_WINDOWS} with {crop + 2 * pad} px of frame around them"
        )
    found = Found(float(radius), crop, len(windows), per_frame, movie_polarity(stack))
    return replace(found, symmetry_f=crops_symmetry(windows, found.symmetry_half_px)), windows


def crops_symmetry(windows: NDArray[np.float32], half: int) -> float:
    """The median radial-symmetry F of the windows' particles, each at its symmetric centre."""
    from livetrack.detection.symmetry import radial_f, symmetric_centres

    c = (windows.shape[1] - 1) / 2
    f = []
    for w in windows:
        x, y = symmetric_centres(w, np.array([c]), np.array([c]), half)
        f.append(float(radial_f(w, x, y, half)[0]))
    return float(np.nanmedian(f)) if f else 0.0


def _card(found: Found, movie: str, output: Path, cfg: Any, weight: float, loss: float,
          seconds: float, model: Any, pixel_size_um: float | None) -> ModelCard:  # fmt: skip
    from livetrack.runtime import package_versions

    modality = "fluorescence" if found.polarity == "bright-on-dark" else "brightfield"
    return ModelCard(
        name=f"lodestar-{Path(movie).stem}",
        description=f"LodeSTAR trained by livetrack adapt --self-supervised on {Path(movie).name}",
        expects=Expects(
            modality=modality,
            pixel_size_um=pixel_size_um or 1.0,
            wavelength_um=0.0,
            numerical_aperture=0.0,
            psf_sigma_px=max(found.radius_px / 2, 0.5),
            polarity=found.polarity,
        ),
        outputs=Outputs(
            kind="lodestar",
            crop_px=found.crop,
            threshold=VOTE_SHARE,
            channels=("dx_px", "dy_px", "weight_logit"),
            refinement="radial_symmetry" if found.symmetric else "none",
            symmetry_half_px=found.symmetry_half_px,
            columns=("x", "y", "score"),
            vote_radius_px=VOTE_RADIUS_PX,
        ),
        training=Training(
            config_file="",
            config=asdict(cfg),
            seed=cfg.seed,
            steps=cfg.steps,
            epochs=1,
            seconds=round(seconds, 1),
            versions=package_versions(("livetrack", "tensorflow", "keras", "numpy")),
            command=f"livetrack adapt {movie} -o {output} --self-supervised",
        ),
        metrics={
            "self_supervised": {
                "movie": movie,
                "found": asdict(found),
                "agreement_px2": round(loss, 5),
            }
        },
        parameters=int(model.count_params()),
    )


@dataclass(frozen=True)
class SelfSupervisedResult:
    """The model's folder, what was found, the views' final agreement and the time taken."""

    model: Path
    found: Found
    agreement_px2: float
    seconds: float
    scores: Scores | None = None


def adapt_self_supervised(
    movie: str | Path,
    output: str | Path,
    *,
    frames: int = FRAMES,
    steps: int = STEPS,
    flips: bool = True,
    force: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> SelfSupervisedResult:
    """Train a LodeSTAR model on ``movie``'s own particles; no simulator, no labels.

    Parameters
    ----------
    movie
        Any movie ``process`` reads; its first ``frames`` frames give the crops.
    output
        The model folder to write; refused if it exists, unless ``force``.
    flips
        The particles look the same mirrored (beads, rings); False for asymmetric ones.

    Raises
    ------
    AdaptError
        A movie it cannot read or find particles in, with what was found; nothing is
        written.
    """
    from livetrack.training.lodestar import (
        MAX_SHIFT,
        LodestarTraining,
        particle_weight,
        train_lodestar,
    )

    t0 = time.perf_counter()
    out = Path(output)
    refuse_existing(out, force)
    info, stack = read_movie(movie, frames)
    pad = int(np.ceil(MAX_SHIFT)) + 2
    found, windows = find_particles(np.asarray(stack), pad)
    cfg = LodestarTraining(crop=found.crop, steps=steps, flips=flips)
    with model_folder(out) as work:
        model, loss, seconds = train_lodestar(windows, cfg, on_step)
        crops = windows[:, pad : pad + found.crop, pad : pad + found.crop]
        weight = particle_weight(model, crops, VOTE_RADIUS_PX)
        model.save(work / "model.keras")
        np.save(work / CALIBRATION, calibration_frames(np.asarray(stack)))
        card = _card(found, str(movie), out, cfg, weight, loss, seconds, model,
                     info.pixel_size_um)  # fmt: skip
        write_card(work, card)
        scores = _scored(work, np.asarray(stack[:SCORED_FRAMES]))
        metrics = {**card.metrics}
        metrics["self_supervised"] = {**metrics["self_supervised"], "scores": asdict(scores)}
        write_card(work, card.model_copy(update={"metrics": metrics}))
    return SelfSupervisedResult(out, found, loss, time.perf_counter() - t0, scores)


def _scored(folder: Path, frames: NDArray[Any]) -> Scores:
    """Count the new model's detections by kind on ``frames``; draw the first (fit.png)."""
    from livetrack.detection.lodestar import LodestarDetector

    detector = LodestarDetector(folder)
    found = [detector.detect(f) for f in frames]
    like = sum(int((d.score >= LIKE_CROPS_SCORE).sum()) for d in found)
    total = sum(len(d) for d in found)
    _picture(frames[0], found[0], folder / "fit.png")
    return Scores(like / len(frames), (total - like) / len(frames))


def _picture(frame: NDArray[Any], d: Any, path: Path) -> None:
    """A frame with what the new model finds in it (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 6 * frame.shape[0] / frame.shape[1]))
    ax.imshow(frame, cmap="gray")
    like = d.score >= LIKE_CROPS_SCORE
    ax.plot(d.x[like], d.y[like], "+", color="red", ms=10, mew=1.5)
    ax.plot(d.x[~like], d.y[~like], "x", color="gold", ms=7, mew=1.2)
    ax.set_title(f"found by the self-supervised model: {int(like.sum())} like its crops "
                 f"(red +), {int((~like).sum())} scoring < {LIKE_CROPS_SCORE} (yellow ×)",
                 fontsize=8)  # fmt: skip
    ax.set_axis_off()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
