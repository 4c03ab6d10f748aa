"""The model artifact: a directory with the Keras model and ``card.json``.

The card says what the model expects (pixel size, optics, camera, normalisation,
input size rules), what it outputs, how it was trained and how well it did on
held-out simulated data. Reading and checking a card needs no TensorFlow, so any
process can refuse a model that does not fit its data before loading it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CARD_NAME = "card.json"
MODEL_NAME = "model.keras"
CARD_VERSION = 1


class ArtifactError(ValueError):
    """A model artifact is missing, unreadable, or does not fit the data it is given."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Polarity = Literal["bright-on-dark", "dark-on-bright", "interference"]


class Expects(_Frozen):
    """What the model expects of its input."""

    modality: Literal["fluorescence", "brightfield", "holography"]
    pixel_size_um: Annotated[float, Field(gt=0)]
    pixel_size_tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.15
    wavelength_um: float
    numerical_aperture: float
    psf_sigma_px: Annotated[float, Field(gt=0)]
    normalisation: str = "asinh((frame - median) / max(1.4826 MAD, std of lower 80%)), sub-sampled"
    input_multiple: Annotated[int, Field(ge=1)] = 4
    camera_offset_adu: float = 100.0
    camera_gain_adu_per_e: Annotated[float, Field(gt=0)] = 1.0
    camera_quantum_efficiency: Annotated[float, Field(gt=0, le=1)] = 1.0
    camera_read_noise_e: Annotated[float, Field(ge=0)] = 0.0
    # the medium's refractive index: a hologram fit needs it (None: not stated)
    medium_index: Annotated[float, Field(gt=0)] | None = None
    # how particles stand out: brighter than a dark background (fluorescence), or an
    # interference pattern, darker and brighter, on a bright one (brightfield,
    # holography). None: the modality's (cards written before this field)
    polarity: Polarity | None = None

    @property
    def read_noise_photons(self) -> float:
        """The camera's read noise in detected photons, as the read-out's fits take it."""
        return self.camera_read_noise_e / self.camera_quantum_efficiency

    @property
    def adu_per_photon(self) -> float:
        """ADU a detected photon gives (gain × quantum efficiency)."""
        return self.camera_gain_adu_per_e * self.camera_quantum_efficiency

    @property
    def particle_polarity(self) -> Polarity:
        """The polarity the model expects: the card's, else its modality's."""
        return self.polarity or modality_polarity(self.modality)

    @property
    def inverts(self) -> bool:
        """Whether frames are inverted (``e → 2 B − e``) before the network.

        So for a spot model for dark particles (``adapt`` on absorbing ones): its
        network was trained on bright spots.
        """
        return self.modality == "fluorescence" and self.polarity == "dark-on-bright"


def modality_polarity(modality: str) -> Polarity:
    """How particles stand out in a modality: fluorescence glows, the others interfere."""
    return "bright-on-dark" if modality == "fluorescence" else "interference"


class Outputs(_Frozen):
    """What the model produces and how to read it."""

    kind: Literal["detector", "characteriser", "localiser", "lodestar"] = "detector"
    stride: Annotated[int, Field(ge=1)] = 4
    channels: tuple[str, ...] = ("logit", "offset_x", "offset_y")
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    # gaussian_mle: spots fitted by Poisson MLE; radial_symmetry: each detection centred
    # on its pattern's centre of symmetry in a window of half side symmetry_half_px
    refinement: Literal["none", "gaussian_mle", "radial_symmetry"] = "gaussian_mle"
    symmetry_half_px: Annotated[int, Field(ge=2)] = 8
    # radial_symmetry: keep a detection only if its radial profile explains its window
    # by this ANOVA ratio at least (detection/symmetry.radial_f; 0: keep every one)
    min_symmetry_f: Annotated[float, Field(ge=0)] = 0.0
    # after refinement, drop spots whose fitted SNR (ISBI form) is below this: noise blobs
    min_fit_snr: Annotated[float, Field(ge=0)] = 1.2
    # spots with fewer photons are dropped (adapt: the gap below a movie's particles,
    # above a fainter population at the noise's level; 0: none dropped)
    min_photons: Annotated[float, Field(ge=0)] = 0.0
    # the residual-lobe z and elongation at which a spot is split in two; None: the
    # detector's defaults (adapt: raised to what a movie's lone spots reach when its
    # PSF is not the simulator's round one)
    split_lobe_z: Annotated[float, Field(gt=0)] | None = None
    split_elongation: Annotated[float, Field(gt=0)] | None = None
    columns: tuple[str, ...] = ("x", "y", "score", "photons", "background", "sigma")
    # characteriser: the crop it reads around each particle and how its outputs map
    # to physical units (mean = raw · half_width + centre; σ = exp(raw_logvar / 2) · half_width)
    crop_px: int | None = None
    downsample: int = 1
    target_centre: tuple[float, ...] = ()
    target_half_width: tuple[float, ...] = ()
    # multiplies each decoded σ: calibrated after training on the validation crops so
    # that 68.3 % of their errors fall within 1σ (empty: not calibrated, 1)
    sigma_scale: tuple[float, ...] = ()
    # localiser: the visible particle radii (px, normalised crops, 2nd–98th percentile)
    # of its training crops; None: not recorded
    particle_radius_px: tuple[float, float] | None = None
    # lodestar: the radius (px) within which a particle's votes are gathered
    vote_radius_px: Annotated[float, Field(gt=0)] | None = None


class Training(_Frozen):
    """How the model was trained (enough to reproduce it)."""

    config_file: str
    config: dict[str, Any]
    seed: int
    steps: int
    epochs: int
    seconds: float
    versions: dict[str, str | None]
    command: str


class ModelCard(_Frozen):
    """The whole card."""

    card_version: int = CARD_VERSION
    name: str
    description: str = ""
    expects: Expects
    outputs: Outputs
    training: Training
    metrics: dict[str, Any] = {}
    #: floating-point operations of one forward pass (multiply–adds × 2): per 512²
    #: frame for a detector, per crop for a crop model
    flops_per_512: float | None = None
    flops_per_crop: float | None = None
    parameters: int | None = None


def shipped_models() -> list[str]:
    """The names of the models shipped inside the package."""
    root = Path(str(resources.files("livetrack") / "models"))
    return sorted(d.name for d in root.iterdir() if (d / CARD_NAME).is_file())


def model_dir(name_or_path: str | Path) -> Path:
    """An artifact directory: a path, or the name of a shipped model (``default``, …)."""
    p = Path(name_or_path)
    if not p.exists() and str(name_or_path) in shipped_models():
        return Path(str(resources.files("livetrack") / "models" / str(name_or_path)))
    return p


def card_path(artifact: str | Path) -> Path:
    """The card file of an artifact directory."""
    return model_dir(artifact) / CARD_NAME


def read_card(artifact: str | Path) -> ModelCard:
    """Read and validate ``card.json``; raise :class:`ArtifactError` with the reason.

    ``artifact``: a directory, or the name of a shipped model.
    """
    artifact = model_dir(artifact)
    p = card_path(artifact)
    if not Path(artifact).is_dir():
        raise ArtifactError(f"{artifact}: not a model artifact directory")
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{artifact}: no {CARD_NAME} in the artifact") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{p}: unreadable card: {exc}") from None
    if isinstance(data, dict) and data.get("card_version") != CARD_VERSION:
        raise ArtifactError(
            f"{p}: card_version {data.get('card_version')!r}; "
            f"this livetrack reads version {CARD_VERSION}"
        )
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise ArtifactError(f"{p}: invalid card: key '{key}': {first['msg']}") from None


def artifact_kind(artifact: str | Path) -> str | None:
    """The kind of model ``artifact`` holds (``outputs.kind``); None if it cannot be read."""
    try:
        return read_card(artifact).outputs.kind
    except ArtifactError:
        return None  # loading the model says what is wrong


def no_photon_floor(artifact: str | Path) -> str:
    """Why a photon floor (``--min-photons``) is refused for a LodeSTAR ``artifact``."""
    return (
        f"--min-photons is for a fitted spot's photons: {artifact} was learnt from the "
        "movie's own particles (adapt --self-supervised) and fits none; --min-score drops "
        "its weaker detections"
    )


def write_card(artifact: str | Path, card: ModelCard) -> Path:
    """Write the card beside the model."""
    p = card_path(artifact)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(card.model_dump(mode="json"), indent=2))
    return p


def save_evaluation(artifact: str | Path, card: ModelCard, figures: dict[str, Any]) -> Path:
    """Store an evaluation's localisation and detection figures in the card's metrics."""
    keep = {k: figures[k] for k in ("localization", "detection")}
    return write_card(
        artifact, card.model_copy(update={"metrics": {**card.metrics, "evaluation": keep}})
    )


def check_fits(
    card: ModelCard,
    *,
    pixel_size_um: float | None = None,
    modality: str | None = None,
    override: bool = False,
) -> list[str]:
    """Check that the data fit the model; raise :class:`ArtifactError` unless ``override``.

    Returns the list of mismatches (empty when everything fits); with ``override``
    the mismatches are returned instead of raised, for the caller to log.
    """
    problems = []
    e = card.expects
    if pixel_size_um is not None:
        rel = abs(pixel_size_um - e.pixel_size_um) / e.pixel_size_um
        if rel > e.pixel_size_tolerance:
            problems.append(
                f"pixel size {pixel_size_um:.4g} µm differs from the model's "
                f"{e.pixel_size_um:.4g} µm "
                f"by {rel:.0%} (tolerance {e.pixel_size_tolerance:.0%})"
            )
    if modality is not None and modality != e.modality:
        problems.append(f"modality {modality!r} but the model was trained on {e.modality!r}")
    if problems and not override:
        raise ArtifactError(
            f"model {card.name!r} does not fit the data: "
            + "; ".join(problems)
            + ". Use a model trained for these data (livetrack train), "
            "or pass --force-model to use it anyway."
        )
    return problems


def default_model_dir() -> Path:
    """The default model shipped inside the package."""
    return Path(str(resources.files("livetrack") / "models" / "default"))


def localiser_model_dir() -> Path:
    """The single-particle localiser shipped inside the package (a trapped colloid)."""
    return Path(str(resources.files("livetrack") / "models" / "trapped-colloid-localiser"))


def brightfield_model_dir() -> Path:
    """The multi-particle brightfield detector shipped inside the package (~2 µm colloids)."""
    return Path(str(resources.files("livetrack") / "models" / "brightfield-colloid-detector"))


def characteriser_model_dir() -> Path:
    """The holography characteriser shipped inside the package."""
    return Path(str(resources.files("livetrack") / "models" / "holography-characteriser"))
