"""``livetrack adapt MOVIE -o DIR``: measure the movie, write its preset, fine-tune, done.

Everything is written into a hidden folder beside ``DIR`` and renamed into place at
the end: a movie that cannot be fitted, a failed training or an interruption leaves
no half-written model.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livetrack.adapt.measure import AdaptError, Measured, inverted, measure_movie
from livetrack.adapt.movie_cuts import MovieCuts, movie_cuts
from livetrack.adapt.preset import EPOCHS, STEPS_PER_EPOCH, adapted_preset, write_preset
from livetrack.adapt.rings import RingsMeasured
from livetrack.artifact import default_model_dir, read_card, write_card
from livetrack.detection.appearance import movie_polarity

#: frames read to measure the movie (its first ones)
FRAMES = 16


@dataclass(frozen=True)
class AdaptResult:
    """The adapted model's folder, what was measured, and how long it all took."""

    model: Path
    measured: Measured | RingsMeasured
    seconds: float
    val_loss: float
    #: the read-out's cuts taken from the movie (spots: None for rings)
    cuts: MovieCuts | None = None


def read_movie(movie: str | Path, frames: int) -> tuple[Any, Any]:
    """The movie's info and its first ``frames`` frames (AdaptError if unreadable)."""
    from livetrack.offline.movies import MovieError, MovieReader

    try:
        reader = MovieReader(movie)
    except MovieError as exc:  # it names the movie already
        raise AdaptError(str(exc)) from None
    except OSError as exc:
        raise AdaptError(f"{movie}: {exc}") from None
    try:
        return reader.info, reader.read(0, min(frames, reader.info.n_frames))
    finally:
        reader.close()


def refuse_existing(out: Path, force: bool) -> None:
    """Refuse to replace a folder unless ``force`` (before any time is spent)."""
    if out.exists() and not force:
        raise AdaptError(f"{out} exists: choose another folder, or --force to replace it")


@contextmanager
def model_folder(out: Path) -> Iterator[Path]:
    """A hidden folder beside ``out`` to write in, renamed to ``out`` when the block ends.

    A failure or an interruption inside the block removes it: no half-written model.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.adapting-", dir=out.parent))
    try:
        yield work
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _finish_card(
    folder: Path, movie: str, output: Path, measured: Any, t0: float, base: str = "default",
    outputs: dict[str, Any] | None = None, cuts: MovieCuts | None = None,
) -> None:  # fmt: skip
    card = read_card(folder)
    if cuts is not None:
        outputs = {**(outputs or {}), **cuts.outputs()}
    training = card.training.model_copy(
        update={"command": f"livetrack adapt {movie} -o {output}", "config_file": "preset.toml"}
    )
    metrics = {
        **card.metrics,
        "adaptation": {"movie": movie, "base_model": base, "measured": measured.as_record(),
                       "cuts": None if cuts is None else asdict(cuts),
                       "seconds": round(time.perf_counter() - t0, 1)},
    }  # fmt: skip
    polarity = measured.polarity or "bright-on-dark"  # process then sees no mismatch
    expects = card.expects.model_copy(update={"polarity": polarity})
    write_card(
        folder,
        card.model_copy(
            update={"training": training, "metrics": metrics, "expects": expects,
                    "outputs": card.outputs.model_copy(update=outputs or {}),
                    "description": f"fine-tuned by livetrack adapt for {Path(movie).name}"}
        ),
    )  # fmt: skip


def adapt_movie(
    movie: str | Path,
    output: str | Path,
    *,
    frames: int = FRAMES,
    epochs: int = EPOCHS,
    steps_per_epoch: int = STEPS_PER_EPOCH,
    force: bool = False,
    workers: int = 2,
    verbose: int = 1,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> AdaptResult:
    """Adapt a detector to ``movie``: its preset, a picture of the fit, a fine-tuned model.

    Bright spots: the fluorescence preset set to their measured width, signal, camera
    and density, the shipped detector fine-tuned on it. Dark spots the same, inverted:
    the card says so, and ``process`` and ``serve`` invert the frames for it. Rings
    (brightfield or holographic particles): the brightfield preset set to the
    Lorenz–Mie sphere fitted to their mean image (:mod:`livetrack.adapt.rings`), the
    shipped brightfield detector fine-tuned on it.

    Parameters
    ----------
    movie
        Any movie ``process`` reads; its first ``frames`` frames are measured.
    output
        The model folder to write (``model.keras``, ``card.json``, ``preset.toml``,
        ``fit.png``); refused if it exists, unless ``force``.
    epochs, steps_per_epoch
        Fine-tuning's length (the default is about 2 minutes on 2 cores).

    Raises
    ------
    AdaptError
        A movie it cannot read or fit, with what was found; nothing is written.
    """
    from livetrack.training import train

    t0 = time.perf_counter()
    out = Path(output)
    refuse_existing(out, force)
    info, stack = read_movie(movie, frames)
    if movie_polarity(stack) == "interference":
        rings = (movie, out, info, stack, epochs, steps_per_epoch, t0)
        return _adapt_rings(*rings, workers=workers, verbose=verbose, on_epoch=on_epoch)
    base_card = read_card(default_model_dir())
    measured = measure_movie(stack, base_card)
    with model_folder(out) as work:
        name = f"adapted-{Path(str(movie)).stem}"
        data = adapted_preset(
            measured, name, str(movie), info.pixel_size_um, info.frame_interval_s,
            epochs, steps_per_epoch,
        )  # fmt: skip
        preset = write_preset(data, work / "preset.toml", measured, str(movie))
        _picture(stack, preset, measured, work / "fit.png")
        result = train(
            preset, work, workers=workers, verbose=verbose, on_epoch=on_epoch,
            init_from=default_model_dir(),
        )  # fmt: skip
        seen = np.asarray(stack, np.float64)
        cuts = movie_cuts(work, inverted(seen) if measured.polarity == "dark-on-bright" else seen,
                          preset)  # fmt: skip
        _finish_card(work, str(movie), out, measured, t0, cuts=cuts)
    return AdaptResult(out, measured, time.perf_counter() - t0, result.best_val_loss, cuts)


def _adapt_rings(
    movie: str | Path, out: Path, info: Any, stack: Any, epochs: int, steps: int, t0: float,
    **train_kw: Any,
) -> AdaptResult:  # fmt: skip
    """:func:`adapt_movie` for rings: the Lorenz–Mie fit, then the brightfield detector."""
    from livetrack.adapt.rings import (
        BASE_MODEL,
        RINGS_MIN_F,
        SPREAD_MIN_F,
        measure_rings,
        rings_preset,
        write_rings_preset,
    )
    from livetrack.artifact import model_dir
    from livetrack.training import train

    measured, (mean, fitted) = measure_rings(stack, info.pixel_size_um)
    with model_folder(out) as work:
        data = rings_preset(measured, f"adapted-{Path(str(movie)).stem}", str(movie), epochs,
                            steps)  # fmt: skip
        preset = write_rings_preset(data, work / "preset.toml", measured, str(movie))
        try:
            from livetrack.adapt.picture import draw_rings_fit

            draw_rings_fit(mean, fitted, preset, measured, work / "fit.png")
        except ImportError:  # matplotlib is imported when drawing
            pass
        result = train(preset, work, init_from=model_dir(BASE_MODEL), **train_kw)
        # the network finds the rings; their symmetry, over the mean particle's window,
        # centres them (its offsets alone scattered 1–1.5 px on a noisy movie) and drops
        # the false rings it found in a video's texture
        min_f = SPREAD_MIN_F if measured.spread else RINGS_MIN_F
        centring = {"refinement": "radial_symmetry", "symmetry_half_px": measured.half_px,
                    "min_symmetry_f": min_f}  # fmt: skip
        _finish_card(work, str(movie), out, measured, t0, BASE_MODEL, centring)
    return AdaptResult(out, measured, time.perf_counter() - t0, result.best_val_loss)


def _picture(stack: Any, preset: Path, measured: Measured, path: Path) -> None:
    """Real crops beside simulated ones and the residual (skipped without matplotlib)."""
    from livetrack.adapt.picture import draw_fit

    if measured.polarity == "dark-on-bright":  # as the model sees them (one frame drawn)
        stack = inverted(np.asarray(stack[:1], np.float64))
    try:
        draw_fit(stack, preset, measured, path)
    except ImportError:  # matplotlib is imported when drawing
        return
