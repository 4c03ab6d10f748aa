"""Wire protocol: golden messages (the worked example in docs/protocol.md), limits, fuzzing."""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livetrack.wire import protocol as wire

GOLDEN = Path(__file__).parent / "golden"
DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def golden(name: str) -> bytes:
    return bytes.fromhex((GOLDEN / name).read_text())


def test_golden_frame_decodes() -> None:
    header, frame = wire.decode_frame(
        [golden("frame_header_v1.hex"), golden("frame_pixels_v1.hex")]
    )
    assert header.seq == 42
    assert header.t_acq_ns == 1795300000123456789
    assert header.shape == (2, 3)
    assert header.dtype == "uint16"
    assert header.pixel_size_um == pytest.approx(0.065)
    assert header.stage_um == (1250.0, -310.5, 12.0)
    assert header.meta == {"channel": "GFP"}
    assert frame.tolist() == [[100, 101, 102], [103, 104, 105]]


def test_golden_result_decodes_with_and_without_livetrack() -> None:
    body = golden("trk_body_v1.hex")
    r = wire.decode_result(wire.TOPIC_TRACKS, body)
    assert r.seq == 42
    assert r.columns["particle"].tolist() == [7, 12]
    assert r.columns["x"].tolist() == [10.25, 200.5]
    # exactly what docs/protocol.md tells a subscriber in another language to do
    m = msgpack.unpackb(body, raw=False)
    cols = {k: np.frombuffer(v["data"], dtype=v["dtype"]) for k, v in m["columns"].items()}
    assert cols["y"].tolist() == [33.0, 401.75]


def test_the_revision_1_1_result_carries_every_column_the_spec_requires() -> None:
    body = golden("trk_body_v1_1.hex")
    r = wire.decode_result(wire.TOPIC_TRACKS, body)
    assert r.columns["photons"].tolist() == [1520.0, 880.5]
    assert r.fields["stage_um"] == [1250.0, -310.5, 12.0]
    from livetrack.wire.schema import errors

    assert errors("trk_body", msgpack.unpackb(body, raw=False)) == []


def test_the_document_states_every_rejection_reason_the_code_gives() -> None:
    import re

    from livetrack.wire.schema import schema

    text = DOC.read_text()
    package = Path(wire.__file__).resolve().parents[1]
    frame_doc = set(
        re.findall(
            r"^\| `(\w+)` \| (?:the message|the header|the pixel|a float|"
            r"`seq`|`version`|`dtype`|the detector|anything)",
            text,
            re.M,
        )
    )
    code = set()
    for f in ("wire/protocol.py", "service/_stream.py", "service/service.py"):
        code |= set(re.findall(r'ProtocolError\(\s*"(\w+)"', (package / f).read_text()))
        code |= set(re.findall(r'rejected\["(\w+)"\]', (package / f).read_text()))
    code -= {"bad_body", "bad_topic"}  # results a subscriber decodes, not frames
    defs = schema()["$defs"]
    assert frame_doc == code == set(defs["frame_rejection_reason"]["enum"])
    control_code = set(
        re.findall(r'_refuse\(\s*"(\w+)"', (package / "service/_control.py").read_text())
    )
    control_code |= {"malformed", "oversized", "bad_control"}  # passed on from unpackb
    control_doc = set(defs["control_rejection_reason"]["enum"])
    assert control_code == control_doc
    for reason in control_doc:
        assert f"| `{reason}` |" in text


def test_the_document_shows_the_golden_bytes() -> None:
    doc = " ".join(DOC.read_text().split())
    for name in ("frame_header_v1.hex", "trk_body_v1_1.hex"):
        hexes = (GOLDEN / name).read_text().split()
        assert " ".join(hexes[:40]) in doc


def test_header_round_trip() -> None:
    h = wire.FrameHeader(
        seq=3, t_acq_ns=10, shape=(4, 5), dtype="float32", stage_um=(1.0, 2.0), source="x"
    )
    frame = np.arange(20, dtype=np.float32).reshape(4, 5)
    parts = [bytes(p) for p in wire.encode_frame(frame, h)]
    h2, f2 = wire.decode_frame(parts)
    assert h2 == h
    assert np.array_equal(f2, frame)


def test_encode_frame_does_not_copy_contiguous_pixels() -> None:
    frame = np.zeros((64, 64), np.uint16)
    parts = wire.encode_frame(frame, wire.FrameHeader(0, 0, (64, 64), "uint16"))
    frame[0, 0] = 7
    assert np.frombuffer(parts[1], np.uint16)[0] == 7


def test_columns_refuse_unknown_types() -> None:
    with pytest.raises(ValueError, match="not one the protocol allows"):
        wire.pack_column(np.array([1 + 2j]))
    with pytest.raises(wire.ProtocolError):
        wire.unpack_column({"dtype": "<f4", "data": b"\x00" * 7}, 2)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash_the_header_decoder(data: bytes) -> None:
    reason = None
    try:
        wire.decode_header(data)
    except wire.ProtocolError as exc:
        reason = exc.reason
    assert reason in {None, "malformed", "bad_header", "wrong_version", "bad_dtype", "oversized"}


maps = st.dictionaries(
    st.sampled_from(
        [
            "version",
            "seq",
            "t_acq_ns",
            "shape",
            "dtype",
            "stage_um",
            "meta",
            "source",
            "exposure_ms",
        ]
    ),
    st.one_of(
        st.none(),
        st.integers(-5, 2**40),
        st.floats(allow_nan=True),
        st.text(max_size=8),
        st.lists(st.integers(-3, 40000), max_size=4),
        st.binary(max_size=8),
    ),
)


@settings(max_examples=300, deadline=None)
@given(maps)
def test_random_header_maps_are_accepted_or_rejected_cleanly(h: dict[str, object]) -> None:
    try:
        out = wire.decode_header(msgpack.packb(h))
    except wire.ProtocolError:
        return
    assert out.shape[0] > 0
    assert out.shape[1] > 0
