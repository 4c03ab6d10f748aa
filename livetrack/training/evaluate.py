"""``livetrack evaluate``: the detector against the physical limit and the baselines.

Two measurements, both on fresh simulated frames with fixed seeds:

1. Localisation of isolated spots over a photon sweep (background 10 photons/px,
   pure shot noise so the Poisson CRLB is the exact limit): RMSE per coordinate of
   our detector (network alone and refined), trackpy ``locate`` and the
   radial-symmetry centre, next to the CRLB.
2. Detection in dense 512² frames (100–300 particles at SNR 2, 4, 7) and in
   frames that differ from the training config: precision, recall, F1, RMSE, next
   to trackpy with its minmass tuned on the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from livetrack.config import Camera
from livetrack.linking.scores import detection_scores
from livetrack.simulation import GaussianPSF, crlb_dense, crlb_pixelated, expose
from livetrack.single.detector import radial_symmetry_centre
from livetrack.training.baselines import (
    trackpy_detect_movie,
    trackpy_diameter,
    trackpy_locate,
    tune_trackpy_minmass,
)

PHOTONS = (100, 200, 500, 1000, 2000, 5000, 10000, 20000)


def _rmse_matched(
    x: np.ndarray, y: np.ndarray, tx: np.ndarray, ty: np.ndarray, gate: float = 2.0
) -> tuple[float, float]:
    """RMSE per coordinate of each truth's nearest estimate within ``gate``; fraction found."""
    if len(x) == 0:
        return float("nan"), 0.0
    d, j = cKDTree(np.column_stack([x, y])).query(np.column_stack([tx, ty]))
    ok = d < gate
    if not ok.any():
        return float("nan"), 0.0
    err2 = (x[j[ok]] - tx[ok]) ** 2 + (y[j[ok]] - ty[ok]) ** 2
    return float(np.sqrt(err2.mean() / 2.0)), float(ok.mean())


def detect_movie(detector: Any, frames: np.ndarray) -> pd.DataFrame:
    """Every frame through ``detector``: one table with ``frame``, ``x``, ``y``.

    A new stream for the detector: what it learnt of the last movie (the PSF width)
    must not carry over to this one.
    """
    if hasattr(detector, "reset"):
        detector.reset()
    rows = []
    for i, f in enumerate(frames):
        d = detector.detect(f)
        rows.append(pd.DataFrame({"frame": i, "x": d.x, "y": d.y, "photons": d.photons}))
    return pd.concat(rows, ignore_index=True)


def _spot_grid(
    n_side: int, spacing: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    g = (np.arange(n_side) + 1) * spacing
    gx, gy = np.meshgrid(g, g)
    return gx.ravel() + rng.uniform(-0.5, 0.5, gx.size), gy.ravel() + rng.uniform(
        -0.5, 0.5, gy.size
    )


def localization_sweep(
    detector: Any,
    photons: tuple[float, ...] = PHOTONS,
    background: float = 10.0,
    sigma_px: float | None = None,
    frames: int = 2,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Isolated spots (a 15×15 grid, 32 px apart, per 512² frame) at each photon level."""
    sigma = sigma_px if sigma_px is not None else detector.card.expects.psf_sigma_px
    e = detector.card.expects
    cam = Camera(
        width=512,
        height=512,
        quantum_efficiency=e.camera_quantum_efficiency,
        gain_adu_per_e=e.camera_gain_adu_per_e,
        offset_adu=e.camera_offset_adu,
        read_noise_e=0.0,
    )
    psf = GaussianPSF(sigma)
    rng = np.random.default_rng(seed)
    diameter = trackpy_diameter(sigma)
    rows = []
    hw = int(np.ceil(3 * sigma))
    for n in photons:
        acc: dict[str, list[float]] = {k: [] for k in ("ours", "net", "tp", "rs", "found")}
        for _ in range(frames):
            tx, ty = _spot_grid(15, 32, rng)
            img = (
                psf.render(tx, ty, np.zeros(len(tx)), np.full(len(tx), float(n)), (512, 512)).image
                + background
            )
            frame = expose(img, cam, rng)
            if hasattr(detector, "reset"):
                detector.reset()  # each frame its own stream: its own PSF width
            d = detector.detect(frame)
            r, found = _rmse_matched(d.x, d.y, tx, ty)
            acc["ours"].append(r)
            acc["found"].append(found)
            was = detector.refine_positions
            detector.refine_positions = False
            dn = detector.detect(frame)
            detector.refine_positions = was
            acc["net"].append(_rmse_matched(dn.x, dn.y, tx, ty)[0])
            f = trackpy_locate(frame, diameter, 0.0)
            acc["tp"].append(_rmse_matched(f["x"].to_numpy(), f["y"].to_numpy(), tx, ty)[0])
            # radial symmetry on windows centred on the nearest pixel (its best case)
            phot = np.asarray(frame, float)
            ex, ey = [], []
            for x0, y0 in zip(tx, ty, strict=True):
                cx, cy = round(x0), round(y0)
                xc, yc = radial_symmetry_centre(phot[cy - hw : cy + hw + 1, cx - hw : cx + hw + 1])
                ex.append(cx - hw + xc - x0)
                ey.append(cy - hw + yc - y0)
            acc["rs"].append(float(np.sqrt((np.mean(np.square(ex)) + np.mean(np.square(ey))) / 2)))
        crlb = crlb_pixelated(float(n), background, sigma)
        m = {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in acc.items() if k != "found"}
        rows.append(
            {
                "photons": float(n),
                "sigma_px": sigma,
                "background": background,
                "rmse_px": m["ours"],
                "rmse_px_network": m["net"],
                "crlb_px": crlb,
                "trackpy_rmse_px": m["tp"],
                "radial_symmetry_rmse_px": m["rs"],
                "ratio": m["ours"] / crlb,
                "trackpy_ratio": m["tp"] / crlb,
                "radial_symmetry_ratio": m["rs"] / crlb,
                "found": float(np.mean(acc["found"])),
            }
        )
    return rows


def _dense_bound(shot: Any, sigma: float, read_noise: float) -> np.ndarray:
    """2-D CRLB √(σx² + σy²) per truth row of one frame (pixels), shape (2, rows).

    Row 0: neighbours unknown (the frame's bound); row 1: neighbours' parameters known.
    """
    t = shot.truth
    args = (shot.expected_photons, t["x"], t["y"], t["photons"], sigma)
    full = np.hypot(*crlb_dense(*args, read_noise=read_noise))
    own = np.hypot(*crlb_dense(*args, read_noise=read_noise, neighbours_known=True))
    return np.stack([full, own])


#: A particle whose bound grows by more than this when its neighbours' positions are
#: unknown is entangled with them (a pair closer than about 1.5 σ): no unbiased
#: estimator is meaningful there, and the gate-limited error of any method beats it.
ENTANGLED = 1.5


def _versus_bound(s: Any, bound: np.ndarray) -> tuple[float, float, float]:
    """RMSE over the RMS bound on resolvable matched particles; their share; z RMS."""
    if not s.tp:
        return float("nan"), float("nan"), float("nan")
    full, own = bound[:, s.matched_truth_rows]
    ok = full <= ENTANGLED * own
    e2 = s.matched_sq_err
    ratio = float(np.sqrt(e2[ok].mean() / (full[ok] ** 2).mean())) if ok.any() else float("nan")
    return ratio, float(ok.mean()), float(np.sqrt(np.mean(e2 / full**2)))


@dataclass(frozen=True)
class DetectionCase:
    """One dense-frame detection case (a benchmark scenario plus optional changes)."""

    name: str
    particles: int
    snr: float
    sigma_scale: float = 1.0
    gradient: float = 0.0


def detection_sweep(
    detector: Any, cases: list[DetectionCase], frames: int = 3, seed: int = 0
) -> list[dict[str, Any]]:
    """Our detector vs best-tuned trackpy on each case (same frames)."""
    from livetrack.simulation.scenarios import Scenario

    rows = []
    for k, case in enumerate(cases):
        sc = Scenario(case.name, case.particles, case.snr, frames, seed=seed + k)
        cfg = sc.config()
        if case.sigma_scale != 1.0 or case.gradient != 0.0:
            optics = cfg.optics.model_copy(
                update={"numerical_aperture": cfg.optics.numerical_aperture / case.sigma_scale}
            )
            illum = cfg.illumination.model_copy(update={"gradient": (case.gradient, 0.0)})
            cfg = cfg.model_copy(update={"optics": optics, "illumination": illum})
        from livetrack.simulation import Scene

        scene = Scene(cfg, sc.seed)
        shots = list(scene.frames(frames))
        movie = np.stack([s.frame for s in shots])
        truth = pd.concat([s.truth for s in shots], ignore_index=True)
        s = detection_scores(truth, detect_movie(detector, movie), gate=2.0)
        sigma = GaussianPSF.from_optics(cfg.optics).sigma_px
        diameter = trackpy_diameter(sigma)
        mm = tune_trackpy_minmass(movie, truth, diameter)
        t = detection_scores(truth, trackpy_detect_movie(movie, diameter, mm), gate=2.0)
        # the physical limit in this frame: neighbours' light and the edges included
        bound = np.concatenate(
            [_dense_bound(shot, sigma, cfg.camera.read_noise_e) for shot in shots], axis=1
        )
        ratio, resolvable, z = _versus_bound(s, bound)
        t_ratio, _, t_z = _versus_bound(t, bound)
        rows.append(
            {
                "scenario": case.name,
                "snr": case.snr,
                "particles": case.particles,
                "precision": s.precision,
                "recall": s.recall,
                "f1": s.f1,
                "rmse_px": s.rmse_px,
                "rmse_over_crlb": ratio,
                "resolvable": resolvable,
                "error_over_crlb_rms": z,
                "trackpy_precision": t.precision,
                "trackpy_recall": t.recall,
                "trackpy_f1": t.f1,
                "trackpy_rmse_px": t.rmse_px,
                "trackpy_rmse_over_crlb": t_ratio,
                "trackpy_error_over_crlb_rms": t_z,
            }
        )
    return rows


STANDARD_CASES = [
    DetectionCase("100 particles SNR 2", 100, 2.0),
    DetectionCase("100 particles SNR 4", 100, 4.0),
    DetectionCase("100 particles SNR 7", 100, 7.0),
    DetectionCase("300 particles SNR 2", 300, 2.0),
    DetectionCase("300 particles SNR 4", 300, 4.0),
    DetectionCase("300 particles SNR 7", 300, 7.0),
]
#: The issue's lowest SNR; appended after the others so their seeds stay as they were.
LOW_SNR_CASES = [
    DetectionCase("100 particles SNR 1", 100, 1.0),
    DetectionCase("300 particles SNR 1", 300, 1.0),
]
OFF_CONFIG_CASES = [
    DetectionCase("off-config: PSF 1.3x wider, SNR 4", 200, 4.0, sigma_scale=1.3),
    DetectionCase("off-config: PSF 0.8x, SNR 4", 200, 4.0, sigma_scale=0.8),
    DetectionCase("off-config: 60% background gradient, SNR 4", 200, 4.0, gradient=0.6),
    DetectionCase("off-config: 600 particles, SNR 4", 600, 4.0),
]


def plot_localization(rows: list[dict[str, float]], path: Path) -> None:
    """RMSE vs photons with the CRLB curve (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["photons"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    ax.loglog(n, [r["crlb_px"] for r in rows], "k-", lw=2, label="CRLB")
    ax.loglog(n, [r["rmse_px"] for r in rows], "o-", label="livetrack (network + MLE)")
    ax.loglog(
        n, [r["rmse_px_network"] for r in rows], "s--", alpha=0.7, label="livetrack network alone"
    )
    ax.loglog(n, [r["trackpy_rmse_px"] for r in rows], "^-", label="trackpy locate")
    ax.loglog(n, [r["radial_symmetry_rmse_px"] for r in rows], "v-", label="radial symmetry")
    ax.set_xlabel("photons per spot")
    ax.set_ylabel("RMSE per coordinate (px)")
    ax.set_title(
        f"Isolated spots, σ = {rows[0]['sigma_px']:.2f} px, "
        f"background {rows[0]['background']:.0f} photons/px",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_detection(rows: list[dict[str, Any]], path: Path) -> None:
    """F1 vs SNR for us and trackpy, per particle count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    for n in sorted({r["particles"] for r in rows if not str(r["scenario"]).startswith("off")}):
        rs = [r for r in rows if r["particles"] == n and not str(r["scenario"]).startswith("off")]
        ax.plot(
            [r["snr"] for r in rs], [r["f1"] for r in rs], "o-", label=f"livetrack, {n} particles"
        )
        ax.plot(
            [r["snr"] for r in rs],
            [r["trackpy_f1"] for r in rs],
            "^--",
            label=f"trackpy (tuned), {n} particles",
        )
    ax.set_xlabel("SNR")
    ax.set_ylabel("F1 (2 px gate)")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate_detector(detector: Any, report: Path, quick: bool = False) -> dict[str, Any]:
    """Both sweeps for one detector, their PNGs written into ``report``.

    Returns the figures: the model, and the ``localization`` and ``detection`` rows.
    """
    photons = (200, 2000, 20000) if quick else PHOTONS
    loc = localization_sweep(detector, photons=photons, frames=1 if quick else 2)
    cases = STANDARD_CASES[1:2] if quick else STANDARD_CASES + OFF_CONFIG_CASES
    detn = detection_sweep(detector, cases, frames=1 if quick else 3)
    report.mkdir(parents=True, exist_ok=True)
    plot_localization(loc, report / "localization.png")
    plot_detection(detn, report / "detection.png")
    return {
        "model": str(detector.path),
        "card": detector.card.name,
        "localization": loc,
        "detection": detn,
    }
