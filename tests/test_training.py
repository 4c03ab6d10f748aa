"""Training and the artifact: tiny real TensorFlow runs (seconds), round trips, refusals."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from livetrack.artifact import ArtifactError, check_fits, read_card
from livetrack.config import presets_dir
from livetrack.detection.normalise import fast_arcsinh, robust_normalise
from livetrack.detection.readout import read_peaks
from livetrack.training import load_training_config, make_crop
from livetrack.training._data import heatmap_targets

from .conftest import REAL_DATA

TINY = """
[training]
name = "tiny"
channels = [8, 8, 8]
crop = 32
batch_size = 8
steps_per_epoch = 12
epochs = 3
validation_crops = 16
learning_rate = 3e-3
"""


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = (presets_dir() / "fluorescent_beads.toml").read_text()
    text = text.split("[training]")[0] + TINY
    p = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def tiny_model(
    tiny_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, list[float]]]:
    from livetrack.training import train

    out = tmp_path_factory.mktemp("models") / "tiny"
    result = train(tiny_config, out, verbose=0, workers=1)
    return out, result.history


@pytest.mark.slow
def test_tiny_training_lowers_the_loss(tiny_model: tuple[Path, dict[str, list[float]]]) -> None:
    _, history = tiny_model
    assert len(history["loss"]) == 3
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]


@pytest.mark.slow
def test_artifact_round_trips(
    tiny_model: tuple[Path, dict[str, list[float]]], tiny_config: Path
) -> None:
    from livetrack.detection.detector import Detector

    path, _ = tiny_model
    card = read_card(path)
    assert card.name == "tiny"
    assert card.expects.pixel_size_um == pytest.approx(0.065)
    assert card.training.seed == 0
    assert card.training.versions["tensorflow"]
    assert 0 < card.outputs.threshold < 1
    assert "held_out_crops" in card.metrics
    assert "livetrack train" in card.training.command
    assert card.flops_per_512 is not None
    assert card.flops_per_512 > 1e6
    det = Detector(path)
    frame = np.random.default_rng(0).poisson(110, (70, 90)).astype(np.uint16)  # not a multiple of 4
    d = det.detect(frame)
    assert d.x.shape == d.y.shape == d.score.shape
    assert set(d.timings_ms) == {"normalise", "model", "readout"}


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint(tiny_config: Path, tmp_path: Path) -> None:
    from livetrack.training import train

    out = tmp_path / "m"
    train(tiny_config, out, epochs=1, verbose=0, workers=1)
    # a checkpoint left from an interrupted run is picked up
    (out / "checkpoint").mkdir()
    (out / "model.keras").rename(out / "checkpoint" / "model.keras")
    (out / "checkpoint" / "training_state.json").write_text(json.dumps({"epoch": 1}))
    result = train(tiny_config, out, epochs=2, verbose=0, workers=1, resume=True)
    assert result.epochs_run == 1  # only epoch 2 was left
    assert read_card(out).training.epochs == 2


def test_mismatched_card_is_refused_with_the_reason(tiny_config: Path, tmp_path: Path) -> None:
    card_dir = Path(__file__).resolve().parents[1] / "livetrack" / "models" / "default"
    card = read_card(card_dir)
    with pytest.raises(ArtifactError) as info:
        check_fits(card, pixel_size_um=card.expects.pixel_size_um * 2)
    msg = str(info.value)
    assert "pixel size" in msg
    assert "--force-model" in msg
    assert re.search(r"by 100%", msg)
    assert check_fits(card, pixel_size_um=card.expects.pixel_size_um * 1.05) == []
    problems = check_fits(card, modality="holography", override=True)
    assert problems
    assert "holography" in problems[0]


def test_broken_artifacts_are_refused(tmp_path: Path) -> None:
    from livetrack.detection.detector import Detector

    with pytest.raises(ArtifactError, match="not a model artifact"):
        read_card(tmp_path / "nothing")
    (tmp_path / "a").mkdir()
    with pytest.raises(ArtifactError, match=r"no card\.json"):
        read_card(tmp_path / "a")
    good = Path(__file__).resolve().parents[1] / "livetrack" / "models" / "default" / "card.json"
    (tmp_path / "a" / "card.json").write_text(good.read_text())
    with pytest.raises(ArtifactError, match=r"no model\.keras"):
        Detector(tmp_path / "a")
    (tmp_path / "a" / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArtifactError, match="cannot load the model"):
        Detector(tmp_path / "a")
    data = json.loads(good.read_text())
    data["card_version"] = 99
    (tmp_path / "a" / "card.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"card_version 99"):
        read_card(tmp_path / "a")


def test_flops_are_counted_per_layer_at_the_size_asked_for() -> None:
    """A convolution and a dense layer, counted by hand: 2 × multiply–adds each."""
    import keras

    from livetrack.training._flops import count_flops

    inp = keras.Input((None, None, 1))
    conv = keras.layers.Conv2D(4, 3, padding="same")(inp)
    fully = keras.Model(inp, keras.layers.Conv2D(2, 1)(conv))
    # 3×3×1→4 then 1×1×4→2 over every pixel: 2·(36 + 8) per pixel
    assert count_flops(fully, (8, 8, 1)) == 2 * 64 * (36 + 8)
    assert count_flops(fully, (16, 8, 1)) == 2 * 128 * (36 + 8)
    crop = keras.Input((6, 6, 1))
    head = keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(crop)))
    assert count_flops(keras.Model(crop, head), (6, 6, 1)) == 2 * (16 * 9 * 2 + 32 * 3)


def test_labels_decode_to_the_true_positions() -> None:
    """Heat targets plus offsets read back (peak search) to the exact positions."""
    rng = np.random.default_rng(3)
    gx, gy = np.meshgrid([8.0, 28.0, 48.0], [10.0, 40.0])
    x = gx.ravel() + rng.uniform(-2, 2, 6)  # anywhere within / across cells
    y = gy.ravel() + rng.uniform(-2, 2, 6)
    t = heatmap_targets(x, y, np.full(6, 10.0), np.ones(6, bool), 16, 1.0)
    out = np.zeros((16, 16, 3), np.float32)
    h = np.clip(t[..., 0], 1e-4, 1 - 1e-4)
    out[..., 0] = np.log(h / (1 - h))
    out[..., 1:] = t[..., 1:3]
    px, py, score = read_peaks(out, 0.5, 4, (64, 64))
    assert len(px) == 6
    for xi, yi in zip(x, y, strict=True):
        assert np.min(np.hypot(px - xi, py - yi)) < 1e-3
    assert np.all(score > 0.8)  # on a cell corner or centre alike


def test_two_cells_pointing_at_one_particle_give_one_detection() -> None:
    """A particle on a cell border can top two cells with equal logits: one peak."""
    out = np.full((16, 16, 3), -8.0, np.float32)
    out[..., 1:] = 0.0
    out[5, 6:8, 0] = 6.0  # two neighbouring cells, the same (saturated) logit
    out[5, 6, 1], out[5, 7, 1] = 0.45, -0.5  # both offsets point at x ≈ 29.3
    out[12, 3, 0] = 6.0  # and a lone particle elsewhere
    px, py, _ = read_peaks(out, 0.1, 4, (64, 64))
    assert len(px) == 2
    k = int(np.argmax(px))
    assert px[k] == pytest.approx((6 + 0.5 + 0.45) * 4 - 0.5)  # the first cell's
    assert py[k] == pytest.approx((5 + 0.5) * 4 - 0.5)


def test_normalisation_ignores_offset_and_gain() -> None:
    rng = np.random.default_rng(0)
    frame = rng.poisson(20, (64, 64)).astype(float)
    a = robust_normalise(frame)
    b = robust_normalise(frame * 3.0 + 500.0)
    assert np.allclose(a, b, atol=1e-4)


def test_integer_frames_are_normalised_by_table_to_the_same_numbers() -> None:
    rng = np.random.default_rng(3)
    frame = rng.poisson(100, (96, 80)).astype(np.uint16)
    frame[10:20, 10:20] += 3000  # bright spots: a long table
    # signed frames spanning more than their type's positive half: offsets must not wrap
    wide16 = rng.integers(-30000, 30000, size=(256, 256)).astype(np.int16)
    wide8 = rng.integers(-128, 128, size=(32, 32)).astype(np.int8)
    eight = (frame % 256).astype(np.uint8)
    for f in (frame, (frame.astype(np.int32) - 150), frame[:, :7], wide16, wide8, eight):
        for compress in (True, False):
            table = robust_normalise(f, compress=compress)
            pixels = robust_normalise(f.astype(np.float32), compress=compress)
            assert table.dtype == np.float32
            assert np.array_equal(table, pixels)


def test_fast_arcsinh_matches_numpy_over_the_whole_float32_range() -> None:
    x = np.concatenate(
        [
            np.linspace(-100.0, 100.0, 200_001),
            np.logspace(-30, 38, 2000),
            -np.logspace(-30, 38, 2000),
            [0.0, -0.0],
        ]
    ).astype(np.float32)
    ref = np.arcsinh(x.astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow from squaring 3e38
        got = fast_arcsinh(x.copy())
        ends = fast_arcsinh(np.array([np.inf, -np.inf], np.float32))
    err = np.abs(got - ref)
    small = np.abs(x) < 1.0
    assert err[small].max() < 2e-7
    assert (err[~small] / np.abs(ref[~small])).max() < 3e-7
    assert np.array_equal(np.signbit(got), np.signbit(x))
    assert list(ends) == [np.inf, -np.inf]
    assert np.isnan(fast_arcsinh(np.array([np.nan, 1e20], np.float32))[0])


def test_training_crops_are_randomised_and_reproducible() -> None:
    sim, cfg, _ = load_training_config("fluorescent_beads")
    a = make_crop(sim, cfg, np.random.default_rng(1))
    b = make_crop(sim, cfg, np.random.default_rng(1))
    c = make_crop(sim, cfg, np.random.default_rng(2))
    assert np.array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (cfg.crop, cfg.crop, 1)
    assert a[1].shape == (cfg.crop // 4, cfg.crop // 4, 4)


def test_shipped_default_model_detects_fresh_simulated_particles() -> None:
    """The default model, on frames it never saw (new seed), keeps F1 ≥ 0.9 at SNR 4."""
    import pandas as pd

    from livetrack.artifact import default_model_dir
    from livetrack.detection.detector import Detector
    from livetrack.linking.scores import detection_scores
    from livetrack.simulation.scenarios import Scenario

    assert (default_model_dir() / "model.keras").stat().st_size < 5 * 1024 * 1024
    det = Detector()
    # the real-time budget on a CPU: about 1 GFLOP per 512² frame or less
    assert det.card.flops_per_512 is not None
    assert det.card.flops_per_512 < 1e9
    sc = Scenario("fresh", 50, 4.0, 2, size=256, seed=987654)
    movie, truth = sc.render()
    found = []
    for i, f in enumerate(movie):
        d = det.detect(f)
        found.append(pd.DataFrame({"frame": i, "x": d.x, "y": d.y}))
    s = detection_scores(truth, pd.concat(found), gate=2.0)
    assert s.f1 >= 0.9, s
    assert s.rmse_px < 0.5


def test_batched_detection_equals_frame_by_frame() -> None:
    """The service batches a lossless backlog; results must not depend on it."""
    from livetrack.detection.detector import Detector
    from livetrack.simulation.scenarios import Scenario

    movie, _ = Scenario("batch", 30, 5.0, 3, size=128, seed=11).render()
    single = Detector()  # a fresh one each way: the same σ-estimate schedule
    one = [single.detect(f) for f in movie]
    many = Detector().detect_many(list(movie))
    for a, b in zip(one, many, strict=True):
        assert np.allclose(a.x, b.x, atol=1e-4)
        assert np.allclose(a.y, b.y, atol=1e-4)
        assert np.allclose(a.score, b.score, atol=1e-4)


def test_bfloat16_arithmetic_finds_the_same_particles_as_float32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``auto`` picks bfloat16 on CPUs that have it; positions come from the raw frame."""
    from livetrack.detection.detector import Detector, resolve_precision
    from livetrack.simulation.scenarios import Scenario

    movie, _ = Scenario("bf16", 60, 4.0, 2, size=256, seed=21).render()
    full, half = Detector(precision="float32"), Detector(precision="bfloat16")
    assert (full.precision, half.precision) == ("float32", "bfloat16")
    assert half.model.layers[1].compute_dtype == "bfloat16"
    for f in movie:
        a, b = full.detect(f), half.detect(f)
        assert abs(len(a) - len(b)) <= 1
        pa, pb = np.c_[a.x, a.y], np.c_[b.x, b.y]
        d = np.hypot(*(pa[:, None, :] - pb[None, :, :]).transpose(2, 0, 1)).min(axis=1)
        assert np.mean(d < 0.01) >= 0.97  # the same fits, to a hundredth of a pixel
    assert resolve_precision("float32") == "float32"
    monkeypatch.setenv("LIVETRACK_PRECISION", "float32")
    assert resolve_precision("auto") == "float32"
    assert resolve_precision("bfloat16") == "bfloat16"  # an explicit choice wins
    monkeypatch.setenv("LIVETRACK_PRECISION", "half")
    with pytest.raises(ValueError, match="LIVETRACK_PRECISION"):
        resolve_precision("auto")
    with pytest.raises(ValueError, match="precision"):
        Detector(precision="float8")


def test_auto_precision_is_int8_on_a_cpu_and_falls_back_where_it_cannot_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """auto: int8 where ONNX Runtime is installed, else bfloat16/float32; never an error."""
    import livetrack.detection._int8 as int8_module
    import livetrack.detection.precision as precision_module
    from livetrack.detection.detector import Detector, native_bfloat16, resolve_precision

    monkeypatch.delenv("LIVETRACK_PRECISION", raising=False)
    assert resolve_precision("auto") == "int8"  # CI: a CPU, onnxruntime installed
    assert Detector().precision == "int8"
    without = "bfloat16" if native_bfloat16() else "float32"
    assert resolve_precision("auto", int8=False) == without
    monkeypatch.setattr(precision_module, "int8_available", lambda: False)
    assert resolve_precision("auto") == without
    monkeypatch.undo()

    def unconvertible(model: object) -> None:
        raise ValueError("precision int8 knows the default detector's layers")

    # a model the int8 writer does not know: auto runs it in float, int8 named refuses
    monkeypatch.setattr(int8_module, "_CACHE", {})
    monkeypatch.setattr(int8_module, "detector_graph", unconvertible)
    fallback = Detector()
    assert (fallback.asked_precision, fallback.precision) == ("auto", without)
    assert len(fallback.detect(np.full((64, 64), 100, np.uint16))) == 0
    with pytest.raises(ArtifactError, match="default detector's layers"):
        Detector(precision="int8")


def test_the_xla_compiled_network_finds_what_the_graph_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """XLA on CPUs by default; a stack gives each frame's numbers exactly as alone."""
    from livetrack.detection.detector import Detector, resolve_xla
    from livetrack.simulation.scenarios import Scenario

    movie, _ = Scenario("xla", 60, 4.0, 3, size=128, seed=22).render()
    # float32 named: on a CPU with native bfloat16 "auto" picks bfloat16, without XLA
    graph = Detector(xla=False, precision="float32")
    xla = Detector(xla=None, precision="float32")
    assert (graph.xla, xla.xla) == (False, True)  # CI and this machine: a CPU
    stacked = xla.network(movie)
    for k, f in enumerate(movie):
        alone = xla.network(f[None])[0]
        assert np.array_equal(alone, stacked[k])
        assert np.allclose(alone, graph.network(f[None])[0], atol=1e-4)
        a, b = graph.detect(f, index=k), xla.detect(f, index=k)
        assert len(a) == len(b)
        assert np.allclose(np.c_[a.x, a.y], np.c_[b.x, b.y], atol=1e-3)
    monkeypatch.setenv("LIVETRACK_XLA", "0")
    assert not resolve_xla(None, "float32")
    assert resolve_xla(True, "float32")  # an explicit choice wins
    monkeypatch.setenv("LIVETRACK_XLA", "yes")
    with pytest.raises(ValueError, match="LIVETRACK_XLA"):
        resolve_xla(None, "float32")


def test_the_int8_network_finds_what_float32_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime int8: the same particles, positions equal after MLE refinement."""
    import sys

    import pandas as pd
    from scipy.spatial import cKDTree

    import livetrack.detection._int8 as int8_module
    from livetrack.detection.detector import Detector
    from livetrack.linking.scores import detection_scores
    from livetrack.simulation.scenarios import Scenario

    movie, truth = Scenario("int8", 40, 4.0, 3, size=192, seed=23).render()
    f32 = Detector(precision="float32")
    int8 = Detector(precision="int8")
    assert (int8.precision, int8.xla) == ("int8", False)
    stacked = int8.network(movie)
    found: dict[str, list[pd.DataFrame]] = {"f32": [], "int8": []}
    gaps = []
    for k, f in enumerate(movie):
        assert np.array_equal(int8.network(f[None])[0], stacked[k])  # stack or alone
        a, b = f32.detect(f, index=k), int8.detect(f, index=k)
        found["f32"].append(pd.DataFrame({"frame": k, "x": a.x, "y": a.y}))
        found["int8"].append(pd.DataFrame({"frame": k, "x": b.x, "y": b.y}))
        d, _ = cKDTree(np.c_[a.x, a.y]).query(np.c_[b.x, b.y])
        gaps.append(d)
    s32, s8 = (detection_scores(truth, pd.concat(found[n])) for n in ("f32", "int8"))
    assert s32.f1 > 0.9
    assert s8.f1 >= s32.f1 - 0.02
    gap = np.concatenate(gaps)
    # where both found a particle, the refined positions agree far below the CRLB
    assert np.mean(gap < 0.5) > 0.95
    assert np.median(gap) < 0.01, np.median(gap)
    # the offsets keep their own resolution (quantised with the logits: 0.023 cells)
    raw32 = f32.network(movie)
    live = raw32[..., 0] > -2
    wobble = np.sqrt(np.mean((raw32[..., 1:][live] - stacked[..., 1:][live]) ** 2))
    assert wobble < 0.012, wobble
    # without ONNX Runtime: a clear error that says what to install
    monkeypatch.setattr(int8_module, "_CACHE", {})
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ArtifactError, match=r"pip install onnxruntime onnx"):
        Detector(precision="int8")


@pytest.mark.skipif(not REAL_DATA.exists(), reason="real movies not present")
def test_the_int8_network_stays_close_to_float32_on_a_real_movie() -> None:
    """Bright cores in dark rings, outside the default model's training: no range clips.

    Calibrated on fluorescent spots alone, int8 found 6 % more particles here than
    float32 and 76 % of them within 0.5 px of float32's; the MLE does not converge
    on these rings, so the network's own positions show (docs/training.md).
    """
    import tifffile
    from scipy.spatial import cKDTree

    from livetrack.detection.detector import Detector

    movie = tifffile.imread(REAL_DATA / "deeptrack_videos" / "brownian_particles_gray.tif")[:10]
    f32, int8 = Detector(precision="float32"), Detector(precision="int8")
    a = [f32.detect(f, index=k) for k, f in enumerate(movie)]
    b = [int8.detect(f, index=k) for k, f in enumerate(movie)]
    n32, n8 = sum(len(d.x) for d in a), sum(len(d.x) for d in b)
    assert n32 > 200
    assert abs(n8 - n32) <= 0.03 * n32, (n8, n32)
    gap = np.concatenate(
        [cKDTree(np.c_[p.x, p.y]).query(np.c_[q.x, q.y])[0] for p, q in zip(a, b, strict=True)]
    )
    assert np.mean(gap < 0.5) > 0.83, np.mean(gap < 0.5)
    assert np.median(gap) < 0.13, np.median(gap)


def test_the_space_to_depth_layer_folds_into_the_next_convolution_exactly() -> None:
    """The compiled path's folded network is the model's own, and refuses other shapes."""
    import keras
    import tensorflow as tf

    from livetrack.detection._folded import folded_network
    from livetrack.training._model import build_detector

    rng = np.random.default_rng(5)
    frame = rng.normal(size=(2, 64, 96, 1)).astype(np.float32)
    model = build_detector((8, 8, 8), seed=3)
    forward = folded_network(model)
    assert forward is not None
    want = model(frame, training=False).numpy()
    got = tf.function(forward, jit_compile=True)(frame).numpy()
    assert got.shape == want.shape
    assert np.allclose(got, want, atol=1e-5), np.abs(got - want).max()

    # a bias, an activation, or a second reader of the folded layer: not foldable
    inp = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 4, strides=4, use_bias=True)(inp)
    biased = keras.Model(inp, keras.layers.Conv2D(2, 3, padding="same")(x))
    assert folded_network(biased) is None
    x = keras.layers.Conv2D(4, 4, strides=4, use_bias=False)(inp)
    y = keras.layers.Conv2D(2, 3, padding="same")(x)
    shared = keras.Model(inp, keras.layers.Concatenate()([x, y]))
    assert folded_network(shared) is None


def test_scene_crops_label_every_particle_inside_and_keep_colloids_apart() -> None:
    """Brightfield training crops: rendered Lorenz–Mie scenes, labels at the true centres."""
    from livetrack.config import load_simulation_config
    from livetrack.training._scene_crops import render_scene_crops

    sim = load_simulation_config(presets_dir() / "brightfield_colloid_detector.toml")
    crops = render_scene_crops(sim, 24, [3, 0], 64, (1, 3))
    assert crops.images.shape == (24, 64, 64, 1)
    assert crops.targets.shape == (24, 16, 16, 4)
    again = render_scene_crops(sim, 24, [3, 0], 64, (1, 3))
    assert np.array_equal(crops.images, again.images)  # seeded
    labelled = 0
    for tgt, truth in zip(crops.targets, crops.truths, strict=True):
        x, y, _ = read_peaks(
            np.concatenate([np.log(tgt[..., :1] + 1e-9) - np.log1p(-tgt[..., :1] + 1e-9),
                            tgt[..., 1:3]], axis=-1),
            0.5, 4, (64, 64),
        )  # fmt: skip
        assert len(x) == len(truth["x"])  # every particle inside the crop, once
        if len(x):
            d = np.hypot(x[:, None] - truth["x"], y[:, None] - truth["y"]).min(axis=0)
            assert np.all(d < 0.05)
            pair = np.hypot(*(np.c_[x, y][:, None] - np.c_[x, y][None]).transpose(2, 0, 1))
            assert np.all(pair[np.triu_indices(len(x), 1)] >= 16.0 - 0.1)
        labelled += len(x)
    assert labelled >= 24  # at least one particle inside most crops
    with pytest.raises(ValueError, match="on the fly"):
        render_scene_crops(load_simulation_config("fluorescent_beads"), 2, 0, 64, (0, 1))


@pytest.mark.slow
def test_a_brightfield_detector_trains_on_rendered_scenes(tmp_path: Path) -> None:
    """The detector path for brightfield: fixed rendered set, threshold from crops, no MLE."""
    from livetrack.detection.detector import Detector
    from livetrack.training import train

    text = (presets_dir() / "brightfield_colloid_detector.toml").read_text()
    for old, new in (
        ("train_samples = 24000", "train_samples = 256"),
        ("validation_crops = 1000", "validation_crops = 32"),
        ("epochs = 30", "epochs = 3"),
    ):
        assert old in text
        text = text.replace(old, new)
    cfg = tmp_path / "bf.toml"
    cfg.write_text(text)
    result = train(cfg, tmp_path / "bf", verbose=0, workers=1)
    assert result.history["val_loss"][-1] < result.history["val_loss"][0]
    card = read_card(tmp_path / "bf")
    assert (card.expects.modality, card.outputs.refinement) == ("brightfield", "none")
    assert card.training.steps == 256 // 32
    assert "held_out_crops" in card.metrics
    det = Detector(tmp_path / "bf", precision="float32")
    assert det.refine_positions is False
    frame = np.random.default_rng(1).poisson(70, (66, 90)).astype(np.uint8)
    d = det.detect(frame)
    assert np.all(np.isnan(d.photons))  # nothing fitted: the network's positions
