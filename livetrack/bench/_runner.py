"""Run benchmark sections, record the machine, write JSON and a markdown report."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livetrack.bench._accuracy import bench_detection, bench_localization
from livetrack.bench._adapt import bench_adapt
from livetrack.bench._camera import bench_camera
from livetrack.bench._centring import bench_centring
from livetrack.bench._diffusion import bench_diffusion
from livetrack.bench._linking import bench_linking
from livetrack.bench._lodestar import bench_lodestar
from livetrack.bench._offconfig import bench_offconfig
from livetrack.bench._overhead import bench_overhead
from livetrack.bench._real import bench_real, plot_real
from livetrack.bench._reconnect import bench_reconnect
from livetrack.bench._simulation import bench_simulation
from livetrack.bench._single import bench_single
from livetrack.bench._sizing import bench_sizing
from livetrack.bench._speed import bench_overload, bench_speed
from livetrack.bench._storm import bench_storm
from livetrack.bench._viewer import bench_viewer
from livetrack.runtime import allocator_tuned, package_versions

# a section takes ``quick`` (and ``real_data`` when in READS_REAL_DATA)
Section = Callable[..., list[dict[str, Any]]]

SECTIONS: dict[str, Section] = {
    "simulation": bench_simulation,
    "localization": bench_localization,
    "detection": bench_detection,
    "camera": bench_camera,
    "offconfig": bench_offconfig,
    "linking": bench_linking,
    "overhead": bench_overhead,
    "speed": bench_speed,
    "sizing": bench_sizing,
    "single": bench_single,
    "real": bench_real,
    "overload": bench_overload,
    "storm": bench_storm,
    "reconnect": bench_reconnect,
    "centring": bench_centring,
    "viewer": bench_viewer,
    "adapt": bench_adapt,
    "lodestar": bench_lodestar,
    "diffusion": bench_diffusion,
}
# sections that only run when asked for by name (long, and they load the machine fully)
ON_REQUEST = {
    "overload",
    "storm",
    "reconnect",
    "centring",
    "viewer",
    "adapt",
    "lodestar",
    "diffusion",
}
# sections that also read the real movies (``real_data``)
READS_REAL_DATA = {"single", "real", "lodestar", "adapt"}


def gpus() -> list[str]:
    """GPUs on this machine: ``nvidia-smi -L`` names, else TensorFlow's devices if loaded.

    Every section runs on a GPU by itself where TensorFlow sees one (the detector
    chooses), so the report only has to say which device its numbers come from.
    """
    import shutil
    import subprocess
    import sys

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        names = [line.split("(")[0].strip() for line in out.splitlines() if line.startswith("GPU")]
        if names:
            return names
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        return [d.name for d in tf.config.list_physical_devices("GPU")]
    return []


def machine_info() -> dict[str, Any]:
    """CPU, cores, GPU (if any) and library versions, recorded with every run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = package_versions(
        ("numpy", "scipy", "trackpy", "tensorflow", "keras", "pyzmq", "pymmcore-plus", "livetrack")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": ", ".join(gpus()) or None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "allocator_tuned": allocator_tuned(),
        "versions": versions,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_bench(
    only: list[str] | None = None,
    quick: bool = False,
    real_data: Path | None = None,
    on_section: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the named sections (default: all) and return the report as a dict.

    ``real_data``: the folder of real movies (``shared/data/real``) for the sections
    that compare with them; without it they say they were skipped. ``on_section``
    is called with (name, index, count) as each section starts (a progress bar).
    """
    names = only or [n for n in SECTIONS if n not in ON_REQUEST]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown benchmark part(s) {unknown}; choose from {sorted(SECTIONS)}")
    report: dict[str, Any] = {"machine": machine_info(), "quick": quick}
    for i, name in enumerate(names):
        if on_section is not None:
            on_section(name, i, len(names))
        t0 = time.perf_counter()
        section = SECTIONS[name]
        report[name] = section(quick, real_data) if name in READS_REAL_DATA else section(quick)
        report.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 2)
    return report


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of a section as a markdown table (sample lists left out)."""
    if not rows:
        return "(no rows)\n"
    # every row's keys, in order of first appearance (rows of one section may differ)
    cols = [c for c in dict.fromkeys(k for r in rows for k in r) if not c.endswith("_samples_ms")]

    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join(
        "| " + " | ".join(fmt(r[c]) if c in r else "" for c in cols) + " |\n" for r in rows
    )


def write_report(report: dict[str, Any], json_path: Path | None, report_dir: Path | None) -> None:
    """Write the JSON and, optionally, a markdown report folder."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2))
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        pngs = write_plots(report, report_dir)
        md = markdown_report(report)
        if pngs:
            md += "\n## Plots\n\n" + "".join(f"![{p.stem}]({p.name})\n" for p in pngs)
        (report_dir / "report.md").write_text(md)


def write_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    """PNGs: error vs photons with the CRLB, F1 vs SNR, latency histogram."""
    from livetrack.training import evaluate as ev

    out = []
    if report.get("localization"):
        ev.plot_localization(report["localization"], folder / "localization.png")
        out.append(folder / "localization.png")
    if report.get("detection"):
        ev.plot_detection(report["detection"], folder / "detection.png")
        out.append(folder / "detection.png")
    if report.get("real") and plot_real(report["real"], folder / "real.png"):
        out.append(folder / "real.png")
    rows = [r for r in report.get("speed", []) if r.get("latency_samples_ms")]
    if rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
        for r in rows:
            ax.hist(
                r["latency_samples_ms"],
                bins=60,
                alpha=0.6,
                label=f"{r['frame']}, {r['fps']:.0f} frames/s, p99 {r['latency_ms']['p99']:.0f} ms",
            )
        ax.set_xlabel("latency, acquisition → subscriber (ms)")
        ax.set_ylabel("frames")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "latency.png")
        plt.close(fig)
        out.append(folder / "latency.png")
    return out


def markdown_report(report: dict[str, Any]) -> str:
    """The report as markdown: machine line, then one table per section."""
    m = report["machine"]
    lines = [
        "# livetrack bench\n",
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu']}; Python {m['python']}; "
        f"{'quick' if report['quick'] else 'full'} run at {m['time_utc']}.\n",
    ]
    for name in SECTIONS:
        if name in report:
            lines.append(f"\n## {name}\n\n" + markdown_table(report[name]))
    return "".join(lines)
