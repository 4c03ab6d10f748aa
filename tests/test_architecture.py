"""House rules: parts import downward only, and TensorFlow stays out of light processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "livetrack"


@pytest.mark.parametrize("module", ["livetrack.simulation", "livetrack.config", "livetrack.cli"])
def test_light_modules_do_not_import_tensorflow(module: str) -> None:
    code = f"import sys, {module}; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"


def test_no_pickle_anywhere_in_the_package() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for needle in ("import pickle", "recv_pyobj", "cloudpickle", "allow_pickle=True", "dill"):
            if needle in text:
                offenders.append(f"{path.name}: {needle}")
    assert not offenders


def test_modules_stay_small() -> None:
    long = [
        f"{p.relative_to(PACKAGE)}: {n}"
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 450
    ]
    assert not long, "split these modules: " + ", ".join(long)
