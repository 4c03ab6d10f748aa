"""``livetrack demo`` end to end: four processes over real sockets, a short run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO


@pytest.mark.slow
def test_demo_runs_closes_the_loop_and_accounts_for_every_frame(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # the demo preset with fewer beads: a 4 s test should not hinge on a chance encounter
    text = (REPO / "config" / "demo.toml").read_text().replace("number = 30", "number = 12")
    (tmp_path / "sparse.toml").write_text(text)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "livetrack.cli",
            "demo",
            "--seconds",
            "4",
            "--no-live",
            "--config",
            str(tmp_path / "sparse.toml"),
            "-o",
            str(out),
            "--json",
            str(tmp_path / "figures.json"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    fig = json.loads((tmp_path / "figures.json").read_text())
    assert fig == json.loads((out / "demo.json").read_text())
    frames = fig["frames"]
    assert frames["accounted"]
    assert frames["sent"] == (
        frames["processed"] + frames["skipped"] + frames["dropped"] + frames["rejected"]
    )
    assert frames["sent"] > 100  # ~50 fps for 4 s
    assert fig["fps"] > 10
    assert set(fig["latency_ms"]) == {"p50", "p99"}
    assert fig["latency_ms"]["p50"] > 0
    assert fig["loop_latency_ms"]["n"] > 50  # the controller moved the stage
    c = fig["centring"]
    assert c["rms_px_with_feedback"] < 0.5 * c["rms_px_without_feedback"]
    assert (out / "demo.png").stat().st_size > 10_000
    # the service looked for hidden particles around the centre (the default region)
    assert fig["split_near_px"] == 24.0
    assert "split    within 24 px of (255.5, 255.5)" in (out / "serve.log").read_text()
    for phase in fig["phases"].values():
        assert phase["frames"]["accounted"]


@pytest.mark.gui
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="no display (install Xvfb)")
def test_demo_view_opens_napari_on_the_running_demo(tmp_path: Path) -> None:
    pytest.importorskip("napari")
    out = tmp_path / "demo"
    cmd = ["demo", "--seconds", "3", "--no-live", "--view", "-o", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "livetrack.cli", *cmd], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    fig = json.loads((out / "demo.json").read_text())
    log = (out / "view.log").read_text()
    assert "livetrack view: connected to ipc://" in log
    # napari drew the service's pictures while both phases ran (their frames, with results)
    assert fig["viewer"]["pictures"] > 30
    assert fig["viewer"]["draws"] >= fig["viewer"]["pictures"]
    assert fig["frames"]["accounted"]
