"""Smoke test of ``livetrack bench --quick``: the report is complete and sane (never a timing)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from livetrack.cli import app


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


def test_unknown_part_is_refused() -> None:
    result = CliRunner().invoke(app, ["bench", "--only", "nonsense"])
    assert result.exit_code == 2
    assert "unknown benchmark part" in result.output
