"""Actuation commands on the wire: controller PUSH → acquisition PULL (docs/protocol.md §3a)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from livetrack.wire.protocol import VERSION, ProtocolError, now_ns, packb, unpackb

MAX_COMMAND_BYTES: Final = 64 * 1024
# Command name → its required arguments and their types.
COMMANDS: Final[dict[str, dict[str, type]]] = {
    "move_xy": {"x_um": float, "y_um": float},
    "set_trap": {"x_px": float, "y_px": float},
    "mda_event": {"event": dict},
}


@dataclass(frozen=True, slots=True)
class Command:
    """An actuation request; ``seq``/``t_acq_ns`` name the frame that caused it."""

    cmd: str
    seq: int
    t_acq_ns: int
    t_sent_ns: int
    args: dict[str, Any]


def encode_command(cmd: str, seq: int, t_acq_ns: int, **args: Any) -> bytes:
    """Encode an actuation command (see ``docs/protocol.md``, *Actuation*)."""
    check_command_args(cmd, args)
    return packb(
        {
            "version": VERSION,
            "cmd": cmd,
            "seq": int(seq),
            "t_acq_ns": int(t_acq_ns),
            "t_sent_ns": now_ns(),
            **args,
        }
    )


def check_command_args(cmd: str, args: dict[str, Any]) -> None:
    """Raise :class:`ProtocolError` unless ``args`` are what ``cmd`` takes."""
    spec = COMMANDS.get(cmd)
    if spec is None:
        raise ProtocolError("bad_command", f"unknown command {cmd!r}; known: {sorted(COMMANDS)}")
    for name, typ in spec.items():
        v: Any = args.get(name)
        ok = (
            isinstance(v, (int, float)) and not isinstance(v, bool)
            if typ is float
            else isinstance(v, typ)
        )
        if not ok or (typ is float and not math.isfinite(float(v))):
            want = "a finite number" if typ is float else typ.__name__
            raise ProtocolError("bad_command", f"{cmd}: {name}={v!r}, expected {want}")


def decode_command(data: bytes) -> Command:
    """Decode and validate an untrusted actuation command."""
    m = unpackb(data, MAX_COMMAND_BYTES)
    if not isinstance(m, dict) or m.get("version") != VERSION:
        raise ProtocolError("wrong_version", f"command is not a version-{VERSION} map")
    cmd = m.pop("cmd", None)
    stamps = [m.pop(k, None) for k in ("seq", "t_acq_ns", "t_sent_ns")]
    m.pop("version")
    if not isinstance(cmd, str) or not all(isinstance(s, int) for s in stamps):
        raise ProtocolError("bad_command", "'cmd' must be a string; seq, t_acq_ns, t_sent_ns ints")
    check_command_args(cmd, m)
    return Command(cmd, stamps[0], stamps[1], stamps[2], m)
