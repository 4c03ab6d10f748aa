"""``livetrack bench``: accuracy and speed, measured in one run on the same frames.

Each part contributes a section; sections are added as the parts land. Timings
are only compared within one run (the machine is shared and noisy).
"""

from livetrack.bench._runner import (
    SECTIONS,
    machine_info,
    markdown_report,
    markdown_table,
    run_bench,
    write_report,
)
from livetrack.bench._soak import run_soak

__all__ = [
    "SECTIONS",
    "machine_info",
    "markdown_report",
    "markdown_table",
    "run_bench",
    "run_soak",
    "write_report",
]
