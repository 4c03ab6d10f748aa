"""Inputs never misread: every layout and channel arrangement read right, or refused clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from livetrack.cli import app
from livetrack.offline.movies import MovieError, MovieReader

RNG = np.random.default_rng(0)


def test_an_rgb_tiff_stack_is_refused_without_a_channel_and_read_right_with_one(
    tmp_path: Path,
) -> None:
    a = RNG.integers(0, 255, (10, 64, 64, 3), dtype=np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, a, photometric="rgb")
    with pytest.raises(MovieError, match=r"shape \(10, 64, 64, 3\).*--channel N \(0 to 2\)"):
        MovieReader(path)
    r = MovieReader(path, channel=1)
    assert (r.info.n_frames, r.info.shape) == (10, (64, 64))  # not 640 frames of 64 × 3
    np.testing.assert_array_equal(r.read(3, 7), a[3:7, :, :, 1])
    r.close()
    with pytest.raises(MovieError, match="--channel 3: the movie has 3 channel"):
        MovieReader(path, channel=3)


def test_an_imagej_hyperstack_reads_the_chosen_channel(tmp_path: Path) -> None:
    a = RNG.integers(0, 4000, (4, 2, 32, 48), dtype=np.uint16)
    path = tmp_path / "tcyx.tif"
    tifffile.imwrite(path, a, imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(MovieError, match="2 channels"):
        MovieReader(path)
    r = MovieReader(path, channel=1)
    assert (r.info.n_frames, r.info.shape) == (4, (32, 48))
    np.testing.assert_array_equal(r.read(0, 4), a[:, 1])
    r.close()


def test_a_compressed_movie_is_read_page_by_page_with_the_same_frames(tmp_path: Path) -> None:
    a = RNG.integers(0, 4000, (6, 20, 30), dtype=np.uint16)
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(path, a, compression="zlib")
    r = MovieReader(path)
    assert r.format == "tiff"  # not memory-mapped
    np.testing.assert_array_equal(r.read(1, 5), a[1:5])
    r.close()


def test_a_video_is_read_in_gray_or_by_channel_in_any_order_of_chunks(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    yy, xx = np.mgrid[:48, :64]
    bgr = []
    for k in range(12):  # a spot moving right; blue stays 40, red rises frame by frame
        spot = 200 * np.exp(-((xx - 10 - 3 * k) ** 2 + (yy - 24) ** 2) / 18.0)
        bgr.append(np.stack([np.full_like(spot, 40), spot, np.full_like(spot, 10 * k)], -1))
    path = tmp_path / "spot.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for f in bgr:
        writer.write(f.astype(np.uint8))
    writer.release()
    r = MovieReader(path)
    assert (r.info.n_frames, r.info.shape, r.info.dtype) == (12, (48, 64), "uint8")
    assert r.info.frame_interval_s == pytest.approx(0.05)
    assert "lossy" in r.info.format
    late, early = r.read(8, 12), r.read(2, 4)  # backwards: the video starts again
    np.testing.assert_array_equal(np.concatenate([c for _, c in r.chunks(5)])[8:12], late)
    assert early.shape == (2, 48, 64)
    # gray by luminance: the spot at its place in each frame (lossy: within a pixel)
    assert abs(int(np.argmax(late[1].max(axis=0))) - (10 + 3 * 9)) <= 1
    r.close()
    red = MovieReader(path, channel=0).read(0, 12)  # channel 0: red, rising 10 a frame
    assert np.all(np.diff(np.median(red, axis=(1, 2))) > 5)
    blue = MovieReader(path, channel=2).read(0, 12)
    assert np.all(np.abs(np.median(blue, axis=(1, 2)) - 40) < 4)
    with pytest.raises(MovieError, match="--channel 3: a video has channels 0–2"):
        MovieReader(path, channel=3)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(MovieError, match=r"broken\.mp4: not a video OpenCV can open"):
        MovieReader(broken)


def test_a_z_stack_per_frame_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tzyx.tif"
    tifffile.imwrite(path, np.zeros((3, 5, 16, 16), np.uint16), imagej=True,
                     metadata={"axes": "TZYX"})  # fmt: skip
    with pytest.raises(MovieError, match="z-stack per frame"):
        MovieReader(path)


def test_colour_images_in_a_folder_need_a_channel_unless_they_are_grey(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 255, (3, 24, 32, 3), dtype=np.uint8)
    for k, img in enumerate(rgb):
        Image.fromarray(img).save(tmp_path / f"c{k}.png")
        grey = np.repeat(img[..., :1], 3, axis=-1)
        Image.fromarray(grey).save(tmp_path / f"g{k}.png")
    with pytest.raises(MovieError, match=r"colour image of shape \(24, 32, 3\)"):
        MovieReader(str(tmp_path / "c*.png"))
    r = MovieReader(str(tmp_path / "c*.png"), channel=2)
    np.testing.assert_array_equal(r.read(0, 3), rgb[..., 2])  # not the mean of the three
    g = MovieReader(str(tmp_path / "g*.png"))
    np.testing.assert_array_equal(g.read(0, 3), rgb[..., 0])


def test_an_unlabelled_zarr_of_more_than_three_dimensions_is_refused(tmp_path: Path) -> None:
    import zarr

    z = zarr.open(str(tmp_path / "m.zarr"), mode="w", shape=(4, 2, 16, 16), dtype="uint16")
    z[:] = 1
    with pytest.raises(MovieError, match=r"shape \(4, 2, 16, 16\) without OME axes"):
        MovieReader(tmp_path / "m.zarr")


def test_process_carries_fps_and_says_when_the_pixel_size_is_missing(tmp_path: Path) -> None:
    a = np.full((5, 40, 40), 100, np.uint16)
    a[:, 20, 20] = 4000
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, a)  # no pixel size, no frame interval
    out = tmp_path / "t.csv"
    args = ["process", str(path), "-o", str(out), "--classical", "--diameter", "5"]
    result = CliRunner().invoke(app, [*args, "--minmass", "10", "--fps", "20"])
    assert result.exit_code == 0, result.output
    assert "no pixel size in the file and none given" in result.output
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["frame_interval_s"] == pytest.approx(0.05)
    assert side["frame_interval_from"] == "option"
    assert side["pixel_size_um"] is None
    table = __import__("pandas").read_csv(out)
    assert table["t_s"].tolist() == pytest.approx((table["frame"] * 0.05).tolist())


def test_process_refuses_an_rgb_stack_naming_its_shape(tmp_path: Path) -> None:
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, RNG.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), photometric="rgb")
    result = CliRunner().invoke(app, ["process", str(path), "-o", str(tmp_path / "t.csv")])
    assert result.exit_code == 2
    assert "(4, 32, 32, 3)" in result.output
    assert "--channel" in result.output
    assert not (tmp_path / "t.csv").exists()


def test_single_takes_an_even_crop_and_refuses_a_tiny_one_clearly(tmp_path: Path) -> None:
    from livetrack.single.detector import SingleParticleDetector

    assert SingleParticleDetector(48).crop == 49
    a = np.full((4, 40, 40), 100, np.uint16)
    a[:, 18:23, 18:23] = 900
    path = tmp_path / "trap.tif"
    tifffile.imwrite(path, a, photometric="minisblack")
    out = tmp_path / "t.csv"
    ok = CliRunner().invoke(app, ["process", str(path), "-o", str(out), "--single", "16"])
    assert ok.exit_code == 0, ok.output
    assert len(__import__("pandas").read_csv(out)) == 4
    bad = CliRunner().invoke(app, ["process", str(path), "-o", str(out), "--single", "4"])
    assert bad.exit_code == 2
    assert "at least 7 px" in bad.output
    assert bad.output.count("error:") == 1


def test_a_fluorescence_model_warns_when_the_particles_are_not_its_size(beads: Any) -> None:
    from scipy import ndimage

    from livetrack.artifact import brightfield_model_dir, read_card
    from livetrack.detection.appearance import apparent_sigma, width_warning
    from livetrack.simulation import simulate_movie

    from .conftest import REAL_DATA, small

    card = read_card("default")
    frame = simulate_movie(small(beads, 256, 256, number=60), 1, seed=2).frames[0]
    assert apparent_sigma(frame) == pytest.approx(card.expects.psf_sigma_px, rel=0.2)
    assert width_warning(frame, card) is None
    # uneven illumination is no particle: a ramp of half the frame's level across it
    lit = frame * (0.75 + 0.5 * np.arange(256) / 255)[None, :]
    assert apparent_sigma(lit) == pytest.approx(card.expects.psf_sigma_px, rel=0.2)
    assert width_warning(lit, card) is None
    blurred = ndimage.gaussian_filter(frame.astype(np.float64), 4.0)
    assert "wider than the PSF" in (width_warning(blurred, card) or "")
    assert width_warning(blurred, read_card(brightfield_model_dir())) is None  # no spots there
    movie = REAL_DATA / "deeptrack_videos" / "brownian_particles_gray.tif"
    if movie.is_file():  # large beads with dark halos: the fluorescence model's rings
        assert "wider" in (width_warning(tifffile.imread(movie, key=0), card) or "")


def _absorbing_movie(
    path: Path, frames: int = 4, n: int = 40, seed: int = 3
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Dark Gaussian dips (50 % absorption) on a bright 400 e background, gain 2, offset 100."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:128, :128]
    out, truth = [], []
    for _ in range(frames):
        x, y = rng.uniform(6, 122, n), rng.uniform(6, 122, n)
        dip = sum(
            np.exp(-((xx - a) ** 2 + (yy - b) ** 2) / (2 * 2.0**2))
            for a, b in zip(x, y, strict=True)
        )
        light = 400.0 * np.clip(1 - 0.5 * dip, 0.05, None)
        out.append((100 + 2 * rng.poisson(light)).astype(np.uint16))
        truth.append((x, y))
    movie = np.stack(out)
    tifffile.imwrite(path, movie, photometric="minisblack")
    return movie, truth


def test_dark_particles_are_named_and_found_with_invert(tmp_path: Path) -> None:
    from livetrack.artifact import brightfield_model_dir, read_card
    from livetrack.detection.appearance import apparent_polarity, polarity_warning
    from livetrack.linking.scores import detection_scores
    from livetrack.offline.job import ProcessOptions, process_movie

    path = tmp_path / "dark.tif"
    movie, truth = _absorbing_movie(path)
    card = read_card("default")
    assert apparent_polarity(movie[0]) == "dark-on-bright"
    assert apparent_polarity(movie.max() - movie[0]) == "bright-on-dark"
    assert apparent_polarity(RNG.poisson(20, (128, 128))) is None  # noise: nothing to say
    assert "add --invert" in (polarity_warning(movie[0], card, invert=False) or "")
    assert polarity_warning(movie[0], card, invert=True) is None
    bright = movie.max() - movie[0]
    assert "leave --invert out" in (polarity_warning(bright, card, invert=True) or "")
    bf = read_card(brightfield_model_dir())
    assert "fluorescence model" in (polarity_warning(bright, bf, invert=False) or "")
    t = {"frame": np.repeat(np.arange(4), 40), "x": np.concatenate([x for x, _ in truth]),
         "y": np.concatenate([y for _, y in truth])}  # fmt: skip
    import pandas as pd

    notes: list[str] = []
    plain = process_movie(path, options=ProcessOptions(), note=notes.append)
    assert any("add --invert" in n for n in notes)
    inverted = process_movie(path, options=ProcessOptions(invert=True))
    assert detection_scores(pd.DataFrame(t), plain, gate=2.0).recall < 0.2
    s = detection_scores(pd.DataFrame(t), inverted, gate=2.0)
    assert s.recall > 0.9, s
    assert s.precision > 0.95, s
    record = inverted.attrs["livetrack"]
    assert record["invert"] is True
    assert record["camera"]["inverted"] is True
    for invert, lo, hi in ((False, 0.0, 0.2), (True, 0.5, 1.0)):  # trackpy's own invert
        opts = ProcessOptions(invert=invert, classical=True, diameter=11, minmass=500)
        tp = process_movie(path, options=opts)
        assert lo <= detection_scores(pd.DataFrame(t), tp, gate=2.0).recall <= hi


def test_the_cli_takes_invert(tmp_path: Path) -> None:
    path = tmp_path / "dark.tif"
    _absorbing_movie(path, frames=3)
    out = tmp_path / "t.csv"
    r = CliRunner().invoke(app, ["process", str(path), "-o", str(out), "--invert"])
    assert r.exit_code == 0, r.output
    assert "--invert" not in r.output  # no polarity warning once inverted
    assert json.loads(out.with_suffix(".json").read_text())["invert"] is True


def test_real_movies_polarity_is_read_right() -> None:
    from livetrack.detection.appearance import apparent_polarity

    from .conftest import REAL_DATA

    movie = REAL_DATA / "brightfield_colloids" / "brightfield.tif"
    if not movie.is_file():
        pytest.skip("the real movies are not beside this checkout")
    # brightfield colloids: dark and bright rings on a bright background
    assert apparent_polarity(tifffile.imread(movie, key=0)) == "interference"


def test_a_movie_starting_on_blank_frames_is_read_by_the_frames_that_show_particles() -> None:
    from livetrack.adapt.measure import AdaptError, measure_movie
    from livetrack.artifact import read_card
    from livetrack.detection.appearance import apparent_polarity, movie_polarity

    from .conftest import REAL_DATA

    movie = REAL_DATA / "brightfield_colloids" / "brightfield.tif"
    if not movie.is_file():
        pytest.skip("the real movies are not beside this checkout")
    rings = tifffile.imread(movie, key=range(4))
    # a shutter opening: two frames of the background's noise alone
    blank = RNG.normal(rings.mean(), 2.0, (2, *rings.shape[1:])).astype(rings.dtype)
    frames = np.concatenate([blank, rings])
    assert apparent_polarity(frames[0]) is None
    assert movie_polarity(frames) == "interference"
    assert movie_polarity(blank) is None
    with pytest.raises(AdaptError, match="rings"):  # never measured as bright spots
        measure_movie(frames, read_card("default"))


def test_serve_finds_dark_particles_with_invert(tmp_path: Path) -> None:
    from scipy.spatial import cKDTree

    from livetrack.detection.detector import Detector
    from livetrack.wire import protocol as wire

    from .test_service import start

    movie, truth = _absorbing_movie(tmp_path / "dark.tif")
    detector = Detector()  # as process runs it: neighbours split
    for invert, lo, hi in ((False, 0.0, 0.2), (True, 0.9, 1.0)):
        run = start(detector, policy="lossless", camera_gain_adu_per_e=2.0, invert=invert)
        try:
            for i, frame in enumerate(movie):
                assert run.pub.publish(frame, seq=i)
            got = run.results(wire.TOPIC_DETECTIONS, len(movie))
        finally:
            run.stop()
        assert [r.seq for r in got] == list(range(len(movie)))
        found = 0
        for r, (x, y) in zip(got, truth, strict=True):
            xy = np.column_stack([r.columns["x"], r.columns["y"]])
            if len(xy):
                found += int((cKDTree(xy).query(np.column_stack([x, y]))[0] < 2.0).sum())
        assert lo <= found / sum(len(x) for x, _ in truth) <= hi, (invert, found)


def test_serve_takes_invert_from_its_options() -> None:
    from livetrack.service.settings import load_serve_settings

    settings = load_serve_settings(None, {"invert": True, "classical": True})
    assert settings.service_config().invert is True
    assert load_serve_settings(None, {"invert": None}).invert is False
