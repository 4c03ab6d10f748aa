"""The conformance suite, run against the real service, and its exported cases."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
from typer.testing import CliRunner

from livetrack.cli import app
from livetrack.wire import conformance
from livetrack.wire import protocol as wire

from .test_service import start


def test_the_service_passes_every_case_and_the_suite_can_fail() -> None:
    r = start(policy="realtime")
    try:
        ep = r.service.endpoints
        report = conformance.run(ep["frames"], ep["results"], ep["control"])
        assert report.passed, [(o.case, o.detail) for o in report.failures()]
        assert len(report.outcomes) >= 120
        # the suite set lossless for its run and gave the policy back
        assert r.stats()["policy"] == "realtime"
        # a service that took a bad frame would fail: check the check
        case = conformance.Case("a good frame", conformance.valid_frames(10_000)[0].parts, "x")
        peer = conformance._Peer(ep["frames"], ep["results"], ep["control"], None, 2.0)
        try:
            assert not conformance._bad_frame(peer, case, 10_001).passed
        finally:
            peer.close()
    finally:
        r.stop()


def test_the_cli_runs_the_suite_and_says_so() -> None:
    r = start()
    try:
        ep = r.service.endpoints
        args = ["conform", "--frames", ep["frames"], "--results", ep["results"]]
        result = CliRunner().invoke(app, [*args, "--control", ep["control"]])
        assert result.exit_code == 0, result.output
        n = len(conformance.valid_frames(0)) + len(conformance.bad_frames(0)) + 1
        n += len(conformance.control_cases())
        assert f"{n} of {n} cases pass" in result.output
    finally:
        r.stop()


def test_exported_cases_decode_as_the_suite_says(tmp_path: Path) -> None:
    out = tmp_path / "cases.json"
    result = CliRunner().invoke(app, ["conform", "--export", str(out)])
    assert result.exit_code == 0, result.output
    cases = json.loads(out.read_text())
    assert len(cases["bad_frames"]) >= 80
    for c in cases["bad_frames"]:
        parts = [bytes.fromhex(p) for p in c["parts"]]
        with pytest.raises(wire.ProtocolError) as err:
            wire.decode_frame(parts)
        assert err.value.reason == c["reason"], c["name"]
    for c in cases["valid_frames"]:
        header, _ = wire.decode_frame([bytes.fromhex(p) for p in c["parts"]])
        assert header.seq >= 0
    names = {c["name"] for c in cases["control"]}
    assert {"two parts", "100 000 bytes"} <= names
    assert all(isinstance(msgpack.unpackb(bytes.fromhex(c["parts"][0]) or b"\xc0"), object)
               for c in cases["control"] if c["reason"] is None)  # fmt: skip
