"""The livetrack wire protocol (version 1): frames in, results out, control.

Everything on the wire is msgpack (``raw=False``, ``strict_map_key=True``, bounded
buffers) or raw pixel bytes. Nothing received is ever unpickled. The full
specification, enough to write a peer in another language, is ``docs/protocol.md``.

Frames in (PUSH → PULL): multipart ``[header, pixels]``; ``header`` is a msgpack
map (:class:`FrameHeader`), ``pixels`` the C-order little-endian buffer.

Results out (PUB): multipart ``[topic, body]``; topics :data:`TOPIC_DETECTIONS`,
:data:`TOPIC_TRACKS`, :data:`TOPIC_EVENTS`, :data:`TOPIC_STATUS` and, when asked for,
:data:`TOPIC_PREVIEW`. Bodies are msgpack maps; per-particle columns are packed arrays
``{"dtype": "<f4", "data": bytes}``.

Control (REQ → REP): msgpack maps ``{"cmd": ...}`` answered by ``{"ok": ...}``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

import msgpack
import numpy as np
from numpy.typing import NDArray

VERSION: Final = 1
TOPIC_DETECTIONS: Final = b"det"
TOPIC_TRACKS: Final = b"trk"
TOPIC_EVENTS: Final = b"evt"
TOPIC_STATUS: Final = b"sta"
TOPICS: Final = (TOPIC_DETECTIONS, TOPIC_TRACKS, TOPIC_EVENTS, TOPIC_STATUS)
# Camera frames at a throttled rate, only once a client asked (``set_preview``):
# not in TOPICS, so a subscriber that takes the default topics never receives them.
TOPIC_PREVIEW: Final = b"prv"
MAX_PREVIEW_HZ: Final = 60  # the fastest preview to ask for: a display's (more costs the loop)

MAX_HEADER_BYTES: Final = 64 * 1024
MAX_FRAME_BYTES: Final = 256 * 1024 * 1024  # a 8192² float32 frame
MAX_CONTROL_BYTES: Final = 64 * 1024
# what the control socket takes in before ZeroMQ drops the sender: requests between the
# two get an "oversized" reply, larger ones no reply (the peer is disconnected)
MAX_CONTROL_TRANSPORT_BYTES: Final = 4 * 1024 * 1024
MAX_DIM: Final = 32768

# Pixel types a frame may carry; all little-endian on the wire.
FRAME_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "uint8": np.dtype("<u1"),
    "uint16": np.dtype("<u2"),
    "uint32": np.dtype("<u4"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}
# Column types a body may carry.
COLUMN_DTYPES: Final = {"<f4", "<f8", "<i4", "<i8", "<u1", "<u2", "<u4"}


class ProtocolError(ValueError):
    """A message that breaks the protocol; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def now_ns() -> int:
    """Wall-clock time stamp in integer nanoseconds (the wire's time base)."""
    return time.time_ns()


def packb(obj: Any) -> bytes:
    """msgpack-encode a map (binary-safe, UTF-8 strings)."""
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def _unique_map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def unpackb(data: bytes | memoryview, max_bytes: int) -> Any:
    """Decode untrusted msgpack with every limit set; raise :class:`ProtocolError`.

    The buffer is bounded by the length check here (``unpackb`` takes the whole
    message; ``max_buffer_size`` belongs to the streaming ``Unpacker``); strings,
    binaries, arrays and maps are bounded too, extension types refused, a map with
    a key twice refused, trailing bytes refused, and deep nesting fails inside
    msgpack; all are reported as malformed.
    """
    if len(data) > max_bytes:
        raise ProtocolError("oversized", f"{len(data)} bytes, at most {max_bytes}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=min(max_bytes, 1 << 20),
            max_map_len=min(max_bytes, 1 << 16),
            max_ext_len=0,
            object_pairs_hook=_unique_map,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.UnpackException, RecursionError) as e:
        raise ProtocolError("malformed", f"not valid msgpack: {type(e).__name__}: {e}") from None


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The header of one frame (see ``docs/protocol.md``)."""

    seq: int
    t_acq_ns: int
    shape: tuple[int, int]
    dtype: str
    pixel_size_um: float | None = None
    exposure_ms: float | None = None
    stage_um: tuple[float, ...] | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # the camera, when the sender knows it (revision 1.1): ADU = offset + gain × electrons
    camera_offset_adu: float | None = None
    camera_gain_adu_per_e: float | None = None

    def to_bytes(self) -> bytes:
        """Encode as a version-1 header map (the camera keys only when known)."""
        h = {
            "version": VERSION,
            "seq": self.seq,
            "t_acq_ns": self.t_acq_ns,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "pixel_size_um": self.pixel_size_um,
            "exposure_ms": self.exposure_ms,
            "stage_um": list(self.stage_um) if self.stage_um is not None else None,
            "source": self.source,
            "meta": self.meta,
        }
        for key in ("camera_offset_adu", "camera_gain_adu_per_e"):
            if getattr(self, key) is not None:
                h[key] = getattr(self, key)
        return packb(h)

    @property
    def nbytes(self) -> int:
        """Bytes the pixel buffer must have."""
        return self.shape[0] * self.shape[1] * FRAME_DTYPES[self.dtype].itemsize


#: the largest ``seq`` and ``t_acq_ns`` (a signed 64-bit integer, for every language)
MAX_INT: Final = 2**63 - 1


def _number(
    h: dict[str, Any], key: str, *, positive: bool = False, signed: bool = False
) -> float | None:
    """An optional finite number (int or float; nil: absent): ≥ 0, > 0 (positive) or any."""
    v = h.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
        raise ProtocolError("bad_header", f"'{key}' = {v!r}: expected a finite number or nil")
    if signed:
        return float(v)
    if v < 0 or (positive and v == 0):
        want = "positive" if positive else "non-negative"
        raise ProtocolError("bad_header", f"'{key}' = {v!r}: expected a {want} number")
    return float(v)


def _int(h: dict[str, Any], key: str) -> int:
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_INT:
        raise ProtocolError(
            "bad_header", f"'{key}' = {v!r}: expected an integer from 0 to 2^63 - 1"
        )
    return v


def _is_shape(v: Any) -> TypeGuard[Sequence[int]]:
    """``[rows, columns]``, each an integer from 1 to :data:`MAX_DIM`."""
    ints = isinstance(v, list | tuple) and all(type(n) is int and 0 < n <= MAX_DIM for n in v)
    return ints and len(v) == 2


def _finite_everywhere(v: Any) -> bool:
    """No NaN or infinity anywhere in a decoded value (maps and arrays searched)."""
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, dict):
        return all(_finite_everywhere(x) for x in v.values())
    if isinstance(v, list | tuple):
        return all(_finite_everywhere(x) for x in v)
    return True


def decode_header(data: bytes | memoryview) -> FrameHeader:
    """Validate and decode a frame header; raise :class:`ProtocolError` with the reason."""
    h = unpackb(data, MAX_HEADER_BYTES)
    if not isinstance(h, dict):
        raise ProtocolError("bad_header", f"header is a {type(h).__name__}, expected a map")
    version = h.get("version")
    if type(version) is not int or version != VERSION:  # not 1.0, not true
        want = f"expected the integer {VERSION}"
        raise ProtocolError("wrong_version", f"'version' = {version!r}: {want}")
    shape = h.get("shape")
    if not _is_shape(shape):
        raise ProtocolError(
            "bad_header", f"'shape' = {shape!r}: expected [rows, columns], each 1..{MAX_DIM}"
        )
    dtype = h.get("dtype")
    if dtype not in FRAME_DTYPES:
        raise ProtocolError(
            "bad_dtype", f"'dtype' = {dtype!r}: expected one of {sorted(FRAME_DTYPES)}"
        )
    stage = h.get("stage_um")
    numbers = isinstance(stage, list | tuple) and all(
        type(v) in (int, float) and math.isfinite(v) for v in stage
    )  # type(): not a bool
    if stage is not None and not (numbers and 2 <= len(stage) <= 3):
        raise ProtocolError(
            "bad_header", f"'stage_um' = {stage!r}: expected [x, y] or [x, y, z] in µm"
        )
    source = h.get("source", "")
    meta = h.get("meta", {})
    if not isinstance(source, str) or not isinstance(meta, dict):
        raise ProtocolError("bad_header", "'source' must be a string and 'meta' a map")
    if not _finite_everywhere(meta):
        raise ProtocolError("bad_header", "'meta' holds NaN or infinity: floats must be finite")
    return FrameHeader(
        seq=_int(h, "seq"),
        t_acq_ns=_int(h, "t_acq_ns"),
        shape=(int(shape[0]), int(shape[1])),
        dtype=str(dtype),
        pixel_size_um=_number(h, "pixel_size_um", positive=True),
        exposure_ms=_number(h, "exposure_ms"),
        stage_um=tuple(float(v) for v in stage) if stage is not None else None,
        source=source,
        meta=meta,
        camera_offset_adu=_number(h, "camera_offset_adu", signed=True),
        camera_gain_adu_per_e=_number(h, "camera_gain_adu_per_e", positive=True),
    )


def decode_frame(parts: list[Any]) -> tuple[FrameHeader, NDArray[Any]]:
    """Header and a zero-copy pixel array from a received ``[header, pixels]`` message.

    ``parts`` may hold bytes or zmq ``Frame`` objects (their buffers are used
    directly, without copying).
    """
    if len(parts) != 2:
        raise ProtocolError(
            "wrong_parts", f"{len(parts)} message parts, expected 2 (header, pixels)"
        )
    head = parts[0].buffer if hasattr(parts[0], "buffer") else parts[0]
    pix = parts[1].buffer if hasattr(parts[1], "buffer") else parts[1]
    header = decode_header(head)
    n = len(pix)
    if n > MAX_FRAME_BYTES:
        raise ProtocolError("oversized", f"pixels {n} bytes, at most {MAX_FRAME_BYTES}")
    if n != header.nbytes:
        raise ProtocolError(
            "size_mismatch",
            f"shape {header.shape} of {header.dtype} needs {header.nbytes} bytes, got {n}",
        )
    frame = np.frombuffer(pix, dtype=FRAME_DTYPES[header.dtype]).reshape(header.shape)
    if frame.dtype.kind == "f" and not np.isfinite(frame).all():
        raise ProtocolError("non_finite", "float frame holds NaN or infinity")
    return header, frame


def encode_frame(frame: NDArray[Any], header: FrameHeader) -> list[Any]:
    """``[header bytes, pixel buffer]`` for sending (C-contiguous pixels are not copied)."""
    a = np.ascontiguousarray(frame, dtype=FRAME_DTYPES[header.dtype])
    return [header.to_bytes(), a.data.cast("B")]


def pack_column(values: NDArray[Any]) -> dict[str, Any]:
    """A packed typed array: ``{"dtype": "<f4", "data": raw little-endian bytes}``."""
    a = np.ascontiguousarray(values)
    dt = a.dtype.newbyteorder("<") if a.dtype.byteorder not in ("<", "|", "=") else a.dtype
    code = np.dtype(dt).str
    if code not in COLUMN_DTYPES:
        raise ValueError(
            f"column dtype {code} is not one the protocol allows ({sorted(COLUMN_DTYPES)})"
        )
    return {"dtype": code, "data": a.astype(code, copy=False).tobytes()}


def unpack_column(col: Any, n: int) -> NDArray[Any]:
    """Decode one packed array of ``n`` values; raise :class:`ProtocolError` if it is not one."""
    if not isinstance(col, dict) or set(col) != {"dtype", "data"}:
        raise ProtocolError("bad_body", "a column must be {dtype, data}")
    code, data = col["dtype"], col["data"]
    if code not in COLUMN_DTYPES or not isinstance(data, bytes):
        raise ProtocolError("bad_body", f"column dtype {code!r} not allowed or data not bytes")
    dt = np.dtype(code)
    if len(data) != n * dt.itemsize:
        raise ProtocolError("bad_body", f"column of {len(data)} bytes for {n} values of {code}")
    return np.frombuffer(data, dtype=dt)


def encode_body(seq: int, t_acq_ns: int, columns: dict[str, NDArray[Any]], **extra: Any) -> bytes:
    """A result body: seq, t_acq_ns, t_pub_ns, n, packed columns, and extra fields."""
    n = len(next(iter(columns.values()))) if columns else 0
    body = {
        "version": VERSION,
        "seq": seq,
        "t_acq_ns": t_acq_ns,
        "t_pub_ns": now_ns(),
        "n": n,
        "columns": {k: pack_column(v) for k, v in columns.items()},
        **extra,
    }
    return packb(body)


@dataclass(frozen=True, slots=True)
class Result:
    """A decoded result message."""

    topic: bytes
    seq: int
    t_acq_ns: int
    t_pub_ns: int
    columns: dict[str, NDArray[Any]]
    fields: dict[str, Any]

    def frame(self) -> Any:
        """The columns as a pandas DataFrame (with a ``frame`` column = seq)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Result.frame() needs pandas: pip install pandas") from None

        df = pd.DataFrame({k: v for k, v in self.columns.items()})
        df.insert(0, "frame", self.seq)
        return df


def decode_result(topic: bytes, body: bytes, max_bytes: int = MAX_FRAME_BYTES) -> Result:
    """Decode and validate a ``[topic, body]`` result message."""
    if topic not in (*TOPICS, TOPIC_PREVIEW):
        raise ProtocolError("bad_topic", f"unknown topic {topic!r}")
    b = unpackb(body, max_bytes)
    if not isinstance(b, dict) or b.get("version") != VERSION:
        raise ProtocolError("wrong_version", "result body is not a version-1 map")
    n = b.get("n", 0)
    cols_raw = b.get("columns", {})
    if not isinstance(n, int) or not isinstance(cols_raw, dict):
        raise ProtocolError("bad_body", "'n' must be an integer and 'columns' a map")
    cols = {str(k): unpack_column(v, n) for k, v in cols_raw.items()}
    rest = {
        k: v
        for k, v in b.items()
        if k not in {"version", "seq", "t_acq_ns", "t_pub_ns", "n", "columns"}
    }
    return Result(
        topic,
        int(b.get("seq", -1)),
        int(b.get("t_acq_ns", 0)),
        int(b.get("t_pub_ns", 0)),
        cols,
        rest,
    )


def encode_preview(seq: int, t_acq_ns: int, frame: NDArray[Any], step: int) -> bytes:
    """A ``prv`` body: every ``step``-th pixel of a frame, in its received pixel type."""
    sub = np.ascontiguousarray(frame[::step, ::step])
    name = next((k for k, v in FRAME_DTYPES.items() if v == sub.dtype.newbyteorder("<")), None)
    if name is None:
        raise ValueError(f"pixel type {sub.dtype} is not one the protocol carries")
    pix = sub.astype(FRAME_DTYPES[name], copy=False).data.cast("B")  # no copy
    return encode_body(seq, t_acq_ns, {}, shape=list(sub.shape), dtype=name, step=step, pixels=pix)


def preview_image(result: Result) -> NDArray[Any]:
    """The picture a ``prv`` result carries; raise :class:`ProtocolError` if it holds none."""
    shape, dtype, step, pixels = (
        result.fields.get(k) for k in ("shape", "dtype", "step", "pixels")
    )
    good = dtype in FRAME_DTYPES and type(step) is int and step >= 1
    if not (good and _is_shape(shape) and isinstance(pixels, bytes)):
        raise ProtocolError("bad_body", "a preview needs shape [h, w], dtype, step >= 1, pixels")
    dt = FRAME_DTYPES[str(dtype)]
    if len(pixels) != shape[0] * shape[1] * dt.itemsize:
        raise ProtocolError("bad_body", f"{len(pixels)} pixel bytes for {shape} of {dtype}")
    return np.frombuffer(pixels, dtype=dt).reshape(shape)
