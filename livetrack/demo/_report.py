"""The demo's summary picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def draw_summary(
    feedback: dict[str, Any], no_feedback: dict[str, Any], png: Path, last_frame: Path
) -> None:
    """Trajectories over the last frame, latency histogram, distance from centre over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 5.2))
    if last_frame.exists():
        img = np.load(last_frame)
        lo, hi = np.percentile(img, [1, 99.7])
        ax[0].imshow(img, cmap="gray", vmin=lo, vmax=hi)
    paths: dict[int, list[tuple[float, float]]] = {}
    ox, oy = feedback["last_stage_px"]  # sample frame → the last image's pixels
    for _, ids, x, y in list(feedback["tracks"])[-150:]:
        for i, pid in enumerate(ids):
            paths.setdefault(int(pid), []).append((float(x[i] - ox), float(y[i] - oy)))
    for pts in paths.values():
        a = np.asarray(pts)
        ax[0].plot(a[:, 0], a[:, 1], lw=0.8)
    ax[0].set_title("tracks over the last 3 s, in sample coordinates", fontsize=10)
    ax[0].set_axis_off()

    lat = feedback["latency_samples"]
    loop = feedback["loop_latency_ms"]
    if len(lat):
        ax[1].hist(lat, bins=60, color="C0", alpha=0.8, label="acquisition → result")
        for q, ls in (("p50", "-"), ("p99", "--")):
            if q in loop:
                ax[1].axvline(loop[q], color="C3", ls=ls, label=f"loop (→ stage moved) {q}")
    ax[1].set_xlabel("latency (ms)")
    ax[1].set_ylabel("frames")
    ax[1].legend(fontsize=8)
    ax[1].set_title(f"latency at {feedback['fps']:.0f} fps")

    for phase, label, colour in ((feedback, "feedback on", "C2"), (no_feedback, "off", "C1")):
        t = phase["truth"]
        if t:
            rms = t["rms_px_from_centre"]
            ax[2].plot(
                t["t_s"], t["distance_px"], color=colour, lw=0.8, label=f"{label}: RMS {rms:.1f} px"
            )
    ax[2].set_xlabel("time (s)")
    ax[2].set_ylabel("true distance of the bead from the centre (px)")
    ax[2].set_yscale("log")
    ax[2].legend(fontsize=8)
    ax[2].set_title("centring: same bead, same seed")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
