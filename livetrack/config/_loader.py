"""Load TOML configuration with errors that name the file, key, value and expectation."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from livetrack.config._models import SimulationConfig

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file could not be read or is invalid.

    The message names the file, each offending key, its value and what was expected.
    """


def _format_loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "<top level>"


def _describe_error(err: Any) -> str:
    loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
    key = _format_loc(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"  key '{key}': unknown key (value {err['input']!r}); check the spelling"
    if kind == "missing":
        return f"  key '{key}': missing; this key is required"
    msg = err["msg"].removeprefix("Value error, ")
    return f"  key '{key}' = {err['input']!r}: expected {msg[0].lower()}{msg[1:]}"


def validate_config(data: dict[str, Any], model: type[M], source: str) -> M:
    """Validate a parsed mapping against ``model``; raise :class:`ConfigError` on failure.

    Parameters
    ----------
    data
        Parsed TOML content.
    model
        The pydantic model to validate against.
    source
        Where the data came from (a file name), for the message.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [_describe_error(e) for e in exc.errors()]
        n = len(lines)
        raise ConfigError(
            f"{source}: {n} invalid value{'s' if n > 1 else ''}:\n" + "\n".join(lines)
        ) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning syntax errors into :class:`ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None


def presets_dir() -> Path:
    """The folder holding the shipped presets (``config/`` in a checkout)."""
    packaged = resources.files("livetrack") / "_presets"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "config"


def resolve_config_path(name_or_path: str | Path) -> Path:
    """Accept a path, or the name of a shipped preset (``fluorescent_beads``)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    candidate = presets_dir() / f"{Path(name_or_path).stem}.toml"
    if candidate.exists():
        return candidate
    names = sorted(x.stem for x in presets_dir().glob("*.toml"))
    raise ConfigError(f"{p}: no such file, and not a shipped preset (presets: {', '.join(names)})")


def load_simulation_config(path: str | Path) -> SimulationConfig:
    """Load and validate a preset file (or a shipped preset by name).

    Sections the simulator does not use (``[training]``, ``[service]``, …) are
    ignored here and validated by the parts that own them.
    """
    p = resolve_config_path(path)
    data = read_toml(p)
    sim_keys = set(SimulationConfig.model_fields)
    owned_elsewhere = {"training", "model", "service", "linking", "controller", "acquisition"}
    unknown = set(data) - sim_keys - owned_elsewhere
    if unknown:
        expected = ", ".join(sorted(sim_keys | owned_elsewhere))
        raise ConfigError(
            f"{p}: unknown section(s) {', '.join(sorted(unknown))}; expected sections: {expected}"
        )
    return validate_config(
        {k: v for k, v in data.items() if k in sim_keys}, SimulationConfig, str(p)
    )
