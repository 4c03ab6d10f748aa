"""The JavaScript client (clients/javascript) against the real service, beside the Python client."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from livetrack.simulation.scenarios import Scenario
from livetrack.wire import protocol as wire

from .test_service import start

CLIENT = Path(__file__).resolve().parents[1] / "clients" / "javascript"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (CLIENT / "node_modules").is_dir(),
    reason="node and `npm ci --prefix clients/javascript` (the README's test setup) are needed",
)


def test_the_javascript_client_gets_what_the_python_client_gets(tmp_path: Path) -> None:
    frames, _ = Scenario("js", 25, 7.0, 5, size=96, seed=8).render()
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, f in enumerate(frames):
        (folder / f"frame-{k}.bin").write_bytes(np.ascontiguousarray(f, "<u2").tobytes())
    (folder / "frames.json").write_text(
        json.dumps({"shape": list(frames.shape[1:]), "dtype": "uint16", "count": len(frames)})
    )
    svc = start(policy="lossless")
    try:
        for k, f in enumerate(frames):  # the Python client first
            assert svc.pub.publish(f, seq=k, pixel_size_um=0.065)
        py = {r.seq: r for r in svc.results(wire.TOPIC_DETECTIONS, len(frames))}
        assert sorted(py) == list(range(len(frames)))
        ep = svc.service.endpoints
        out = tmp_path / "js.json"
        args = [str(folder), ep["frames"], ep["results"], ep["control"], str(out)]
        p = subprocess.run(
            [NODE, str(CLIENT / "examples" / "compare.mjs"), *args],  # type: ignore[list-item]
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert p.returncode == 0, p.stderr[-2000:]
    finally:
        svc.stop()
    js = json.loads(out.read_text())
    assert js["publisher"]["dropped"] == 0
    for k in range(len(frames)):
        ours, theirs = py[k].columns, js["detections"][str(k)]
        assert len(ours["x"]) == len(theirs["x"]) > 5
        for col in ("x", "y", "photons"):
            np.testing.assert_allclose(theirs[col], ours[col], rtol=0, atol=1e-6)
