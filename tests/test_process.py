"""Offline reprocessing: readers, the same code path as the service, tables, Dask, plots."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile

from livetrack.config import SimulationConfig
from livetrack.detection.detector import Detector
from livetrack.linking import LinkingConfig
from livetrack.offline.movies import MovieError, MovieReader
from livetrack.offline.process import DetectorSpec, track_movie
from livetrack.offline.tables import read_table, write_table
from livetrack.service import Service, ServiceConfig
from livetrack.simulation.io import write_movie
from livetrack.wire import protocol as wire
from livetrack.wire.client import ControlClient, FramePublisher, ResultSubscriber

from .conftest import REAL_DATA, small


@pytest.fixture(scope="module")
def movie_file(tmp_path_factory: pytest.TempPathFactory, beads: SimulationConfig) -> Path:
    cfg = small(beads, 128, 96, number=12)
    motion = cfg.motion.model_copy(update={"diffusion_um2_per_s": 0.2})
    path = tmp_path_factory.mktemp("movies") / "beads.ome.tif"
    write_movie(cfg.model_copy(update={"motion": motion}), path, 24, seed=5)
    return path


def test_reader_takes_scales_from_ome_metadata(movie_file: Path, beads: SimulationConfig) -> None:
    r = MovieReader(movie_file)
    assert r.info.n_frames == 24
    assert r.info.shape == (96, 128)
    assert r.info.pixel_size_um == pytest.approx(beads.pixel_size_um)
    assert r.info.frame_interval_s == pytest.approx(beads.frame_interval_s)
    chunks = list(r.chunks(10))
    assert [s for s, _ in chunks] == [0, 10, 20]
    assert np.array_equal(np.concatenate([c for _, c in chunks]), tifffile.imread(movie_file))
    r.close()


def test_reader_zarr_ome_zarr_and_image_sequences(tmp_path: Path) -> None:
    import zarr

    rng = np.random.default_rng(0)
    stack = rng.integers(0, 1000, (5, 20, 30), dtype=np.uint16)
    zarr.save_array(str(tmp_path / "plain.zarr"), stack)
    r = MovieReader(tmp_path / "plain.zarr")
    assert r.info.n_frames == 5
    assert np.array_equal(r.read(1, 3), stack[1:3])
    # OME-Zarr: a group with multiscales, (t, c, z, y, x), a scale transform
    g = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    g.create_array("0", data=stack[:, None, None])
    g.attrs["multiscales"] = [
        {
            "axes": [{"name": a} for a in "tczyx"],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [1, 1, 1, 0.11, 0.11]}
                    ],
                }
            ],
        }
    ]
    r = MovieReader(tmp_path / "ome.zarr")
    assert r.info.pixel_size_um == pytest.approx(0.11)
    assert np.array_equal(r.read(0, 5), stack)
    for i, f in enumerate(stack):
        tifffile.imwrite(tmp_path / f"img_{i:03d}.tif", f)
    r = MovieReader(str(tmp_path / "img_*.tif"))
    assert r.info.n_frames == 5
    assert np.array_equal(r.read(0, 5), stack)
    with pytest.raises(MovieError, match="no file matches"):
        MovieReader(str(tmp_path / "nothing_*.tif"))
    with pytest.raises(MovieError, match="no such file"):
        MovieReader(tmp_path / "missing.tif")


def test_table_is_trackpy_compatible_and_finds_the_particles(movie_file: Path) -> None:
    import trackpy

    table, info, _ = track_movie(movie_file, DetectorSpec(), LinkingConfig())
    for col in ("frame", "particle", "x", "y", "score", "photons", "x_um", "y_um"):
        assert col in table.columns
    assert np.allclose(table["x_um"], table["x"] * info.pixel_size_um)
    truth = pd.read_csv(movie_file.with_name("beads.truth.csv"))
    inside = truth["x"].between(3, 124) & truth["y"].between(3, 92) & (truth["snr"] > 3)
    # pairs closer than 8 px (4 σ) merge: a known limit of the detector, measured in bench
    alone = truth.groupby("frame", group_keys=False)[["x", "y"]].apply(
        lambda g: pd.Series(
            np.sort(
                np.hypot(
                    g["x"].to_numpy()[:, None] - g["x"].to_numpy(),
                    g["y"].to_numpy()[:, None] - g["y"].to_numpy(),
                ),
                axis=1,
            )[:, 1]
            > 8,
            index=g.index,
        )
    )
    truth = truth[inside & alone]
    # every true particle inside the frame is found within 1 px in most frames
    hits = 0
    for f, g in truth.groupby("frame"):
        d = table[table["frame"] == f]
        dist = np.hypot(
            g["x"].to_numpy()[:, None] - d["x"].to_numpy(),
            g["y"].to_numpy()[:, None] - d["y"].to_numpy(),
        )
        hits += int((dist.min(axis=1) < 1.0).sum()) if len(d) else 0
    assert hits / len(truth) > 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        em = trackpy.emsd(table, info.pixel_size_um, 1 / info.frame_interval_s)
        m = trackpy.msd(table[table["particle"] == table["particle"].iloc[0]], 0.065, 50)
        drift = trackpy.compute_drift(table)
    assert len(em) > 3
    assert len(m) > 0
    assert len(drift) > 0
    # D from the MSD of the tracks is close to the simulated 0.2 µm²/s
    d_est = float(em.iloc[0]) / (4 * em.index[0])
    assert 0.1 < d_est < 0.35


def test_min_score_keeps_only_what_looks_most_like_the_models_particles(
    movie_file: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from livetrack.cli import app

    every, _, _ = track_movie(movie_file, DetectorSpec(), LinkingConfig())
    cut = float(np.quantile(every["score"], 0.5))
    kept, _, _ = track_movie(movie_file, DetectorSpec(min_score=cut), LinkingConfig())
    assert 0 < len(kept) < len(every)
    assert (kept["score"] >= cut).all()
    # the same detections, the rest dropped before linking
    assert len(kept) == int((every["score"] >= cut).sum())
    out = tmp_path / "kept.csv"
    args = ["process", str(movie_file), "-o", str(out), "--min-score", f"{cut}"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["min_score"] == cut
    r = CliRunner().invoke(app, [*args, "--classical"])
    assert r.exit_code == 2
    assert "--classical has --minmass" in r.output


def test_live_service_and_offline_give_the_same_tracks(movie_file: Path) -> None:
    frames = tifffile.imread(movie_file)
    # the live frames state no camera (the card's: the simulated one); offline, the same,
    # and the service's fixed linking (not read from the movie)
    offline, _, _ = track_movie(
        movie_file,
        DetectorSpec(),
        LinkingConfig(),
        chunk=8,
        camera=(100.0, 1.0),
        linking_from_data=False,
    )
    service = Service(
        Detector(),
        ServiceConfig(
            frames="tcp://127.0.0.1:0",
            results="tcp://127.0.0.1:0",
            control="tcp://127.0.0.1:0",
            policy="lossless",
        ),
    )
    th = threading.Thread(target=service.run, daemon=True)
    th.start()
    assert service.ready.wait(30)
    ep = service.endpoints
    sub = ResultSubscriber(ep["results"], topics=(wire.TOPIC_TRACKS,))
    pub = FramePublisher(ep["frames"], queue=1000)
    time.sleep(0.4)
    for i, f in enumerate(frames):
        assert pub.publish(f, seq=i)
    got = {}
    end = time.monotonic() + 60
    while len(got) < len(frames) and time.monotonic() < end:
        r = sub.recv(200)
        if r is not None:
            got[r.seq] = r
    ctl = ControlClient(ep["control"])
    ctl.request("shutdown")
    th.join(10)
    for c in (ctl, sub, pub):
        c.close()
    assert sorted(got) == list(range(len(frames)))
    for seq, r in got.items():
        off = offline[offline["frame"] == seq]
        assert list(r.columns["particle"]) == off["particle"].tolist()
        np.testing.assert_allclose(r.columns["x"], off["x"], atol=2e-4)  # float32 on the wire
        np.testing.assert_allclose(r.columns["y"], off["y"], atol=2e-4)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_local_result(movie_file: Path) -> None:
    from dask.distributed import Client, LocalCluster

    spec = DetectorSpec(classical=True, diameter=9, minmass=300.0)
    local, _, _ = track_movie(movie_file, spec, chunk=5)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        remote, _, _ = track_movie(movie_file, spec, chunk=5, client=client)
    pd.testing.assert_frame_equal(local, remote)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".h5"])
def test_table_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    t = pd.DataFrame(
        {"frame": [0, 0, 1], "particle": [0, 1, 0], "x": [1.5, 2.0, 1.6], "y": [3.0, 4.0, 3.1]}
    )
    write_table(t, tmp_path / f"t{suffix}")
    pd.testing.assert_frame_equal(read_table(tmp_path / f"t{suffix}"), t, check_dtype=False)
    assert not list(tmp_path.glob("*.partial"))


def test_bad_output_fails_clearly_and_keeps_what_was_written(tmp_path: Path) -> None:
    t = pd.DataFrame({"frame": [0], "particle": [0], "x": [1.0], "y": [2.0]})
    write_table(t, tmp_path / "first.csv")
    with pytest.raises(ValueError, match="unknown table format"):
        write_table(t, tmp_path / "t.xlsx")
    # a folder that cannot be made (a file is in the way): a clear error, nothing lost
    with pytest.raises(OSError, match="cannot write"):
        write_table(t, tmp_path / "first.csv" / "t.csv")
    assert read_table(tmp_path / "first.csv").equals(t)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "livetrack.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_process_and_plot(movie_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "res" / "beads.parquet"
    p = _cli("process", str(movie_file), "-o", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["frames"] == 24
    assert side["model"]
    assert side["versions"]["numpy"]
    assert side["pixel_size_um"] == pytest.approx(0.065)
    assert side["split"] is True  # process's default; serve's is off
    p = _cli("plot", str(out), "-o", str(tmp_path / "png"), "--movie", str(movie_file))
    assert p.returncode == 0, p.stderr[-2000:]
    for name in ("trajectories.png", "msd.png", "detections.png"):
        assert (tmp_path / "png" / name).stat().st_size > 5000
    p = _cli("process", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "x"))
    assert p.returncode == 2
    assert "no such file" in p.stderr


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA.exists(), reason="real movies not present")
def test_real_brightfield_movie_against_trackpys_reference(tmp_path: Path) -> None:
    """Five real colloids: our pipeline (trackpy's locate + our linker) follows all five."""
    movie = REAL_DATA / "brightfield_colloids" / "brightfield.tif"
    ref = pd.read_csv(REAL_DATA / "brightfield_colloids" / "trackpy_brightfield_ring_tracks.csv")
    table, info, _ = track_movie(
        movie,
        DetectorSpec(classical=True, diameter=25, minmass=3000.0),
        LinkingConfig(search_range_px=10.0),
    )
    assert info.n_frames == 50
    matched = 0
    for f, g in ref.groupby("frame"):
        d = table[table["frame"] == f]
        if len(d) == 0:
            continue
        dist = np.hypot(
            g["x"].to_numpy()[:, None] - d["x"].to_numpy(),
            g["y"].to_numpy()[:, None] - d["y"].to_numpy(),
        )
        matched += int((dist.min(axis=1) < 3.0).sum())
    assert matched / len(ref) > 0.9


@pytest.mark.skipif(not REAL_DATA.exists(), reason="real movies not present")
def test_real_brightfield_movie_with_the_shipped_brightfield_detector() -> None:
    """The network trained on simulated Lorenz–Mie scenes: five whole tracks, on the rings."""
    from livetrack.artifact import brightfield_model_dir

    movie = REAL_DATA / "brightfield_colloids" / "brightfield.tif"
    ref = pd.read_csv(REAL_DATA / "brightfield_colloids" / "trackpy_brightfield_ring_tracks.csv")
    table, info, _ = track_movie(
        movie, DetectorSpec(model=str(brightfield_model_dir())), LinkingConfig(search_range_px=10.0)
    )
    assert info.n_frames == 50
    assert sorted(table.groupby("particle").size()) == [50] * 5  # no break, no extra
    merged = table.merge(ref, on="frame", suffixes=("", "_ref"))
    d = np.hypot(merged["x"] - merged["x_ref"], merged["y"] - merged["y_ref"])
    assert int((d < 2.0).sum()) == 250  # every reference position, within 2 px


@pytest.mark.skipif(not REAL_DATA.exists(), reason="real movies not present")
def test_real_trapped_particle_same_trap_in_clean_and_noisy_video() -> None:
    """DeepTrack 1.0's trapped bead recorded at low and high noise: the same trap.

    The position variance should not depend on the camera noise; trackpy's
    centroid (the reference beside the videos) inflates it, radial symmetry on the
    ring structure does much less.
    """
    base = REAL_DATA / "deeptrack_videos"
    if not (base / "trapped_particle_good_gray.tif").exists():
        pytest.skip(f"the trapped-particle videos are not in {base}")
    var, ref = {}, {}
    for v in ("good", "bad"):
        t, _, _ = track_movie(base / f"trapped_particle_{v}_gray.tif", DetectorSpec(single_crop=31))
        assert len(t) == 100
        assert t["particle"].nunique() == 1
        var[v] = t[["x", "y"]].var().to_numpy()
        r = pd.read_csv(base / f"trapped_particle_{v}_trackpy_locate_d15_top1.csv")
        ref[v] = r[["x", "y"]].var().to_numpy()
    ours = var["bad"] / var["good"]
    theirs = ref["bad"] / ref["good"]
    assert np.all(ours < 1.35)
    assert np.all(ours < theirs)


def test_plot_draws_size_and_index_when_the_table_has_them(tmp_path: Path) -> None:
    from livetrack.plots import plot_table

    rng = np.random.default_rng(1)
    rows = []
    for pid in range(6):
        x, y = rng.uniform(10, 90, 2)
        for f in range(20):
            x, y = x + rng.normal(0, 1), y + rng.normal(0, 1)
            rows.append((f, pid, x, y, 0.5 + 0.1 * pid, 1.45 + 0.02 * pid))
    t = pd.DataFrame(rows, columns=["frame", "particle", "x", "y", "radius_um", "refractive_index"])
    write_table(t, tmp_path / "t.csv")
    written = plot_table(tmp_path / "t.csv", tmp_path / "png", pixel_size_um=0.1, fps=10.0)
    assert {p.name for p in written} == {
        "trajectories.png",
        "msd.png",
        "size_index.png",
        "detections.png",
    }
    write_table(t.drop(columns="particle"), tmp_path / "bad.csv")
    with pytest.raises(KeyError, match="particle"):
        plot_table(tmp_path / "bad.csv", tmp_path / "png")


class _Counting:
    """A detector that counts the frames it is asked to detect."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.frames = inner, 0
        self.indexed = getattr(inner, "indexed", False)

    def detect(self, frame: np.ndarray, **kw: Any) -> Any:
        self.frames += 1
        return self.inner.detect(frame, **kw)

    def detect_many(self, frames: list[np.ndarray], **kw: Any) -> Any:
        self.frames += len(frames)
        many = getattr(self.inner, "detect_many", None)
        if many is None:
            return [self.inner.detect(f) for f in frames]
        return many(frames, **kw)

    def needs_sigma_from(self, index: int) -> int | None:
        out: int | None = self.inner.needs_sigma_from(index)
        return out

    def __getattr__(self, name: str) -> Any:  # the card, peaks: what is not counted
        return getattr(self.inner, name)


@pytest.mark.parametrize("classical", [True, False], ids=["trackpy", "model"])
def test_an_interrupted_run_resumes_from_its_checkpoint(
    movie_file: Path, tmp_path: Path, classical: bool
) -> None:
    spec = DetectorSpec(classical=classical, diameter=7, minmass=50.0)
    # fixed linking: each chunk is linked (and counted) as it comes, none held back
    whole, _, _ = track_movie(movie_file, spec, chunk=4, linking_from_data=False)
    kept = tmp_path / "t.parquet.partial.d"
    first = _Counting(spec.build())

    def die_after_12(n: int, done: list[int] = [0]) -> None:  # noqa: B006
        done[0] += n
        if done[0] >= 12:
            raise KeyboardInterrupt  # the job is killed half way

    with pytest.raises(KeyboardInterrupt):
        track_movie(
            movie_file,
            spec,
            chunk=4,
            detector=first,
            on_frames=die_after_12,
            checkpoint=kept,
            linking_from_data=False,
        )
    assert first.frames == 12
    assert len(list(kept.glob("chunk-*.parquet"))) == 3
    second = _Counting(spec.build())
    table, _, _ = track_movie(
        movie_file, spec, chunk=4, detector=second, checkpoint=kept, linking_from_data=False
    )
    # only what was missing (the model: plus frame 8, whose PSF width frames 12-15 use)
    assert second.frames == (12 if classical else 13)
    pd.testing.assert_frame_equal(table, whole)
    # another chunk size (or movie, or detector) is another run: nothing stale is reused
    third = _Counting(spec.build())
    track_movie(movie_file, spec, chunk=6, detector=third, checkpoint=kept)
    assert third.frames == 24


@pytest.mark.slow
def test_full_disk_fails_clearly_keeps_the_detections_and_resumes(
    movie_file: Path, tmp_path: Path
) -> None:
    """A file-size limit makes the kernel refuse the table's write (EFBIG) half way."""
    out = tmp_path / "res" / "beads.csv"
    args = ["process", str(movie_file), "-o", str(out), "--classical", "--diameter", "7"]
    args += ["--minmass", "50", "--chunk", "4"]

    def small_files() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, resource.RLIM_INFINITY))

    p = subprocess.run(
        [sys.executable, "-m", "livetrack.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=small_files,
    )
    assert p.returncode == 2, p.stderr[-2000:]
    assert "cannot write" in p.stderr
    assert "File too large" in p.stderr
    assert "rerun to resume" in p.stderr
    assert not out.exists()
    assert not list(out.parent.glob("*.partial"))
    kept = out.with_name(out.name + ".partial.d")
    assert len(list(kept.glob("chunk-*.parquet"))) == 6
    p = _cli(*args)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "resuming, 24 frames kept" in p.stderr
    assert not kept.exists()
    direct, _, _ = track_movie(
        movie_file, DetectorSpec(classical=True, diameter=7, minmass=50.0), chunk=4
    )
    got = read_table(out)
    assert len(got) == len(direct) > 24
    np.testing.assert_allclose(got[["x", "y"]].to_numpy(), direct[["x", "y"]].to_numpy(), atol=1e-9)


def test_the_split_setting_reaches_the_detector_and_survives_a_hot_swap() -> None:
    from livetrack.detection._split import SPLIT_Z

    assert DetectorSpec().build().split_z == SPLIT_Z
    assert DetectorSpec(split=False).build().split_z is None
    service = Service(
        Detector(split=False),
        ServiceConfig(
            frames="tcp://127.0.0.1:0", results="tcp://127.0.0.1:0", control="tcp://127.0.0.1:0"
        ),
    )
    try:
        assert service.status()["split"] is False
        swapped = service.control._load(str(Detector().path))
        assert swapped.split_z is None  # type: ignore[attr-defined]
    finally:
        service.close()


def test_warm_up_traces_the_network_and_leaves_detections_unchanged(
    beads: SimulationConfig,
) -> None:
    from livetrack.simulation import simulate_movie

    movie = simulate_movie(small(beads, 128, 96, number=12), 2, seed=4)
    cold = Detector()
    warm = Detector()
    warm.warm_up((64, 64))
    for k, frame in enumerate(movie.frames):
        a, b = cold.detect(frame, index=k), warm.detect(frame, index=k)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    assert len(a) >= 8


def test_reset_starts_a_new_stream(beads: SimulationConfig) -> None:
    from livetrack.simulation import simulate_movie

    movie = simulate_movie(small(beads, 128, 96, number=12), 2, seed=5)
    used, fresh = Detector(), Detector()
    used.detect(movie.frames[0])
    assert used.needs_sigma_from(1) is None  # frame 0 gave it the PSF width
    used.reset()
    assert used.needs_sigma_from(1) == 0  # forgotten: frame 0 of the new stream decides
    a, b = used.detect(movie.frames[1]), fresh.detect(movie.frames[1])
    np.testing.assert_array_equal(a.x, b.x)  # counted from frame 0 again, as a new one
