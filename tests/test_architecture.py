"""House rules: parts import downward only, and TensorFlow stays out of light processes."""

from __future__ import annotations

import ast
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
        if (n := len(p.read_text().splitlines())) > 400
    ]
    assert not long, "split these modules: " + ", ".join(long)


def test_functions_stay_short() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > 80:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({n})")
    assert not long, "split these functions: " + ", ".join(long)


def test_the_wire_client_imports_no_heavy_library() -> None:
    heavy = ["tensorflow", "keras", "pandas", "scipy", "numba", "trackpy", "pymmcore_plus"]
    code = (
        "import sys, livetrack, livetrack.wire.client, livetrack.wire.security; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_cli_names_every_bench_part() -> None:
    from livetrack.bench import SECTIONS
    from livetrack.cli._offline import BenchPart

    assert [p.value for p in BenchPart] == list(SECTIONS)


def test_the_public_verbs_are_importable() -> None:
    import livetrack

    for name in livetrack.__all__:
        assert getattr(livetrack, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = livetrack.nope  # type: ignore[attr-defined]
