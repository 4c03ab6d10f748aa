"""``livetrack adapt --self-supervised`` (LodeSTAR): trained on a movie's own particles,
no simulator and no labels, and used by ``process`` like any model; checked on
synthetic rings with known centres and on a real movie against trackpy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy.spatial import cKDTree

from livetrack.adapt import AdaptError, adapt_self_supervised
from livetrack.artifact import ArtifactError, read_card
from livetrack.detection.lodestar import (
    CALIBRATION,
    LodestarDetector,
    cluster_votes,
    lodestar_normalise,
)
from livetrack.training.lodestar import LodestarTraining, make_views

from .conftest import REAL_DATA


def ring(shape: tuple[int, int], x: float, y: float) -> np.ndarray:
    """A bright core in a dark ring (a brightfield bead), centred at (x, y)."""
    yy, xx = np.indices(shape)
    r = np.hypot(xx - x, yy - y)
    return 60 * np.exp(-(r**2) / (2 * 2.0**2)) - 30 * np.exp(-((r - 6.0) ** 2) / (2 * 1.5**2))


def ring_movie(frames: int, n: int, seed: int, size: int = 160) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out, truth = [], []
    for f in range(frames):
        pts: list[tuple[float, float]] = []
        while len(pts) < n:  # apart, so most are isolated
            p = rng.uniform(14, size - 14, 2)
            if all(np.hypot(*(p - q)) > 22 for q in pts):
                pts.append((float(p[0]), float(p[1])))
        img = 100.0 + sum(ring((size, size), x, y) for x, y in pts)
        out.append(np.clip(img + rng.normal(0, 3.0, img.shape), 0, 255).astype(np.uint8))
        truth.append(pd.DataFrame({"frame": f, "x": [p[0] for p in pts], "y": [p[1] for p in pts]}))
    return np.stack(out), pd.concat(truth, ignore_index=True)


def test_votes_that_agree_are_particles_and_scattered_ones_are_not() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[20.3, 30.7], [60.0, 61.2], [90.5, 15.5]])
    vx = np.concatenate(
        [c[0] + rng.normal(0, 0.7, 20) for c in centres] + [rng.uniform(0, 100, 300)]
    )
    vy = np.concatenate(
        [c[1] + rng.normal(0, 0.7, 20) for c in centres] + [rng.uniform(0, 100, 300)]
    )
    x, y, n = cluster_votes(vx, vy, np.full(len(vx), 0.05), (100, 100), 3.0, 0.5)
    assert len(x) == 3
    d, _ = cKDTree(centres).query(np.column_stack([x, y]))
    assert np.all(d < 0.5)
    assert np.all(n >= 0.75)


def test_a_view_holds_the_content_shifted_then_mirrored() -> None:
    # a spot off the window's centre by q: each view puts it at f · (q + s)
    q = np.array([1.3, -0.7])
    side, crop = 40, 28
    c = (side - 1) / 2
    win = ring((side, side), c + q[0], c + q[1]).astype(np.float32)[None]
    cfg = LodestarTraining(crop=crop, batch=6, flips=True)
    views, tr = make_views(win, cfg, np.random.default_rng(1))
    yy, xx = np.indices((crop, crop)) - (crop - 1) / 2
    for v in range(2):
        for k in range(6):
            img = np.clip(views[v, k, ..., 0], 0, None)
            centre = np.array([(img * xx).sum(), (img * yy).sum()]) / img.sum()
            sx, sy, fx, fy = tr[v, k]
            np.testing.assert_allclose(centre, [fx * (q[0] + sx), fy * (q[1] + sy)], atol=0.1)


@pytest.fixture(scope="module")
def rings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, Path]:
    folder = tmp_path_factory.mktemp("rings")
    movie, truth = ring_movie(6, 10, seed=3)
    path = folder / "rings.tif"
    tifffile.imwrite(path, movie)
    model = adapt_self_supervised(path, folder / "model", steps=400).model
    return path, truth, model


def test_rings_it_never_saw_are_found_at_their_centres(rings) -> None:  # type: ignore[no-untyped-def]
    _, _, model = rings
    card = read_card(model)
    assert card.outputs.kind == "lodestar"
    assert card.metrics["self_supervised"]["found"]["windows"] >= 8
    assert (model / "fit.png").stat().st_size > 0
    from livetrack.adapt.self_supervised import UNLIKE_SHARE, Scores

    scores = Scores(**card.metrics["self_supervised"]["scores"])
    assert scores.like_crops >= 8  # of 10 rings a frame, one kind: nothing to tell apart
    assert scores.unlike_share < UNLIKE_SHARE
    from livetrack.artifact import ArtifactError
    from livetrack.detection.detector import Detector

    with pytest.raises(ArtifactError, match=r"livetrack process, serve and livetrack\.locate"):
        Detector(model)  # the simulator-trained detector's class says where it runs
    movie, truth = ring_movie(3, 10, seed=4)  # new frames, new positions
    det = LodestarDetector(model)
    errors, found = [], 0
    for f, frame in enumerate(movie):
        d = det.detect(frame)
        t = truth[truth.frame == f][["x", "y"]].to_numpy()
        dist, idx = cKDTree(np.column_stack([d.x, d.y])).query(t)
        found += int((dist < 2).sum())
        errors.append(np.column_stack([d.x, d.y])[idx[dist < 2]] - t[dist < 2])
        assert len(d) <= len(t) + 1
    err = np.concatenate(errors)
    assert found >= 0.9 * len(truth)
    assert np.sqrt(np.mean(err**2)) < 0.35  # px, noise σ 3 on a 60-high core
    assert np.all(np.abs(err.mean(axis=0)) < 0.15)  # flips put the origin at the centre


def test_mirrored_reads_average_the_networks_error_out(rings) -> None:  # type: ignore[no-untyped-def]
    _, _, model = rings
    movie, truth = ring_movie(3, 10, seed=8)
    rms, bias = {}, {}
    for views in (1, 4):
        det = LodestarDetector(model, views=views, refine=False)  # the network alone
        err = []
        for f, frame in enumerate(movie):
            d = det.detect(frame)
            t = truth[truth.frame == f][["x", "y"]].to_numpy()
            dist, idx = cKDTree(np.column_stack([d.x, d.y])).query(t)
            err.append(np.column_stack([d.x, d.y])[idx[dist < 2]] - t[dist < 2])
        e = np.concatenate(err)
        rms[views], bias[views] = float(np.sqrt(np.mean(e**2))), np.abs(e.mean(axis=0))
    assert rms[4] < 0.8 * rms[1]
    assert np.all(bias[4] < 0.05)


def test_one_particle_is_found_by_the_network_and_fitted_by_its_own_template(rings) -> None:  # type: ignore[no-untyped-def]
    from livetrack.offline.process import DetectorSpec
    from livetrack.single.detector import SingleParticleDetector

    _, _, model = rings
    rng = np.random.default_rng(11)
    truth = 31.5 + rng.normal(0, 0.8, (48, 2))  # a trapped bead in a noisy 64² field
    movie = np.stack([
        np.clip(100 + ring((64, 64), x, y) + rng.normal(0, 8.0, (64, 64)), 0, 255)
        for x, y in truth
    ]).astype(np.uint8)  # fmt: skip
    det = DetectorSpec(model=str(model), single_crop="auto").build()
    assert isinstance(det, SingleParticleDetector)
    assert det.finder is not None
    det.prepare(movie[:32])
    fitted = np.array([(d.x[0], d.y[0]) for d in map(det.detect, movie)])
    alone = LodestarDetector(model, single=True, refine=False)
    network = np.array([(d.x[0], d.y[0]) for d in map(alone.detect, movie)])
    rms = {k: float(np.sqrt(np.mean((v - truth) ** 2))) for k, v in
           (("fitted", fitted), ("network", network))}  # fmt: skip
    assert rms["fitted"] < 0.8 * rms["network"], rms
    assert np.all(np.abs((fitted - truth).mean(axis=0)) < 0.1)  # the network's origin kept


def test_symmetric_particles_are_centred_on_their_symmetry_and_others_are_not(rings) -> None:  # type: ignore[no-untyped-def]
    from livetrack.adapt.self_supervised import SYMMETRIC_F, crops_symmetry

    _, _, model = rings
    card = read_card(model)
    assert card.outputs.refinement == "radial_symmetry"  # rings
    assert card.metrics["self_supervised"]["found"]["symmetry_f"] >= SYMMETRIC_F
    movie, truth = ring_movie(3, 10, seed=9)
    for refine in (True, False):
        d = LodestarDetector(model, refine=refine).detect(movie[0])
        t = truth[truth.frame == 0][["x", "y"]].to_numpy()
        dist, _ = cKDTree(np.column_stack([d.x, d.y])).query(t)
        assert np.mean(dist < 1) >= 0.9
        if refine:
            centred = np.sqrt(np.mean(dist[dist < 1] ** 2))
        else:
            network = np.sqrt(np.mean(dist[dist < 1] ** 2))
    assert centred < network  # the rings' many pixels, not the network's offset
    # rods at random angles (as bacteria): no centre of symmetry to centre on
    rng = np.random.default_rng(2)
    yy, xx = np.indices((40, 40)) - 19.5
    rods = []
    for a in rng.uniform(0, np.pi, 16):
        u, v = xx * np.cos(a) + yy * np.sin(a), -xx * np.sin(a) + yy * np.cos(a)
        rod = 50 * np.exp(-((u - 1.5) ** 2) / 40 - v**2 / 3) + 10 * np.exp(-((u + 4) ** 2) / 4)
        rods.append(rod + rng.normal(0, 1.0, rod.shape))
    assert crops_symmetry(np.array(rods, np.float32), 10) < SYMMETRIC_F
    rings_f = crops_symmetry(np.array([ring((40, 40), 19.5, 19.5)] * 4, np.float32), 10)
    assert rings_f >= SYMMETRIC_F


def test_int8_reads_as_float32_and_onnx_as_keras(rings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, model = rings
    calibration = np.load(model / CALIBRATION)
    assert calibration.dtype == np.float16
    assert calibration.ndim == 3
    fast, exact = LodestarDetector(model), LodestarDetector(model, precision="float32")
    assert (fast.precision, exact.precision) == ("int8", "float32")
    movie, _ = ring_movie(2, 10, seed=11)
    x = lodestar_normalise(movie[0])[None, ..., None]
    keras_out = np.asarray(exact.model(x, training=False))
    assert np.abs(exact._call(x) - keras_out).max() < 1e-3  # ONNX Runtime = Keras
    for frame in movie:
        a, b = fast.detect(frame), exact.detect(frame)
        assert len(a) == len(b) >= 9
        d = cKDTree(np.column_stack([b.x, b.y])).query(np.column_stack([a.x, a.y]))[0]
        assert np.median(d) < 0.05
        assert d.max() < 0.25
    bare = tmp_path / "bare"  # a folder without its movie's frames: float32, or a refusal
    shutil.copytree(model, bare)
    (bare / CALIBRATION).unlink()
    assert LodestarDetector(bare).precision == "float32"
    with pytest.raises(ArtifactError, match=CALIBRATION):
        LodestarDetector(bare, precision="int8")


def test_a_network_of_another_architecture_runs_in_tensorflow(tmp_path: Path) -> None:
    import keras

    from livetrack.detection.lodestar import _network

    inp = keras.Input((None, None, 1))
    net = keras.Model(inp, keras.layers.Conv2D(3, 4, strides=4, name="other")(inp))
    call, precision = _network(net, tmp_path, "auto")
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 1)).astype(np.float32)
    assert precision == "float32"
    np.testing.assert_allclose(call(x), np.asarray(net(x)), atol=1e-5)


def test_the_public_verbs_take_it(rings) -> None:  # type: ignore[no-untyped-def]
    import livetrack

    _, _, model = rings
    movie, truth = ring_movie(2, 10, seed=9)
    table = livetrack.batch(movie, model=model)
    assert sorted(table["frame"].unique().tolist()) == [0, 1]
    for f in (0, 1):
        t = truth[truth.frame == f][["x", "y"]].to_numpy()
        got = table[table.frame == f][["x", "y"]].to_numpy()
        assert np.mean(cKDTree(got).query(t)[0] < 1.0) >= 0.9
    one = livetrack.locate(movie[0], model, frame=5)
    assert (one["frame"] == 5).all()


def test_process_uses_it_like_any_model(rings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, truth, model = rings
    out = tmp_path / "t.csv"
    run = subprocess.run(
        [sys.executable, "-m", "livetrack.cli", "process", str(path), "--model", str(model),
         "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "no pixel size" in run.stderr
    assert "card says" not in run.stderr  # learnt from a movie without one: nothing to say
    table = pd.read_csv(out)
    assert len(table) >= 0.9 * len(truth)
    assert table["particle"].nunique() <= 2 * truth.groupby("frame").size().max()
    single = tmp_path / "one.csv"
    run = subprocess.run(
        [sys.executable, "-m", "livetrack.cli", "process", str(path), "--model", str(model),
         "--single", "auto", "-o", str(single)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert pd.read_csv(single).groupby("frame").size().max() == 1


def test_small_spots_get_a_crop_wide_enough_to_learn_their_centre(tmp_path: Path) -> None:
    # fluorescent beads (σ 2 px): a 16-px crop let the background outweigh the particle;
    # the network then learnt an origin 1.4 / −1.0 px off the centre and found 43 of 128
    rng = np.random.default_rng(21)
    yy, xx = np.indices((192, 192))
    frames, truth = [], []
    for _ in range(8):
        pts: list[np.ndarray] = []
        while len(pts) < 16:
            p = rng.uniform(10, 182, 2)
            if all(np.hypot(*(p - q)) > 16 for q in pts):
                pts.append(p)
        xy = np.array(pts)
        img = 20 + sum(60 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0) for x, y in xy)
        frames.append(rng.poisson(img).astype(np.uint16))
        truth.append(xy)
    tifffile.imwrite(tmp_path / "beads.tif", np.stack(frames))
    model = adapt_self_supervised(tmp_path / "beads.tif", tmp_path / "model", steps=400).model
    assert read_card(model).outputs.crop_px >= 24
    det, err = LodestarDetector(model), []
    for frame, true in zip(frames, truth, strict=True):
        d = det.detect(frame)
        dist, i = cKDTree(np.column_stack([d.x, d.y])).query(true)
        err.append(np.column_stack([d.x, d.y])[i[dist < 2]] - true[dist < 2])
    e = np.concatenate(err)
    assert len(e) >= 0.9 * 16 * len(frames)
    assert np.all(np.abs(e.mean(axis=0)) < 0.25)


def test_a_movie_without_particles_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    path = tmp_path / "noise.tif"
    tifffile.imwrite(
        path, rng.normal(100, 3, (4, 128, 128)).astype(np.uint16), photometric="minisblack"
    )
    with pytest.raises(AdaptError, match=r"found \d+ isolated particles in 4 frames"):
        adapt_self_supervised(path, tmp_path / "model", steps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.tif"]


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "deeptrack_videos").is_dir(), reason="real movies not here")
def test_real_rings_match_trackpy(tmp_path: Path) -> None:
    """DeepTrack's Brownian beads (bright cores in dark rings) against an Otsu-tuned trackpy."""
    import trackpy

    from livetrack.bench._lodestar import otsu

    path = REAL_DATA / "deeptrack_videos" / "brownian_particles_gray.tif"
    model = adapt_self_supervised(path, tmp_path / "m", frames=8, steps=500).model
    movie = tifffile.imread(path)[:10]
    det = LodestarDetector(model)
    trackpy.quiet()
    ours_n = theirs_n = matched = 0
    for frame in movie:
        d = det.detect(frame)
        f = trackpy.locate(frame.astype(float), 15)
        f = f[np.log(f["mass"]) >= otsu(np.log(f["mass"].to_numpy()))]
        inner = lambda x, y: (x >= 12) & (y >= 12) & (x <= 487) & (y <= 487)  # noqa: E731
        ours = np.column_stack([d.x, d.y])[inner(d.x, d.y)]
        theirs = f[inner(f.x, f.y)][["x", "y"]].to_numpy()
        dist, _ = cKDTree(ours).query(theirs)
        matched += int((dist <= 1.0).sum())
        ours_n, theirs_n = ours_n + len(ours), theirs_n + len(theirs)
    assert matched >= 0.95 * theirs_n
    assert matched >= 0.95 * ours_n


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "deeptrack_videos").is_dir(), reason="real movies not here")
def test_real_noisy_beads_lit_from_one_side_are_centred_as_an_expert_centres_them(
    tmp_path: Path,
) -> None:
    """DeepTrack's low-SNR beads (an MP4, read as process reads it): not mirror-symmetric,
    so the network's own origin sat 0.7 / 0.4 px off (75 % within 1 px both ways)."""
    pytest.importorskip("cv2")
    from livetrack.bench._lodestar import expert_trackpy, interior_matched
    from livetrack.offline.movies import MovieReader
    from livetrack.offline.process import DetectorSpec, track_movie

    path = REAL_DATA / "deeptrack_videos" / "brownian_particles_bad.mp4"
    model = adapt_self_supervised(path, tmp_path / "m", frames=8, steps=500).model
    assert read_card(model).outputs.refinement == "radial_symmetry"
    reader = MovieReader(path)
    frames = reader.read(0, 10)
    reader.close()
    tifffile.imwrite(tmp_path / "first.tif", frames)
    ours, _, _ = track_movie(tmp_path / "first.tif", DetectorSpec(model=str(model)))
    ours_matched, theirs_matched = interior_matched(ours, expert_trackpy(frames), frames.shape)
    assert ours_matched >= 0.95
    assert theirs_matched >= 0.95


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "deeptrack_videos").is_dir(), reason="real movies not here")
def test_real_bacteria_among_microspheres_are_told_apart_and_centred_as_trackpy_tuned_to_them(
    tmp_path: Path,
) -> None:
    """DeepTrack's bacteria among packed microspheres (an MP4), as a user runs it: adapt
    says there are two kinds and how to keep the learnt one; process keeps it."""
    pytest.importorskip("cv2")
    import trackpy

    from livetrack.bench._lodestar import BACTERIA_TRACKPY, interior_matched
    from livetrack.offline.movies import MovieReader

    path = REAL_DATA / "deeptrack_videos" / "brownian_particles_and_bacteria.mp4"
    cli = [sys.executable, "-m", "livetrack.cli"]
    adapt = subprocess.run(
        [*cli, "adapt", str(path), "-o", str(tmp_path / "m"), "--self-supervised", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert adapt.returncode == 0, adapt.stderr
    assert "two kinds" in adapt.stdout
    assert "process --min-score 0.9" in adapt.stdout
    out = tmp_path / "bacteria.csv"
    run = subprocess.run(
        [*cli, "process", str(path), "--model", str(tmp_path / "m"), "--min-score", "0.9",
         "-o", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    reader = MovieReader(path)
    frames = reader.read(0, reader.info.n_frames)
    reader.close()
    trackpy.quiet()
    diameter, minmass = BACTERIA_TRACKPY
    ref = pd.concat([trackpy.locate(f, diameter, minmass=minmass).assign(frame=k)
                     for k, f in enumerate(frames)])  # fmt: skip
    ours, theirs = interior_matched(pd.read_csv(out), ref, frames.shape)
    assert ours >= 0.95, (ours, theirs)
    assert theirs >= 0.95, (ours, theirs)


def test_the_cli_says_what_it_made(rings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, _, _ = rings
    run = subprocess.run(
        [sys.executable, "-m", "livetrack.cli", "adapt", str(path), "-o", str(tmp_path / "m"),
         "--self-supervised", "--epochs", "1", "--steps", "20", "--quiet", "--no-flips"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "crops of" in run.stdout
    assert "livetrack process" in run.stdout
    card = read_card(tmp_path / "m")
    assert card.training.config["flips"] is False
    assert card.training.steps == 20


def test_serve_runs_it_on_the_wire(rings) -> None:  # type: ignore[no-untyped-def]
    from livetrack.service.settings import ServeSettings, build_detector
    from livetrack.wire import protocol as wire
    from tests.test_service import start

    _, _, model = rings
    det, line = build_detector(ServeSettings(model=str(model)))
    assert isinstance(det, LodestarDetector)
    assert "LodeSTAR" in line
    movie, truth = ring_movie(4, 10, seed=6)
    r = start(det, policy="lossless")
    try:
        for k, frame in enumerate(movie):
            assert r.pub.publish(frame, seq=k)
        got = r.results(wire.TOPIC_TRACKS, len(movie), timeout_s=30)
        assert [g.seq for g in got] == list(range(len(movie)))
        for g in got:
            t = truth[truth.frame == g.seq][["x", "y"]].to_numpy()
            d, _ = cKDTree(np.column_stack([g.columns["x"], g.columns["y"]])).query(t)
            assert np.mean(d < 1.0) >= 0.9
    finally:
        r.stop()
