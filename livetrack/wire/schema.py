"""The protocol's JSON Schema (``protocol-v1.schema.json``), and checking a message against it.

Checking needs ``jsonschema`` (the ``test`` extra); reading the schema does not. The
schema's ``integer`` is a msgpack int (not 1.0, not true), ``x-finite`` numbers are
neither NaN nor infinite, and msgpack ``bin`` values are checked as base64 strings.
"""

from __future__ import annotations

import base64
import json
import math
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "protocol-v1.schema.json"


@cache
def schema() -> dict[str, Any]:
    """The schema, as shipped in the package."""
    text = resources.files("livetrack.wire").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def as_json(value: Any) -> Any:
    """A decoded msgpack value as JSON would hold it: bytes become base64 strings."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value


@cache
def _validator_class() -> Any:
    try:
        import jsonschema
    except ImportError:
        raise ImportError("checking messages needs jsonschema: pip install jsonschema") from None

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _c, v: isinstance(v, int) and not isinstance(v, bool)
    )

    def finite(_validator: Any, wanted: bool, instance: Any, _schema: Any) -> Any:
        if wanted and isinstance(instance, float) and not math.isfinite(instance):
            yield jsonschema.ValidationError(f"{instance!r} is not finite")

    return jsonschema.validators.extend(base, {"x-finite": finite}, type_checker=checker)


def errors(definition: str, message: Any) -> list[str]:
    """What is wrong with ``message`` (a decoded msgpack map) as a ``definition``; [] if nothing.

    ``definition`` names one of the schema's ``$defs``: ``frame_header``, ``det_body``,
    ``trk_body``, ``evt_body``, ``prv_body``, ``sta_body``, ``control_request``, ``control_reply``,
    ``actuation_command``.
    """
    root = schema()
    if definition not in root["$defs"]:
        raise KeyError(f"no definition {definition!r}; known: {sorted(root['$defs'])}")
    wrapped = {**root, "$ref": f"#/$defs/{definition}"}
    validator = _validator_class()(wrapped)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(as_json(message))
    ]
