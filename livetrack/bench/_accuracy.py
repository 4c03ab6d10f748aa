"""Benchmark sections ``localization`` and ``detection`` (the shipped detector)."""

from __future__ import annotations

from typing import Any

from livetrack.training import evaluate as ev


def _detector() -> Any:
    from livetrack.detection.detector import Detector

    return Detector()


def bench_localization(quick: bool) -> list[dict[str, Any]]:
    """Isolated spots over a photon sweep: RMSE of ours, trackpy, radial symmetry; the CRLB."""
    photons = (200, 2000, 20000) if quick else ev.PHOTONS
    return ev.localization_sweep(_detector(), photons=photons, frames=1 if quick else 2)


def bench_detection(quick: bool) -> list[dict[str, Any]]:
    """Dense frames at SNR 1/2/4/7 (and off-config cases): F1 and RMSE, ours vs tuned trackpy."""
    cases = (
        [ev.STANDARD_CASES[1], ev.STANDARD_CASES[4]]
        if quick
        else ev.STANDARD_CASES + ev.OFF_CONFIG_CASES + ev.LOW_SNR_CASES
    )
    return ev.detection_sweep(_detector(), cases, frames=1 if quick else 3)
