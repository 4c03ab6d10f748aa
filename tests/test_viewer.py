"""napari: a ``process`` table opens as Tracks and Points over its movie."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile

from livetrack.viewer.reader import napari_get_reader, read_tracks, table_layers

from .conftest import REAL_DATA

BF = REAL_DATA / "brightfield_colloids" / "brightfield.tif"


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, beads: Any) -> Path:
    """A small movie through ``process`` (trackpy's locate: no model to load)."""
    from livetrack.offline.job import ProcessOptions, process_movie
    from livetrack.simulation.io import write_movie

    from .conftest import small

    folder = tmp_path_factory.mktemp("viewer")
    movie = folder / "beads.ome.tif"
    write_movie(small(beads, 96, 96, number=8), movie, 10, seed=3)
    opts = ProcessOptions(classical=True, diameter=7, minmass=50.0)
    process_movie(movie, folder / "beads.csv", opts)
    return folder / "beads.csv"


def test_the_reader_takes_only_process_tables(processed: Path, tmp_path: Path) -> None:
    assert napari_get_reader(str(processed)) is read_tracks
    assert napari_get_reader([str(processed)]) is read_tracks
    other = tmp_path / "other.csv"
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(other, index=False)
    assert napari_get_reader(str(other)) is None  # napari asks the next reader
    assert napari_get_reader(str(tmp_path / "missing.csv")) is None
    assert napari_get_reader(str(tmp_path / "movie.tif")) is None
    with pytest.raises(ValueError, match="no particle"):
        table_layers(pd.DataFrame({"frame": [0], "x": [1.0], "y": [2.0]}))


def test_tracks_ids_and_frames_are_the_tables(processed: Path) -> None:
    table = pd.read_csv(processed)
    layers = {kind: (data, kw) for data, kw, kind in read_tracks(str(processed))}
    assert set(layers) == {"image", "tracks", "points"}
    tracks, _ = layers["tracks"]
    got = pd.DataFrame(tracks, columns=["particle", "frame", "y", "x"])
    want = table.sort_values(["particle", "frame"])[["particle", "frame", "y", "x"]]
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy(np.float64))
    points, pkw = layers["points"]
    assert len(points) == len(table)
    assert {"particle", "photons"} <= set(pkw["features"].columns)
    movie, _ = layers["image"]
    frames = tifffile.imread(processed.with_name("beads.ome.tif"))
    assert movie.shape == frames.shape
    np.testing.assert_array_equal(movie[3], frames[3])
    np.testing.assert_array_equal(movie[2:6:2, 10:20], frames[2:6:2, 10:20])
    np.testing.assert_array_equal(movie[[1, 4]], frames[[1, 4]])


def test_a_moved_movie_leaves_the_tracks(processed: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text(processed.read_text())
    record = json.loads(processed.with_suffix(".json").read_text())
    record["movie"]["path"] = str(tmp_path / "gone.tif")
    table.with_suffix(".json").write_text(json.dumps(record))
    assert [kind for _, _, kind in read_tracks(str(table))] == ["tracks", "points"]


# napari in its own process, as a user runs it: TensorFlow (loaded by other tests in
# this one) and Mesa's software OpenGL crash each other when they share a process
_VIEW = """
import json, sys
import napari
import numpy as np
viewer = napari.Viewer()  # shown on the virtual display: a hidden canvas draws nothing
viewer.open(sys.argv[1], plugin="livetrack")
kinds = {type(layer).__name__: layer for layer in viewer.layers}
viewer.dims.set_point(0, 25)
shot = viewer.screenshot(path=sys.argv[2], canvas_only=True)
print(json.dumps({
    "kinds": sorted(kinds),
    "ids": np.unique(kinds["Tracks"].data[:, 0]).astype(int).tolist(),
    "frames": np.unique(kinds["Tracks"].data[:, 1]).astype(int).tolist(),
    "image": list(kinds["Image"].data.shape),
    "shot_std": float(shot[..., :3].std()),
    "tensorflow": "tensorflow" in sys.modules,
}))
viewer.close()
"""


@pytest.mark.gui
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="no display (install Xvfb)")
def test_napari_opens_a_real_movies_table_in_one_call(tmp_path: Path) -> None:
    pytest.importorskip("napari")
    if not BF.is_file():
        pytest.skip("the real movies are not beside this checkout")
    from livetrack.offline.job import ProcessOptions, process_movie

    out = tmp_path / "bf.parquet"
    opts = ProcessOptions(model="brightfield-colloid-detector", pixel_size_um=0.1519)
    table = process_movie(BF, out, opts)
    shot = tmp_path / "napari.png"
    run = subprocess.run(
        [sys.executable, "-c", _VIEW, str(out), str(shot)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["kinds"] == ["Image", "Points", "Tracks"]
    assert seen["ids"] == sorted(table["particle"].unique().tolist())
    assert seen["frames"] == sorted(table["frame"].unique().tolist())
    assert seen["image"] == [50, 500, 500]
    assert seen["shot_std"] > 5  # the movie and the tracks, not a blank canvas
    assert shot.stat().st_size > 10_000
    assert not seen["tensorflow"]  # the viewer stays light


def test_napari_finds_the_reader_through_the_installed_manifest() -> None:
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("livetrack")
    (reader,) = manifest.contributions.readers or []
    assert {"*.parquet", "*.csv", "*.h5"} <= set(reader.filename_patterns)
    command = next(c for c in manifest.contributions.commands or [] if c.id == reader.command)
    assert command.python_name == "livetrack.viewer.reader:napari_get_reader"
    (widget,) = manifest.contributions.widgets or []
    assert widget.command == "livetrack.live_widget"
    module, name = command.python_name.split(":")
    assert getattr(importlib.import_module(module), name) is napari_get_reader
    pm = npe2.PluginManager()
    pm.register(manifest)
    found = [r.command for r in pm.iter_compatible_readers(["tracks.parquet"])]
    assert found == ["livetrack.read_tracks"]


@pytest.mark.gui
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="no display (install Xvfb)")
def test_livetrack_view_opens_tables(processed: Path, tmp_path: Path) -> None:
    pytest.importorskip("napari")
    shot = tmp_path / "view.png"
    cli = [sys.executable, "-m", "livetrack.cli", "view"]
    run = subprocess.run([*cli, str(processed), "--screenshot", str(shot)],
                         capture_output=True, text=True, timeout=240)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert shot.stat().st_size > 10_000
    missing = subprocess.run([*cli, str(tmp_path / "none.csv")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert "no such table" in missing.stderr
