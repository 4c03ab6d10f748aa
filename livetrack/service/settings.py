"""What ``livetrack serve`` runs: settings from a TOML file and the command line, and the start.

A file's ``[service]`` section holds the keys of :class:`ServeSettings` (the
command-line options, with ``_`` for ``-``) and its ``[linking]`` section the
linker's; options given on the command line override the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from livetrack.artifact import artifact_kind, no_photon_floor
from livetrack.config import read_toml, validate_config
from livetrack.detection.precision import PrecisionName
from livetrack.linking import LinkingConfig
from livetrack.service.config import Policy, ServiceConfig
from livetrack.service.service import Service


class ServeSettings(BaseModel):
    """Everything one service needs: the detector, the sockets, the policy, the linker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = None  # artifact directory; None: the shipped default
    classical: bool = False  # trackpy's locate instead of a trained model
    frames: str = "tcp://127.0.0.1:5555"
    results: str = "tcp://127.0.0.1:5556"
    control: str = "tcp://127.0.0.1:5557"
    policy: Policy = "realtime"
    queue: Annotated[int, Field(ge=1)] = 64
    force_model: bool = False
    insecure: bool = False
    keys: str | None = None
    precision: PrecisionName = "auto"
    pipeline: bool = True
    split: bool = False
    split_near: tuple[float, float, float] | None = None  # x, y, radius in pixels
    network_threads: Annotated[int, Field(ge=1)] | None = None
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    metrics_host: str = "127.0.0.1"
    offset: float | None = None  # the camera's dark level, ADU (frames that do not say)
    gain: Annotated[float, Field(gt=0)] | None = None  # its gain, ADU per electron
    invert: bool = False  # dark particles on a bright background
    min_score: Annotated[float, Field(gt=0)] | None = None  # a model's weaker detections dropped
    min_photons: Annotated[float, Field(ge=0)] | None = None  # fitted spots' floor; None: card's
    linking: LinkingConfig = Field(default_factory=LinkingConfig)

    @field_validator("split_near")
    @classmethod
    def _positive_radius(
        cls, v: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        if v is not None and not v[2] > 0:
            raise ValueError(f"the radius must be positive, got {v[2]}")
        return v

    def service_config(self) -> ServiceConfig:
        """The service's own configuration (sockets, policy, limits, linker)."""
        return ServiceConfig(
            frames=self.frames,
            results=self.results,
            control=self.control,
            policy=self.policy,
            queue=self.queue,
            force_model=self.force_model,
            insecure=self.insecure,
            keys=self.keys,
            metrics_port=self.metrics_port,
            metrics_host=self.metrics_host,
            pipeline=self.pipeline,
            linking=self.linking,
            camera_offset_adu=self.offset,
            camera_gain_adu_per_e=self.gain,
            invert=self.invert,
            min_score=self.min_score,
            min_photons=self.min_photons,
        )

    def split_summary(self) -> str:
        """Where hidden particles are looked for, in words."""
        if self.split_near is not None:
            x, y, r = self.split_near
            return f"within {r:g} px of ({x:g}, {y:g})"
        return "whole frame" if self.split else "off"


def load_serve_settings(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> ServeSettings:
    """Settings from a TOML file's ``[service]`` and ``[linking]``, then ``overrides``.

    ``overrides`` holds the options given on the command line (``None`` values are
    ignored); a ``linking`` entry is a mapping merged into the file's linker keys.
    Raises :class:`~livetrack.config.ConfigError` naming the file, key and value.
    """
    data: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        toml = read_toml(path)
        data = dict(toml.get("service", {}))
        if "linking" in toml:
            data["linking"] = dict(toml["linking"])
        source = f"{path} (with the command-line options)"
    for key, value in (overrides or {}).items():
        if key == "linking":
            data["linking"] = {**data.get("linking", {}), **value}
        elif value is not None:
            data[key] = value
    return validate_config(data, ServeSettings, source)


def build_detector(settings: ServeSettings) -> tuple[Any, str]:
    """The warmed-up detector the settings name, and a line that describes it."""
    if settings.classical:
        from livetrack.detection.classical import TrackpyDetector

        for name, value in (("--min-score", settings.min_score),
                            ("--min-photons", settings.min_photons)):  # fmt: skip
            if value is not None:
                raise ValueError(f"{name} is for a model's detections, not --classical")
        classic = TrackpyDetector(invert=settings.invert)
        classic.warm_up()
        return classic, "trackpy locate"
    from livetrack.detection.detector import Detector, set_network_threads

    threads = set_network_threads(settings.network_threads)
    if settings.model is not None and artifact_kind(settings.model) == "lodestar":
        from livetrack.detection.lodestar import LodestarDetector

        if settings.invert:
            raise ValueError(
                f"--invert is for the shipped models and --classical: {settings.model} "
                "was learnt from the particles as they look (adapt --self-supervised); "
                "serve it without --invert"
            )
        if settings.min_photons is not None:
            raise ValueError(no_photon_floor(settings.model))
        learnt = LodestarDetector(settings.model, precision=settings.precision)
        learnt.warm_up()
        return learnt, f"LodeSTAR, {learnt.precision}, {threads} thread(s)"
    det = Detector(
        settings.model,
        precision=settings.precision,
        split=settings.split,
        split_region=settings.split_near,
        min_photons=settings.min_photons,
    )
    det.warm_up()
    floor = f", spots of ≥ {det.min_photons:g} photons" if det.min_photons > 0 else ""
    return det, f"{det.precision}, {threads} thread(s){floor}"


def start_service(settings: ServeSettings) -> tuple[Service, str]:
    """Load the detector and bind the sockets; returns the service and its network line."""
    detector, network = build_detector(settings)
    return Service(detector, settings.service_config()), network
