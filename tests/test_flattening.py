"""Uneven illumination is flattened before the network; even frames are left as they were."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from livetrack.bench._offconfig import off_config_movie
from livetrack.detection import normalise
from livetrack.linking.scores import detection_scores

RAMP = 1 + 0.6 * (np.arange(256) / 255 - 0.5)


def _blocks_span(img: np.ndarray, block: int = 64) -> float:
    h, w = img.shape
    b = img[: h // block * block, : w // block * block]
    med = np.median(b.reshape(h // block, block, w // block, block).swapaxes(1, 2).reshape(
        h // block, w // block, -1), axis=2)  # fmt: skip
    return float(med.max() - med.min())


def test_an_even_frame_is_normalised_as_before() -> None:
    rng = np.random.default_rng(0)
    frame = (100 + rng.poisson(20.0, (256, 256))).astype(np.uint16)
    sub = frame[::2, ::2].astype(np.float32)
    med, scale = normalise._level_and_scale(sub.ravel())
    assert normalise._background_ramp(sub, 2, frame.shape, scale) is None
    plain = normalise._transform(frame.astype(np.float32), med, scale, True)
    np.testing.assert_allclose(normalise.robust_normalise(frame), plain, atol=1e-6)


def test_a_gradient_is_taken_out() -> None:
    rng = np.random.default_rng(1)
    frame = (100 + rng.poisson(60.0 * np.tile(RAMP, (256, 1)))).astype(np.uint16)
    raw = normalise._transform(frame.astype(np.float32), *normalise._level_and_scale(
        frame[::2, ::2].astype(np.float32).ravel()), False)  # fmt: skip
    flat = normalise.robust_normalise(frame, compress=False)
    assert _blocks_span(raw) > 2.0  # noise σ
    assert _blocks_span(flat) < 0.5


@pytest.mark.slow
def test_faint_particles_on_the_dim_side_are_found() -> None:
    from livetrack.detection.detector import Detector

    det = Detector()
    movie, truth, _ = off_config_movie(1.0, 0.6, 2.0, 1, 3, det.card.expects.psf_sigma_px)
    from livetrack.detection.camera import in_model_camera

    d = det.detect(in_model_camera(movie[0], 500.0, 2.0, det.card))
    found = pd.DataFrame({"frame": 0, "x": d.x, "y": d.y})
    s = detection_scores(truth, found, gate=2.0)
    assert s.recall > 0.8  # 0.54 before flattening
    assert s.precision > 0.97
    dim = truth["x"] < 256  # the darker half
    assert detection_scores(truth[dim], found[found["x"] < 256], gate=2.0).recall > 0.75
