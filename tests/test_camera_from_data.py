"""The camera read from the movie: detections do not depend on its offset or gain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy.spatial import cKDTree
from typer.testing import CliRunner

from livetrack.cli import app
from livetrack.config import SimulationConfig
from livetrack.offline.process import DetectorSpec, track_movie
from livetrack.simulation import simulate_movie

from .conftest import small

SPEC = DetectorSpec(split=False)


def electrons(beads: SimulationConfig, gradient: float, background: float, size: int) -> Any:
    """A movie in photo-electrons (the shipped card's camera: offset 100 ADU, gain 1)."""
    ill = beads.illumination.model_copy(
        update={"gradient": [gradient, gradient / 2], "background_photons": background}
    )
    cfg = small(beads, size, size, number=size * size // 1100).model_copy(
        update={"illumination": ill}
    )
    return simulate_movie(cfg, 24, seed=3).frames.astype(np.int64) - 100


def tracked(tmp_path: Path, frames: Any, dtype: str) -> pd.DataFrame:
    path = tmp_path / f"m-{len(list(tmp_path.iterdir()))}.tif"
    tifffile.imwrite(path, frames.astype(dtype))
    table, _, _ = track_movie(path, SPEC, chunk=8)
    return table


def same(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float]:
    """Relative count change and the RMS distance of matched detections (px)."""
    d: list[float] = []
    for f, g in a.groupby("frame"):
        h = b[b["frame"] == f]
        dist, _ = cKDTree(h[["x", "y"]].to_numpy()).query(g[["x", "y"]].to_numpy())
        d += list(dist[dist < 1.0])
    return abs(len(b) - len(a)) / len(a), float(np.sqrt(np.mean(np.square(d))))


@pytest.mark.slow
def test_adding_a_constant_changes_nothing_8_and_16_bit(tmp_path: Path, beads: Any) -> None:
    e = electrons(beads, 0.0, 10.0, 192)
    ref = tracked(tmp_path, e + 100, "uint16")
    assert ref.attrs["camera"]["offset_from"] == "data"
    assert ref.attrs["camera"]["offset_adu"] == pytest.approx(100, abs=2)
    for frames, dtype, shift in ((e + 1100, "uint16", 1000), (e + 10, "uint8", -90),
                                 (e + 110, "uint8", 10)):  # fmt: skip
        t = tracked(tmp_path, np.clip(frames, 0, np.iinfo(dtype).max), dtype)
        count, rms = same(ref, t)
        assert count < 0.01
        assert rms < 0.05
        offset = t.attrs["camera"]["offset_adu"] - ref.attrs["camera"]["offset_adu"]
        assert offset == pytest.approx(shift, abs=0.05)


@pytest.mark.slow
def test_a_gain_is_measured_where_the_background_spans_levels(tmp_path: Path, beads: Any) -> None:
    e = electrons(beads, 0.6, 40.0, 256)
    ref = tracked(tmp_path, e + 100, "uint16")
    g0 = ref.attrs["camera"]["gain_adu_per_e"]
    assert ref.attrs["camera"]["gain_from"] == "data"
    assert g0 == pytest.approx(1.0, rel=0.03)  # 24 frames of 256², pixels sorted by level
    t = tracked(tmp_path, np.rint(e * 3.0) + 500, "uint16")
    assert t.attrs["camera"]["gain_adu_per_e"] == pytest.approx(3 * g0, rel=0.03)
    count, rms = same(ref, t)
    assert count < 0.01
    assert rms < 0.05


def test_a_flat_background_keeps_the_cards_gain_and_says_so(tmp_path: Path, beads: Any) -> None:
    e = electrons(beads, 0.0, 10.0, 160)
    t = tracked(tmp_path, e + 100, "uint16")
    assert t.attrs["camera"]["gain_from"] == "card"
    assert t.attrs["camera"]["offset_from"] == "data"


def test_a_stated_camera_is_used_and_recorded(tmp_path: Path, beads: Any) -> None:
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, (electrons(beads, 0.0, 10.0, 96)[:6] - 50).astype(np.int16))
    out = tmp_path / "t.csv"
    args = ["process", str(path), "-o", str(out), "--offset", "-50", "--gain", "1"]
    result = CliRunner().invoke(app, [*args, "--no-split"])
    assert result.exit_code == 0, result.output
    camera = json.loads(out.with_suffix(".json").read_text())["camera"]
    assert camera == {"offset_adu": -50.0, "gain_adu_per_e": 1.0, "offset_from": "option",
                      "gain_from": "option", "inverted": False}  # fmt: skip
    assert len(pd.read_csv(out)) > 0


def test_one_or_two_frames_read_the_camera_from_neighbouring_pixels(beads: Any) -> None:
    from livetrack.artifact import read_card
    from livetrack.detection.camera import estimate_camera
    from livetrack.detection.detector import Detector

    det = Detector()
    card = read_card("default")
    e = electrons(beads, 0.0, 20.0, 256)
    for n in (1, 2):
        frames = e[:n] + 100
        cam = estimate_camera(frames, [det.peaks(f) for f in frames], card)
        assert cam.offset_from == "data"
        assert cam.offset_adu == pytest.approx(100, abs=3)  # not the card's by default
        shifted = frames + 1000
        moved = estimate_camera(shifted, [det.peaks(f) for f in shifted], card)
        assert moved.offset_adu - cam.offset_adu == pytest.approx(1000, abs=0.5)


def test_a_short_movie_with_another_camera_is_detected_as_a_long_one(
    tmp_path: Path, beads: Any
) -> None:
    e = electrons(beads, 0.0, 20.0, 192)
    long = tracked(tmp_path, e + 100, "uint16")
    short = tracked(tmp_path, e[:2] + 1100, "uint16")  # two frames, offset 1000 ADU higher
    assert short.attrs["camera"]["offset_adu"] == pytest.approx(1100, abs=3)
    count, rms = same(long[long["frame"] < 2], short)
    assert count < 0.03
    assert rms < 0.05


@pytest.mark.parametrize("frames", [4, 8, 32])
def test_the_offset_of_a_short_movie_is_not_pulled_up_by_its_noisy_variances(frames: int) -> None:
    # a pixel's variance over a few frames is χ²-like: its median is well below its mean,
    # and a median of them read the offset 28 % of the background too high over 4 frames
    from livetrack.artifact import read_card
    from livetrack.detection.camera import estimate_camera

    card = read_card("default")
    rng = np.random.default_rng(frames)
    gain, background = 2.0, 20.0
    light = background * np.tile(1 + 0.6 * (np.arange(256) / 255 - 0.5), (256, 1))
    shape = (frames, 256, 256)
    e = rng.poisson(light, shape) + rng.normal(0, card.expects.camera_read_noise_e, shape)
    movie = np.rint(500 + gain * e).astype(np.uint16)
    nothing = [(np.zeros(0), np.zeros(0))] * frames
    cam = estimate_camera(movie, nothing, card, gain_adu_per_e=gain)
    assert cam.offset_adu - 500 == pytest.approx(0, abs=0.03 * gain * background)


def test_a_short_movie_of_a_gradient_reads_its_gain_unbiased() -> None:
    # binned by its own noisy level, a pixel's bin stands apart from its variance's
    # (errors in variables): over 4 frames the slope read 4-7 % low
    from livetrack.artifact import read_card
    from livetrack.detection.camera import _measured_gain, background_stats, estimate_camera

    card = read_card("default")
    rng = np.random.default_rng(0)
    light = 20.0 * np.tile(1 + 0.6 * (np.arange(384) / 383 - 0.5), (384, 1))  # 14-26 e
    shape = (4, 384, 384)
    movie = np.rint(500 + 2.0 * (rng.poisson(light, shape) + rng.normal(0, 2.0, shape)))
    nothing = [(np.zeros(0), np.zeros(0))] * 4
    level, var, smooth = background_stats(movie.astype(np.uint16), nothing, 5)
    assert _measured_gain(level, var, level) < 0.97 * 2.0  # the noisy level's bias
    assert _measured_gain(level, var, smooth) == pytest.approx(2.0, rel=0.03)
    cam = estimate_camera(movie.astype(np.uint16), nothing, card)
    assert cam.gain_from == "data"
    assert cam.gain_adu_per_e == pytest.approx(2.0, rel=0.03)
    # read noise 2 e against the card's 1.5: the offset 2 · (4 - 2.25) / 2 ADU low at most
    assert cam.offset_adu == pytest.approx(500, abs=4.0)
