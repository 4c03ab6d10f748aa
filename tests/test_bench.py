"""Smoke test of ``livetrack bench --quick``: the report is complete and sane (never a timing)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from livetrack.cli import app

from .conftest import REAL_DATA


@pytest.mark.slow
def test_quick_bench_report_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    rep = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["bench", "--quick", "--only", "simulation", "--json", str(out), "--report", str(rep)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {"cpu", "cores", "versions"} <= set(data["machine"])
    rows = data["simulation"]
    assert {r["preset"] for r in rows} == {
        "fluorescent_beads",
        "brightfield_colloids",
        "holography_spheres",
    }
    for r in rows:
        assert r["particles"] > 0
        assert r["render_ms"] > 0
        assert r["frame_ms"] > 0
    assert "| preset |" in (rep / "report.md").read_text()


@pytest.mark.slow
def test_quick_linking_section_is_complete_and_sane(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "linking", "--json", str(out)])
    assert result.exit_code == 0, result.output
    every = json.loads(out.read_text())["linking"]
    rows = [r for r in every if "linking" not in r]
    # the search range and memory read from a dense movie seen by a poor detector
    defaults, data = (r for r in every if "linking" in r)
    assert abs(data["msd_over_truth"] - 1) < 0.1
    assert defaults["msd_over_truth"] > 1.2
    keys = {
        "scenario",
        "jsc",
        "alpha",
        "trackpy_jsc",
        "trackpy_alpha",
        "ms_per_frame",
        "trackpy_ms_per_frame",
    }
    assert len(rows) >= 4
    for r in rows:
        assert keys <= set(r)
        for k in ("jsc", "alpha", "trackpy_jsc", "trackpy_alpha"):
            assert 0.0 <= r[k] <= 1.0
        assert r["ms_per_frame"] > 0
        assert r["trackpy_ms_per_frame"] > 0
    # without a detector in the way, linking 500 particles is nearly perfect for both
    exact = next(r for r in rows if "no detector" in r["scenario"])
    assert exact["jsc"] > 0.85
    assert exact["trackpy_jsc"] > 0.85
    # exact positions bound what linking our detections can reach
    ceiling = next(r for r in rows if "linking ceiling" in r["scenario"])
    ours = next(r for r in rows if r["scenario"] == "brownian 100 SNR 4")
    assert ceiling["jsc"] >= ours["jsc"] - 0.02


def test_unknown_part_is_refused() -> None:
    result = CliRunner().invoke(app, ["bench", "--only", "nonsense"])
    assert result.exit_code == 2
    # typer refuses it, naming the value and the parts there are
    assert "'nonsense' is not one of" in result.output
    assert "'linking'" in result.output


def test_quick_accuracy_sections_have_the_agreed_keys(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--only", "localization", "--only", "detection", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for r in data["localization"]:
        assert {"photons", "rmse_px", "crlb_px", "trackpy_rmse_px"} <= set(r)
        assert 0.5 < r["rmse_px"] / r["crlb_px"] < 3.0  # sane, not a goal
    for r in data["detection"]:
        assert {
            "scenario",
            "snr",
            "particles",
            "f1",
            "rmse_px",
            "trackpy_f1",
            "trackpy_rmse_px",
        } <= set(r)
        assert 0.0 <= r["f1"] <= 1.0


@pytest.mark.slow
def test_quick_speed_section_goes_through_the_real_service(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "speed", "--json", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["speed"]
    assert {"frame", "particles", "fps", "latency_ms", "trackpy_fps"} <= set(row)
    assert row["frame"] == "512x512"
    assert row["fps"] > 0
    assert row["trackpy_fps"] > 0
    assert row["latency_ms"]["p50"] > 0
    assert row["rejected"] == 0
    assert {"model", "readout", "link", "pack_publish"} <= set(row["stages_p50_ms"])


def test_report_has_plots(tmp_path: Path) -> None:
    rep = tmp_path / "report"
    args = [
        "bench",
        "--quick",
        "--only",
        "localization",
        "--only",
        "detection",
        "--report",
        str(rep),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("localization.png", "detection.png"):
        png = rep / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10_000
        assert f"({name})" in (rep / "report.md").read_text()


@pytest.mark.slow
def test_quick_overload_accounts_for_every_frame_in_both_policies(tmp_path: Path) -> None:
    """10× the service's capacity: nothing is lost unaccounted, lossless keeps order."""
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "overload", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["policy"]: r for r in json.loads(out.read_text())["overload"]}
    assert set(rows) == {"realtime", "lossless"}
    for r in rows.values():
        assert r["accounted"]
        assert r["offered"] == r["sent"] + r["dropped_at_sender"]
        assert r["sent"] == r["processed"] + r["skipped"] + r["rejected"]
        assert r["results_in_order"]
        assert r["rss_mb"]["peak"] > 0
    assert rows["lossless"]["skipped"] == 0
    assert rows["realtime"]["skipped"] > 0  # it was overloaded, and said so


@pytest.mark.slow
def test_quick_storm_rejects_every_bad_message_and_keeps_every_good_frame(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "storm", "--json", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["storm"]
    assert row["rejected_total"] == row["bad_sent"] == 1000
    assert row["processed"] == row["good_sent"]
    assert row["received"] == row["bad_sent"] + row["good_sent"]
    assert row["good_results"] == row["good_sent"]
    assert set(row["rejected"]) <= {
        "wrong_parts",
        "malformed",
        "oversized",
        "bad_header",
        "wrong_version",
        "bad_dtype",
        "size_mismatch",
        "non_finite",
    }
    # drawn from the conformance suite's kinds: each counted under its own reason
    assert row["bad_kinds"] >= 80
    assert row["rejected_as_expected"]
    assert row["control_replies_as_expected"]
    assert row["control_requests_bad"] >= 10
    assert row["accounted"]


def test_quick_overhead_section_times_the_service_without_a_model(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "overhead", "--json", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["overhead"]
    assert row["frames"] == 200  # every frame went through the real service
    assert 0 < row["overhead_p50_ms"] <= row["overhead_p99_ms"]
    # per frame, the sum of its parts: its median is at least each part's
    for part in ("receive", "normalise", "pack_publish"):
        assert row["overhead_p50_ms"] >= row[f"{part}_p50_ms"] > 0


@pytest.mark.slow
def test_quick_sizing_section_compares_with_a_lorenz_mie_fit(tmp_path: Path) -> None:
    from livetrack.artifact import characteriser_model_dir

    if not (characteriser_model_dir() / "card.json").is_file():
        pytest.skip("no shipped characteriser")
    out = tmp_path / "z.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "sizing", "--json", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["sizing"]
    assert row["crops"] == 100
    for name in ("radius_um", "refractive_index", "z_um"):
        # the calibrated σ covers about 68 % of the errors (100 crops: ± 0.05)
        assert 0.5 <= row["ours"][name]["within_1_sigma"] <= 0.85, name
    assert row["ours_ms_per_particle"] > 0
    # the physical limit beside it: the hologram fixes the index far better than 0.01
    assert row["crlb"]["spheres"] == 10
    assert 0 < row["crlb"]["index_median"] < 0.01
    assert 0 < row["crlb"]["radius_relative_median"] < 0.05
    assert row["pylorenzmie"]["crops"] == 5
    assert row["pylorenzmie"]["ms_per_particle"] > 0
    # our fit from the network's estimates: well below the network's error
    fit = row["ours_then_fit"]
    assert fit["crops"] == 20
    assert fit["refractive_index"]["rmse"] < min(0.01, row["ours"]["refractive_index"]["rmse"])
    assert fit["radius_um"]["relative_rmse"] < row["ours"]["radius_um"]["relative_rmse"]
    assert 0.9 < fit["reduced_chi2_median"] < 1.1
    assert fit["seconds_per_particle_median"] > 0


@pytest.mark.slow
def test_quick_single_section_sets_the_localiser_beside_classical_centring(
    tmp_path: Path,
) -> None:
    out = tmp_path / "s.json"
    args = ["bench", "--quick", "--only", "single", "--json", str(out)]
    result = CliRunner().invoke(app, [*args, "--real-data", str(REAL_DATA)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["single"]
    sim = [r for r in rows if r["data"] == "simulated"]
    assert [r["illumination_photons"] for r in sim] == [250.0, 1000.0, 2000.0, 2000.0]
    assert [r["core_clipped"] for r in sim] == [False, False, False, True]
    for r in sim:
        assert r["crops"] == 60
        for k in ("localiser_rmse_px", "radial_symmetry_rmse_px", "trackpy_rmse_px"):
            assert 0 < r[k] < 1.0, k
        # the calibrated σ covers about 68 % of the errors (60 crops: ± 0.06)
        assert 0.45 <= r["within_1_sigma"] <= 0.9, r
    real = [r for r in rows if r["data"].startswith("real brightfield")]
    if real:  # the real movies sit beside a checkout, not in an installed package
        assert real[0]["frames"] == 250
        assert 0 < real[0]["localiser_spread_px"] < 1.0
    trap = [r for r in rows if r["data"].startswith("real trapped")]
    if trap:
        assert [r["frames"] for r in trap] == [100, 100]
        for r in trap:  # --single auto: within 10 % of the careful reference
            assert all(0.9 <= v <= 1.1 for v in r["auto_template_over_reference"]), r
            assert r["localiser"].startswith("refused: the particle looks")
        # radial symmetry on a 31 px crop is noisier on the noisy video
        assert max(trap[1]["radial_symmetry_31_over_reference"]) > 1.2


@pytest.mark.slow
def test_quick_reconnect_after_kill_9_counts_every_frame(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["bench", "--quick", "--only", "reconnect", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())["reconnect"]
    assert row["trials"] == 3
    assert len(row["reconnect_s"]["all"]) == 3
    assert row["reconnect_s"]["max"] < 30  # it came back every time (how fast: the bench)
    assert row["camera_frames_while_down_per_s"] > 10  # the camera never stalled
    assert row["dropped_while_down_per_s"] > 0
    assert row["accounted"]


def test_the_report_names_the_gpu_it_ran_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from livetrack.bench._runner import gpus, machine_info

    # no GPU here (CI): a stand-in nvidia-smi, the one piece of hardware we lack
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert gpus() == ["GPU 0: NVIDIA H100 80GB HBM3"]
    assert machine_info()["gpu"] == "GPU 0: NVIDIA H100 80GB HBM3"


@pytest.mark.slow
def test_quick_centring_runs_the_closed_loop_in_each_mode(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--only", "centring", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["centring"]
    runs = [r for r in rows if r["seed"] != "all"]
    modes = {(True, "2"), (True, "1-3"), (False, "2")}  # guard, stage latency (frames)
    assert sorted((r["seed"], r["identity_guard"], r["latency_frames"]) for r in runs) == sorted(
        (seed, *mode) for seed in (0, 1) for mode in modes
    )
    for r in runs:
        # two seconds of closed loop: the stage pulls the pinned particle in and holds it
        assert r["rms_px"] < 10.0, r
        # (jittered, seed 0 meets a neighbour early: 28 of its first 100 frames are
        # not on the bead's track, yet the bead stays centred)
        assert r["following_share"] > (0.9 if r["latency_frames"] == "2" else 0.6), r
        assert r["centred"]
    summary = {(r["identity_guard"], r["latency_frames"]): r for r in rows if r["seed"] == "all"}
    assert set(summary) == modes
    assert all(r["seeds_centred"] == "2/2" and r["failed_seeds"] == "-" for r in summary.values())


def test_quick_real_section_finds_the_real_colloids_beside_trackpy(tmp_path: Path) -> None:
    out, rep = tmp_path / "r.json", tmp_path / "report"
    args = ["bench", "--quick", "--only", "real", "--json", str(out), "--report", str(rep)]
    result = CliRunner().invoke(app, [*args, "--real-data", str(REAL_DATA)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["real"]
    if not (REAL_DATA / "brightfield_colloids" / "brightfield.tif").is_file():
        assert "skipped" in rows[0]
        return
    assert [r["precision"] for r in rows] == ["float32", "int8"]
    for r in rows:
        assert r["frames"] == 10
        assert r["reference_positions"] == 50
        assert r["matched_share"] >= 0.96, r
        assert r["false_detections"] <= 2, r
        assert r["median_spread_px"] < 0.6, r
    assert (rep / "real.png").stat().st_size > 10_000


@pytest.mark.slow
def test_quick_camera_section_shows_detections_independent_of_the_camera(
    tmp_path: Path,
) -> None:
    out = tmp_path / "c.json"
    result = CliRunner().invoke(app, ["bench", "--quick", "--only", "camera", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["camera"]
    assert len(rows) == 14
    for r in rows:
        assert r["offset_from"] == "data"
        if "ADU" in r["variant"] or "8-bit" in r["variant"]:  # a constant: nothing changes
            assert abs(r["count_change_percent"]) < 1.0, r
            assert r["rms_px"] < 0.05, r


def test_the_offconfig_cells_between_the_grid_span_its_range() -> None:
    from livetrack.bench._offconfig import GRADIENTS, SCALES, SNRS, between_cells

    cells = between_cells()
    assert cells == between_cells()  # fixed seeds: every run reads the same frames
    scale, gradient, snr = (np.array(c) for c in zip(*cells, strict=True))
    for values, grid in ((scale, SCALES), (gradient, GRADIENTS), (snr, SNRS)):
        assert grid[0] <= values.min()
        assert values.max() <= grid[-1]
    # between the grid's points, not on them
    assert not set(scale) & set(SCALES)
    assert not set(snr) & set(SNRS)


@pytest.mark.slow
def test_quick_offconfig_section_compares_with_trackpy() -> None:
    from livetrack.bench._offconfig import bench_offconfig

    rows = bench_offconfig(quick=True)
    grid, cost = rows[:-1], rows[-1]
    assert len(grid) == 2
    for r in grid:
        assert 0 <= r["recall"] <= 1
        assert r["camera_offset_adu"] > 400  # read from the frames (500), not the card's 100
        assert r["movies_below_p98"] == (r["precision"] < 0.98)  # one movie a cell
    narrow, wide = grid  # PSF 0.75× at SNR 3 and 1.35× at SNR 2, both with a 60 % gradient
    assert narrow["recall"] >= narrow["trackpy_f1_tuned_recall"]
    assert narrow["precision"] >= 0.98
    assert wide["recall"] > wide["trackpy_f1_tuned_recall"] + 0.1
    assert cost["flat_ms"] > 0
    assert cost["gradient_ms"] > 0


@pytest.mark.slow
def test_quick_viewer_section_measures_the_service_with_and_without_a_viewer() -> None:
    from livetrack.bench._viewer import bench_viewer

    rows = bench_viewer(quick=True)
    assert [bool(r["viewer"]) for r in rows] == [False, True, False, True]
    # napari itself where there is a display (pytest-xvfb gives one), else the Qt-free loop
    kind = "napari" if os.environ.get("DISPLAY") else "LiveView (no Qt)"
    assert [r["viewer"] for r in rows[1::2]] == [kind, kind]
    assert [r["cores"] for r in rows] == ["shared", "shared"] + 2 * ["service 0, viewer the others"]
    for r in rows:
        assert r["frames"] == 300
        assert 0 < r["service_p50_ms"] <= r["service_p99_ms"]
    for r in rows[1::2]:
        # the preview reached it: ~30 pictures a second over the 3 s phase, not every frame
        assert 30 <= r["pictures_received"] <= 200
        assert 0 <= r["pictures_undrawn"] < r["pictures_received"]
        assert r["draws_per_s"] > 3


@pytest.mark.slow
def test_quick_lodestar_section_adapts_and_compares_on_the_real_rings(tmp_path: Path) -> None:
    if not (REAL_DATA / "deeptrack_videos").is_dir():
        pytest.skip("real movies not here")
    out = tmp_path / "b.json"
    args = ["bench", "--quick", "--only", "lodestar", "--real-data", str(REAL_DATA), "--json"]
    args.append(str(out))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rings, speed = json.loads(out.read_text())["lodestar"]
    assert rings["reference_per_frame"] > 15  # trackpy sees the beads
    assert rings["reference_matched_interior"] > 0.8  # after 200 steps only
    assert 0.5 < rings["diffusion_ratio"] < 2
    assert speed["lodestar_ms"] > 0
    assert speed["shipped_ms"] > 0


def test_the_marked_focal_planes_score_counts_found_faint_and_unmarked_apart() -> None:
    import pandas as pd

    from livetrack.bench._focal import MARKS, against_marks

    marks = pd.DataFrame({"frame": [0, 0, 0, 1], "x": [10.0, 50.0, 90.0, 10.0],
                          "y": [10.0, 50.0, 90.0, 10.0],
                          "marked": ["clear", "clear", "faint", "clear"]})  # fmt: skip
    table = pd.DataFrame({"frame": [0, 0, 0, 1], "x": [13.0, 95.0, 200.0, 30.0],
                          "y": [10.0, 90.0, 200.0, 10.0]})  # fmt: skip
    got = against_marks(table, marks)
    # 3 px from a clear mark: found; 5 px from a faint one: neither; 200 and 20 px off: unmarked
    assert got == {"marked_clear": 3, "marked_found": 1, "unmarked_detections": 2,
                   "detections_in_marked_frames": 4}  # fmt: skip
    shipped = pd.read_csv(MARKS)
    assert sorted(shipped["frame"].unique()) == [0, 25, 49]
    assert (shipped["marked"] == "clear").sum() == 32
