"""A conformance suite any implementation of the service can be run against, live.

Golden messages both ways: frames (valid ones of every pixel type, and bad ones of
every kind, each with the rejection reason the spec gives for it) and control
requests (good and bad, with the reply each must get). :func:`run` sends them to a
running service one at a time and checks its counters and replies; each bad frame
is followed by a valid probe frame, whose result proves the bad one was dealt with.
:func:`export` writes the cases as JSON (hex bytes) for a suite in another language.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

from livetrack.wire import protocol as wire

_DROP = object()  # a header key to leave out


@dataclass(frozen=True)
class Case:
    """One message and what the service must do with it (``reason`` None: accept it)."""

    name: str
    parts: tuple[bytes, ...]
    reason: str | None


@dataclass
class Outcome:
    """A case run against a service: passed, or what went wrong."""

    case: str
    passed: bool
    detail: str = ""


@dataclass
class Report:
    """Every case's outcome."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every case passed."""
        return all(o.passed for o in self.outcomes)

    def failures(self) -> list[Outcome]:
        """The cases that did not pass."""
        return [o for o in self.outcomes if not o.passed]


def _pixels(dtype: str, shape: tuple[int, int] = (8, 12)) -> bytes:
    rng = np.random.default_rng(0)
    values = rng.uniform(10, 200, shape).astype(wire.FRAME_DTYPES[dtype])
    return values.tobytes()


def _header(seq: int, change: dict[str, Any] | None = None) -> bytes:
    h: dict[str, Any] = {
        "version": 1, "seq": seq, "t_acq_ns": 1_000 + seq, "shape": [8, 12], "dtype": "uint16",
    }  # fmt: skip
    for k, v in (change or {}).items():
        if v is _DROP:
            h.pop(k, None)
        else:
            h[k] = v
    out: bytes = msgpack.packb(h, use_bin_type=True)
    return out


def valid_frames(seq: int) -> list[Case]:
    """Frames the service must process, from ``seq`` on: every pixel type, optional fields."""
    cases = [Case(f"valid {d}", (_header(seq + i, {"dtype": d}), _pixels(d)), None)
             for i, d in enumerate(wire.FRAME_DTYPES)]  # fmt: skip
    n = len(cases)
    extra: dict[str, dict[str, Any]] = {
        "with every optional field": {
            "pixel_size_um": 0.065, "exposure_ms": 10.0, "stage_um": [1.5, -2.0, 3.0],
            "source": "cam", "meta": {"channel": "GFP", "list": [1, 2.5]},
        },
        "with nil optional fields": {"pixel_size_um": None, "exposure_ms": None, "stage_um": None},
        "with an unknown key (ignored)": {"future_key": {"a": 1}},
        "with an integer pixel size": {"pixel_size_um": 1},
        "stating its camera": {"camera_offset_adu": -100.0, "camera_gain_adu_per_e": 2},
    }  # fmt: skip
    for i, (name, change) in enumerate(extra.items()):
        cases.append(
            Case(f"valid, {name}", (_header(seq + n + i, change), _pixels("uint16")), None)
        )
    return cases


def _bad_headers() -> Iterator[tuple[str, dict[str, Any], str]]:
    """(name, header change, reason) for every kind of bad header field."""
    for v in (_DROP, 0, 2, 1.0, True, "1", None, [1]):
        yield f"version = {v if v is not _DROP else 'missing'}", {"version": v}, "wrong_version"
    for key in ("seq", "t_acq_ns"):
        for v in (_DROP, -1, 1.5, "7", True, None, 2**63, [1]):
            yield f"{key} = {v if v is not _DROP else 'missing'}", {key: v}, "bad_header"
    for v in (_DROP, [], [8], [8, 12, 1], [0, 12], [8, 0], [-1, 12], [40000, 12],
              [8.0, 12], [True, 12], "8x12", None):  # fmt: skip
        yield f"shape = {v if v is not _DROP else 'missing'}", {"shape": v}, "bad_header"
    for v in (_DROP, "complex64", "object", "", "float16", "<u2", 5, None):
        yield f"dtype = {v if v is not _DROP else 'missing'}", {"dtype": v}, "bad_dtype"
    for v in (math.nan, math.inf, -1.0, 0.0, "0.1", True, [0.1]):
        yield f"pixel_size_um = {v}", {"pixel_size_um": v}, "bad_header"
    for v in (math.nan, -math.inf, -1.0, "10", False):
        yield f"exposure_ms = {v}", {"exposure_ms": v}, "bad_header"
    for v in ([1.0], [1.0, 2.0, 3.0, 4.0], [math.nan, 1.0], [1.0, math.inf], "x", [True, 1.0],
              [1.0, "a"], {"x": 1}):  # fmt: skip
        yield f"stage_um = {v}", {"stage_um": v}, "bad_header"
    for v in (5, b"cam", ["cam"]):
        yield f"source = {v!r}", {"source": v}, "bad_header"
    for v in (5, [1], "m", {"a": math.nan}, {"a": [1.0, math.inf]}, {"a": {"b": -math.inf}}):
        yield f"meta = {v}", {"meta": v}, "bad_header"
    for v in (math.nan, "100", True):
        yield f"camera_offset_adu = {v}", {"camera_offset_adu": v}, "bad_header"
    for v in (0.0, -2.0, math.inf, "2"):
        yield f"camera_gain_adu_per_e = {v}", {"camera_gain_adu_per_e": v}, "bad_header"


def bad_frames(seq: int) -> list[Case]:
    """Frames the service must reject, each under its reason (docs/protocol.md, rejections)."""
    good = _header(seq)
    pixels = _pixels("uint16")
    cases = [
        Case("one part", (good,), "wrong_parts"),
        Case("three parts", (good, pixels, b"x"), "wrong_parts"),
        Case("four parts", (good, pixels, pixels, pixels), "wrong_parts"),
        Case("empty header", (b"", pixels), "malformed"),
        Case("random bytes for a header", (bytes(range(7, 90)), pixels), "malformed"),
        Case("truncated header", (good[:-3], pixels), "malformed"),
        Case("trailing bytes after the header", (good + b"\x00", pixels), "malformed"),
        Case(
            "a header key twice",
            (b"\x86" + good[1:] + msgpack.packb("seq") + b"\x09", pixels),
            "malformed",
        ),
        Case("nested arrays 2000 deep", (b"\x91" * 2000 + b"\x00", pixels), "malformed"),
        Case("declares a 4 GiB string", (b"\xdb\xff\xff\xff\xff", pixels), "malformed"),
        Case("declares a 4 G-entry map", (b"\xdf\xff\xff\xff\xff", pixels), "malformed"),
        Case("an extension type", (msgpack.packb(msgpack.ExtType(1, b"ab")), pixels), "malformed"),
        Case(
            "header of 70 000 bytes",
            (_header(seq, {"meta": {"pad": "x" * 70_000}}), pixels),
            "oversized",
        ),
        Case("header is an integer", (msgpack.packb(7), pixels), "bad_header"),
        Case("header is an array", (msgpack.packb([1, 2]), pixels), "bad_header"),
        Case("header is a string", (msgpack.packb("frame"), pixels), "bad_header"),
        Case("header is nil", (msgpack.packb(None), pixels), "bad_header"),
        Case("pixels one byte short", (good, pixels[:-1]), "size_mismatch"),
        Case("pixels one byte long", (good, pixels + b"\x00"), "size_mismatch"),
        Case("no pixels", (good, b""), "size_mismatch"),
        Case(
            "pixels of another shape", (_header(seq, {"shape": [12, 12]}), pixels), "size_mismatch"
        ),
    ]
    for dtype in ("float32", "float64"):
        for v in (math.nan, math.inf, -math.inf):
            a = np.full((8, 12), 5.0, wire.FRAME_DTYPES[dtype])
            a[3, 4] = v
            parts = (_header(seq, {"dtype": dtype}), a.tobytes())
            cases.append(Case(f"{dtype} pixel = {v}", parts, "non_finite"))
    for name, change, reason in _bad_headers():
        cases.append(Case(f"header {name}", (_header(seq, change), pixels), reason))
    return cases


def control_cases() -> list[Case]:
    """Control requests and the reply each must get (``reason`` None: ``ok`` true)."""
    p = msgpack.packb
    return [
        Case("status", (p({"cmd": "status"}),), None),
        Case("stats", (p({"cmd": "stats"}),), None),
        Case("set_policy lossless", (p({"cmd": "set_policy", "policy": "lossless"}),), None),
        Case("two parts", (p({"cmd": "status"}), b"x"), "wrong_parts"),
        Case("three parts", (p({"cmd": "status"}), b"x", b"y"), "wrong_parts"),
        Case("100 000 bytes", (p({"cmd": "status", "pad": b"x" * 100_000}),), "oversized"),
        Case("not msgpack", (b"\xc1",), "malformed"),
        Case("empty", (b"",), "malformed"),
        Case(
            "a key twice",
            (b"\x82" + p("cmd") + p("status") + p("cmd") + p("stats"),),
            "malformed",
        ),
        Case("an array", (p(["status"]),), "bad_control"),
        Case("no cmd", (p({"command": "status"}),), "bad_control"),
        Case("cmd not a string", (p({"cmd": 1}),), "bad_control"),
        Case("unknown cmd", (p({"cmd": "fly"}),), "unknown_command"),
        Case("set_policy fast", (p({"cmd": "set_policy", "policy": "fast"}),), "bad_control"),
        Case("set_policy without a policy", (p({"cmd": "set_policy"}),), "bad_control"),
        Case("load_model without a path", (p({"cmd": "load_model"}),), "bad_control"),
        Case("set_preview 10 Hz", (p({"cmd": "set_preview", "hz": 10}),), None),
        Case("set_preview off", (p({"cmd": "set_preview", "hz": 0}),), None),
        Case("set_preview 1000 Hz", (p({"cmd": "set_preview", "hz": 1000}),), "bad_control"),
        Case("set_preview without hz", (p({"cmd": "set_preview"}),), "bad_control"),
        Case("follow a string", (p({"cmd": "follow", "particle": "7"}),), "bad_control"),
        Case("follow no track", (p({"cmd": "follow", "particle": 2**40}),), "bad_control"),
    ]


def export(path: Path) -> None:
    """Write every case as JSON: parts as hex strings, with the expected reason."""

    def rows(cases: list[Case]) -> list[dict[str, Any]]:
        return [{"name": c.name, "parts": [b.hex() for b in c.parts], "reason": c.reason}
                for c in cases]  # fmt: skip

    body = {
        "protocol": wire.VERSION,
        "note": "each bad frame is followed by a valid frame with the next seq; seqs start at 0",
        "valid_frames": rows(valid_frames(0)),
        "bad_frames": rows(bad_frames(0)),
        "control": rows(control_cases()),
    }
    path.write_text(json.dumps(body, indent=1))


class _Peer:
    """The suite's three sockets, every wait bounded by ``timeout_s``."""

    def __init__(self, frames: str, results: str, control: str, keys: Any, timeout_s: float):
        ctx: zmq.Context[Any] = zmq.Context.instance()
        self.timeout_ms = int(timeout_s * 1000)
        self.control, self.keys, self.ctx = control, keys, ctx
        self.push = self._socket(zmq.PUSH, frames)
        self.sub = self._socket(zmq.SUB, results)
        self.sub.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_DETECTIONS)
        self.sub.setsockopt(zmq.SUBSCRIBE, wire.TOPIC_TRACKS)
        self.req = self._socket(zmq.REQ, control)

    def _socket(self, kind: int, address: str) -> zmq.Socket[Any]:
        s: zmq.Socket[Any] = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        s.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        if self.keys is not None:
            self.keys.apply(s)
        s.connect(address)
        return s

    def request(self, parts: tuple[bytes, ...]) -> dict[str, Any] | None:
        """The reply to one request; None after a timeout (the REQ socket is then renewed)."""
        try:
            self.req.send_multipart(list(parts))
            reply: dict[str, Any] = msgpack.unpackb(self.req.recv(), raw=False)
            return reply
        except zmq.Again:
            self.req.close(0)
            self.req = self._socket(zmq.REQ, self.control)
            return None

    def stats(self) -> dict[str, Any]:
        reply = self.request((msgpack.packb({"cmd": "stats"}),))
        if reply is None or not reply.get("ok"):
            raise TimeoutError(f"the service did not answer 'stats' ({reply})")
        status: dict[str, Any] = reply["status"]
        return status

    def results_of(self, seq: int) -> dict[bytes, dict[str, Any]]:
        """The ``det`` and ``trk`` bodies of frame ``seq`` (those that came in time)."""
        got: dict[bytes, dict[str, Any]] = {}
        end = time.monotonic() + self.timeout_ms / 1000
        while len(got) < 2 and time.monotonic() < end:
            if not self.sub.poll(max(1, int((end - time.monotonic()) * 1000))):
                break
            topic, body = self.sub.recv_multipart()
            m = msgpack.unpackb(body, raw=False)
            if m.get("seq") == seq:
                got[topic] = m
        return got

    def close(self) -> None:
        for s in (self.push, self.sub, self.req):
            s.close(0)


def _body_problems(bodies: dict[bytes, dict[str, Any]]) -> list[str]:
    """What the spec's det and trk bodies would have that these lack."""
    try:
        from livetrack.wire.schema import errors
    except ImportError:  # pragma: no cover - the schema module ships with the package
        return []
    out = []
    for topic, name in ((wire.TOPIC_DETECTIONS, "det_body"), (wire.TOPIC_TRACKS, "trk_body")):
        if topic not in bodies:
            out.append(f"no {topic.decode()} result")
            continue
        try:
            out += [f"{topic.decode()}: {e}" for e in errors(name, bodies[topic])]
        except ImportError:
            return out  # jsonschema absent: presence checked only
    return out


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    keys = set(before["rejected"]) | set(after["rejected"])
    d = {k: after["rejected"].get(k, 0) - before["rejected"].get(k, 0) for k in keys}
    return {k: v for k, v in d.items() if v}


def run(
    frames: str, results: str, control: str, keys: Any = None, timeout_s: float = 5.0
) -> Report:
    """Run every case against the service at these addresses; returns each case's outcome.

    The service is set to the lossless policy and its tracks reset for the run; its
    policy is set back at the end. ``keys``: a :class:`~livetrack.wire.security.ClientKeys`.
    """
    peer = _Peer(frames, results, control, keys, timeout_s)
    report = Report()
    try:
        policy = peer.stats()["policy"]
        peer.request((msgpack.packb({"cmd": "set_policy", "policy": "lossless"}),))
        peer.request((msgpack.packb({"cmd": "reset_tracks"}),))
        seq = _warm_up(peer)
        for case in valid_frames(seq):
            before = peer.stats()
            peer.push.send_multipart(list(case.parts))
            seq += 1
            problems = _body_problems(peer.results_of(seq - 1))
            after = peer.stats()
            if after["processed"] - before["processed"] != 1 or _delta(before, after):
                problems.append(f"not processed once: {_delta(before, after)}")
            report.outcomes.append(Outcome(case.name, not problems, "; ".join(problems)))
        for case in bad_frames(seq):
            report.outcomes.append(_bad_frame(peer, case, seq))
            seq += 1
        report.outcomes.append(_bad_frame(peer, _repeat(seq), seq))  # the last probe's seq
        seq += 1
        for case in control_cases():
            reply = peer.request(case.parts)
            ok = reply is not None and (
                reply.get("ok") is True
                if case.reason is None
                else reply.get("reason") == case.reason
            )
            report.outcomes.append(Outcome(f"control: {case.name}", ok, "" if ok else f"{reply}"))
        peer.request((msgpack.packb({"cmd": "set_policy", "policy": policy}),))
    finally:
        peer.close()
    return report


def _warm_up(peer: _Peer) -> int:
    """Send frames until one's result arrives (a subscriber joins late); the next seq."""
    for seq in range(20):
        d = "uint16"
        peer.push.send_multipart([_header(seq, {"dtype": d}), _pixels(d)])
        if peer.results_of(seq):
            return seq + 1
    raise TimeoutError("no result for 20 valid frames: is the service serving these addresses?")


def _repeat(seq: int) -> Case:
    """A valid frame whose seq repeats the last one's."""
    return Case("seq repeats the last frame's", (_header(seq - 1), _pixels("uint16")), "seq_order")


def _bad_frame(peer: _Peer, case: Case, seq: int) -> Outcome:
    """Send the bad frame, then a probe with ``seq``: the bad one rejected once, the probe kept."""
    before = peer.stats()
    peer.push.send_multipart(list(case.parts))
    peer.push.send_multipart([_header(seq), _pixels("uint16")])
    got = peer.results_of(seq)
    after = peer.stats()
    want = {case.reason: 1}
    delta = _delta(before, after)
    processed = after["processed"] - before["processed"]
    ok = delta == want and processed == 1 and bool(got)
    detail = "" if ok else f"rejected {delta} (want {want}), probe processed {processed}"
    return Outcome(case.name, ok, detail)
