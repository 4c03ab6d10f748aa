"""Linking parameters (the ``[linking]`` section of a preset)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class LinkingConfig(BaseModel):
    """How detections are joined into tracks.

    Attributes
    ----------
    search_range_px
        Largest displacement between consecutive frames (pixels), after prediction.
    memory
        How many observed frames a track may go undetected before it ends. Two
        particles closer than the optics resolve are detected as one spot, often
        for several frames; a track kept this long comes out again with its own id.
    gap_penalty
        Weight of a missed track's log gap in the link cost (the Gaussian's
        normalisation): cost = d² / g + w R² ln g for a track last linked g frames
        ago, R the search range. Without it a track missed for long searches so
        wide, at so low a cost per px², that it outbids live tracks for their
        detections. With R about 3.7 Brownian steps (s) plus localisation error,
        the Gaussian's own weight 2s²/R² is 0.07–0.1.
    predictor
        ``none`` (Brownian), ``velocity`` (each track's own smoothed velocity) or
        ``drift`` (the median displacement of all tracks: stage or flow drift).
    grow_search_with_gap
        Widen the search by √gap when frames were skipped or a track was missed
        (diffusive spreading), instead of keeping it fixed as trackpy does.
    max_subnet
        Largest ambiguous group of tracks solved exactly; larger groups are
        linked greedily (shortest links first) and counted as fallbacks.
    max_candidates
        Nearest detections considered per track (bounds work per frame).
    velocity_smoothing
        Weight of the newest displacement in the velocity estimate (0–1].
    brightness_penalty
        Weight of a brightness change in the link cost, as TrackMate's feature
        penalties: cost = d² (1 + 3 w |f₁ − f₂| / (f₁ + f₂))², f the track's smoothed
        photons and the detection's. Where tracks compete for detections (two
        particles crossing) the one whose brightness matches wins; a link within the
        search range is never refused for brightness alone. 0 turns it off; it is
        off wherever detections carry no photons.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    search_range_px: Annotated[float, Field(gt=0.0)] = 8.0
    memory: Annotated[int, Field(ge=0, le=1000)] = 10
    gap_penalty: Annotated[float, Field(ge=0.0, le=10.0)] = 0.07
    predictor: Literal["none", "velocity", "drift"] = "none"
    grow_search_with_gap: bool = True
    max_subnet: Annotated[int, Field(ge=1, le=10000)] = 60
    max_candidates: Annotated[int, Field(ge=1, le=64)] = 6
    velocity_smoothing: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    brightness_penalty: Annotated[float, Field(ge=0.0, le=10.0)] = 1.0
