"""The trained detector behind one small interface: frame in, detections out.

Loading imports Keras (TensorFlow backend unless ``KERAS_BACKEND`` says otherwise)
only when a model is actually loaded. The model file is loaded with
``safe_mode=True`` (no arbitrary code from the file), the card is checked first.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from livetrack.artifact import (
    MODEL_NAME,
    ArtifactError,
    ModelCard,
    default_model_dir,
    model_dir,
    read_card,
)
from livetrack.detection._folded import folded_network
from livetrack.detection._matched import with_matched
from livetrack.detection._refine import NARROW_PSF_PX, refine
from livetrack.detection._split import SPLIT_Z, split_merged
from livetrack.detection.detections import Detections as Detections
from livetrack.detection.detections import fit_snr
from livetrack.detection.normalise import background_slope, robust_normalise
from livetrack.detection.normalise import compile_now as compile_normalise
from livetrack.detection.precision import (
    _in_bfloat16,
    requested_precision,
    resolve_precision,
    resolve_xla,
)
from livetrack.detection.precision import native_bfloat16 as native_bfloat16
from livetrack.detection.precision import set_network_threads as set_network_threads
from livetrack.detection.readout import compile_now, read_peaks
from livetrack.detection.symmetry import centred_as_card
from livetrack.runtime import quiet_tensorflow_start

# The frame-wide PSF width is estimated once per block of SIGMA_EVERY frames, on the
# block's first frame (by frame index): live, offline, Dask and resumed runs agree.
SIGMA_EVERY = 8
# Spots narrower than this × the card's PSF (measured per block) are scored low by the
# network when faint: there a peak down to SECOND_THRESHOLD is kept if the matched filter
# for the block's width confirms it, which also adds the spots the network missed
# (detection/_matched.py; at SNR 2 and precision ≥ 0.98, recall at 0.75× PSF 0.76, the
# network alone 0.57; at 0.85–0.9× 0.88–0.90, alone 0.63–0.65); so too below
# NARROW_PSF_PX, whatever the card says (σ 1.05: recall 0.58, alone 0.42, bench adapt)
NARROW_PSF = 1.0
SECOND_THRESHOLD = 0.3
_log = logging.getLogger(__name__)


class Detector:
    """A detector artifact ready to run.

    Parameters
    ----------
    artifact
        Artifact directory; ``None`` for the default model shipped with livetrack.
    refine_positions
        Fit each detection by Poisson MLE (the card's ``refinement``); turn off for
        the network's own sub-pixel estimate.
    precision
        ``"auto"`` (:func:`resolve_precision`): on a CPU, int8 through ONNX Runtime
        where the model's architecture allows it, else bfloat16 where the CPU has
        it natively (AVX512-BF16 or AMX; weights stay float32), else float32.
        ``"float32"``, ``"bfloat16"`` or ``"int8"`` force one; the
        ``LIVETRACK_PRECISION`` variable overrides ``"auto"``. The chosen one is
        :attr:`precision`.
    split
        Look for particles hidden in a neighbour's fit (:mod:`._split`): more recall
        in dense frames, ~4–7 ms more read-out per 512² frame at 100 particles.
    split_region
        (x, y, radius) in pixels: look only there (even with ``split=False``), at a
        fraction of the cost — around the particle a controller follows.
    xla
        Run single frames through an XLA-compiled network (see :func:`resolve_xla`;
        ``None``: where it helps). The choice is :attr:`xla`.
    min_photons
        Drop fitted spots with fewer photons; ``None``: the card's ``min_photons``.
    """

    def __init__(
        self,
        artifact: str | Path | None = None,
        refine_positions: bool | None = None,
        precision: str = "auto",
        split: bool = True,
        split_region: tuple[float, float, float] | None = None,
        xla: bool | None = None,
        min_photons: float | None = None,
    ) -> None:
        #: the precision asked for (``LIVETRACK_PRECISION`` applied), e.g. "auto"
        self.asked_precision = requested_precision(precision)
        self.path = model_dir(artifact) if artifact is not None else default_model_dir()
        self.card: ModelCard = read_card(self.path)
        if self.card.outputs.kind != "detector":
            hint = {
                "lodestar": "livetrack process, serve and livetrack.locate take it",
                "localiser": "livetrack process --single takes it",
            }.get(self.card.outputs.kind, "see livetrack.holography.characterise")
            raise ArtifactError(
                f"{self.path}: a {self.card.outputs.kind!r} model, not a detector ({hint})"
            )
        model_file = self.path / MODEL_NAME
        if not model_file.is_file():
            raise ArtifactError(f"{self.path}: no {MODEL_NAME} in the artifact")
        quiet_tensorflow_start()
        import keras

        try:
            self.model = keras.saving.load_model(model_file, compile=False, safe_mode=True)
        except Exception as exc:  # keras raises many types for a bad file
            raise ArtifactError(
                f"{model_file}: cannot load the model: {type(exc).__name__}: {exc}"
            ) from None
        self.refine_positions = (
            self.card.outputs.refinement == "gaussian_mle"
            if refine_positions is None
            else refine_positions
        )
        #: residual z-score that splits a second particle from a fit (None: never)
        o = self.card.outputs
        lobe_z = SPLIT_Z if o.split_lobe_z is None else o.split_lobe_z
        self.split_z: float | None = lobe_z if split or split_region else None
        self.split_region = split_region
        #: fitted spots with fewer photons are dropped
        self.min_photons = o.min_photons if min_photons is None else float(min_photons)
        self.precision = resolve_precision(precision)
        call = None
        if self.precision == "int8":
            try:
                call = self._int8()
            except ArtifactError as exc:
                if self.asked_precision != "auto":
                    raise
                self.precision = resolve_precision(precision, int8=False)
                _log.info("%s; precision auto runs %s instead", exc, self.precision)
        if self.precision == "bfloat16":
            self.model = _in_bfloat16(self.model)
        self.xla = self.precision != "int8" and resolve_xla(xla, self.precision)
        self._call = call if call is not None else self._compile()
        self._frames = 0
        self._sigma: float | None = None
        self._sigma_block: int | None = None

    def _int8(self) -> Any:
        """The network in int8 through ONNX Runtime (quantised once per process)."""
        from livetrack.detection._int8 import cached_int8_network

        try:
            return cached_int8_network(
                self.model, self.path / MODEL_NAME, self.card.expects.psf_sigma_px
            )
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(f"{self.path}: {exc}") from None

    def _compile(self) -> Any:
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            spec = [tf.TensorSpec((None, None, None, 1), tf.float32)]
            graph = tf.function(
                lambda t: self.model(t, training=False),
                input_signature=spec,
                reduce_retracing=True,
            )
            if not self.xla:
                return lambda a: graph(a).numpy().astype(np.float32, copy=False)
            forward = folded_network(self.model) or (lambda t: self.model(t, training=False))
            compiled = tf.function(forward, input_signature=spec, jit_compile=True)

            def call(a: NDArray[np.float32]) -> NDArray[np.float32]:
                # a stack runs frame by frame through the same program: a frame gives
                # the same numbers live, in a movie chunk, a backlog or a resumed run
                outs = [compiled(a[i : i + 1]).numpy() for i in range(len(a))]
                return np.concatenate(outs).astype(np.float32, copy=False)

            return call
        return lambda a: np.asarray(self.model(a, training=False), np.float32)

    def _pad(self, image: NDArray[np.float32]) -> NDArray[np.float32]:
        m = self.card.expects.input_multiple
        h, w = image.shape
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            image = np.pad(image, ((0, ph), (0, pw)), mode="reflect")
        return image

    def _inputs(self, frames: NDArray[np.generic]) -> NDArray[np.float32]:
        """Normalised, padded network inputs (B, H, W, 1) for a stack of frames."""
        if len(frames) == 1:  # the live path: no stacking copy
            return self._pad(robust_normalise(frames[0]))[None, ..., None]
        return np.stack([self._pad(robust_normalise(f)) for f in frames])[..., None]

    def network(self, frames: NDArray[np.generic]) -> NDArray[np.float32]:
        """Raw network output for a stack (B, H, W) of frames."""
        out: NDArray[np.float32] = self._call(self._inputs(frames))
        return out

    def warm_up(self, shape: tuple[int, int] = (512, 512)) -> None:
        """Trace the network for frames of ``shape`` now, not on the first live frame.

        The first call of the compiled network traces it (~200 ms here): a service
        calls this at start-up so the first frames are not late. Detector state
        (frame count, PSF width) is untouched. The compiled read-out fit and
        normalisation are loaded (or compiled, once per machine: a few seconds) here too.
        """
        compile_normalise()
        self.network(np.zeros((1, *shape), np.uint16))
        compile_now()

    def reset(self) -> None:
        """Forget the stream (frame count, PSF width): the next frame starts a new one."""
        self._frames = 0
        self._sigma = None
        self._sigma_block = None

    #: ``detect``, ``detect_many`` and ``stage_readout`` take frame indices
    indexed = True

    def detect_many(
        self, frames: list[NDArray[np.generic]], indices: list[int] | None = None
    ) -> list[Detections]:
        """Several frames of one shape: the network runs once on the stack (a backlog).

        ``indices``: the frames' indices in their movie or stream (default: counting on).
        """
        if not frames:
            return []
        idx: list[int | None] = list(indices) if indices is not None else [None] * len(frames)
        shape = np.asarray(frames[0]).shape
        if any(np.asarray(f).shape != shape for f in frames):
            return [self.detect(f, index=i) for f, i in zip(frames, idx, strict=True)]
        t0 = time.perf_counter()
        imgs = self._inputs(np.stack([np.asarray(f) for f in frames]))
        t1 = time.perf_counter()
        outs = self._call(imgs)
        n = len(frames)  # the stack ran once: each frame carries its share of the time
        shared = {"normalise": (t1 - t0) * 1e3 / n, "model": (time.perf_counter() - t1) * 1e3 / n}
        return [
            self._read_out(np.asarray(f), outs[k], None, shared, idx[k])
            for k, f in enumerate(frames)
        ]

    def detect(
        self,
        frame: NDArray[np.generic],
        threshold: float | None = None,
        index: int | None = None,
    ) -> Detections:
        """Detect, localise and (optionally) refine every particle in one frame.

        ``index``: the frame's index in its movie or stream (default: counting on from
        the last one); it decides on which frames the PSF width is re-estimated.
        """
        out, timings = self.stage_network(frame)
        return self._read_out(np.asarray(frame), out, threshold, timings, index)

    def peaks(self, frame: NDArray[np.generic]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The network's peaks in one frame, unfitted: whatever the camera's offset and gain."""
        out, _ = self.stage_network(frame)
        o = self.card.outputs
        x, y, _ = read_peaks(out, o.threshold, o.stride, np.shape(frame))
        return x, y

    def needs_sigma_from(self, index: int) -> int | None:
        """The frame whose PSF width ``index`` should use, if this detector lacks it.

        Offline, a chunk that starts inside a block detects that block's first frame
        first (see :data:`SIGMA_EVERY`), so its result does not depend on where the
        chunk boundaries fall or which worker ran the chunk before.
        """
        block = index // SIGMA_EVERY
        if block == self._sigma_block or index % SIGMA_EVERY == 0:
            return None
        return block * SIGMA_EVERY

    def stage_network(
        self, frame: NDArray[np.generic]
    ) -> tuple[NDArray[np.float32], dict[str, float]]:
        """First half of :meth:`detect`: normalise and run the network (thread-safe)."""
        t0 = time.perf_counter()
        f = np.asarray(frame)
        if f.ndim != 2:
            raise ValueError(f"expected a 2-D frame, got shape {f.shape}")
        img = self._inputs(f[None])
        t1 = time.perf_counter()
        out = self._call(img)[0]
        return out, {"normalise": (t1 - t0) * 1e3, "model": (time.perf_counter() - t1) * 1e3}

    def stage_readout(
        self,
        frame: NDArray[np.generic],
        staged: tuple[NDArray[np.float32], dict[str, float]],
        index: int | None = None,
    ) -> Detections:
        """Second half of :meth:`detect`: peaks, refinement, significance cut."""
        out, timings = staged
        return self._read_out(np.asarray(frame), out, None, timings, index)

    def _second_tier(self, fit_sigma: bool, threshold: float | None) -> bool:
        """Whether this frame's block has spots so narrow that the network under-scores them.

        Decided from the block's PSF width, measured on its first frame (which itself
        is read as usual), so the result does not depend on the frames seen before.
        """
        if fit_sigma or threshold is not None or self._sigma is None:
            return False
        return self._sigma < max(NARROW_PSF * self.card.expects.psf_sigma_px, NARROW_PSF_PX)

    def _read_out(
        self,
        f: NDArray[np.generic],
        out: NDArray[np.float32],
        threshold: float | None,
        timings: dict[str, float],
        index: int | None = None,
    ) -> Detections:
        """Peaks, refinement and the significance cut for one frame's network output."""
        t2 = time.perf_counter()
        k = self._frames if index is None else int(index)
        block = k // SIGMA_EVERY
        thr = self.card.outputs.threshold if threshold is None else threshold
        e = self.card.expects
        sigma0, read, scale = e.psf_sigma_px, e.read_noise_photons, e.adu_per_photon
        # the PSF width changes slowly: estimate it once per block of frames, from
        # the card's width (not the last block's: the estimate is not converged to
        # the last digit, and must not depend on which frames this detector saw)
        fit_sigma = block != self._sigma_block
        second = self._second_tier(fit_sigma, threshold)
        x, y, score = read_peaks(out, min(thr, SECOND_THRESHOLD) if second else thr,
                                 self.card.outputs.stride, f.shape)  # fmt: skip
        matched = np.zeros(len(x), bool)
        if second:
            x, y, score, matched = with_matched(
                f, out, x, y, score, self.card.outputs.stride, float(self._sigma or sigma0),
                e.camera_offset_adu, scale, read,
            )  # fmt: skip
        if self.refine_positions and len(x):
            fit = refine(
                f, x, y, sigma0 if fit_sigma or self._sigma is None else self._sigma,
                read_noise=read, fit_sigma=fit_sigma, offset=e.camera_offset_adu, scale=scale,
                slope=background_slope(f, x, y),
            )  # fmt: skip
            if fit_sigma and len(fit.sigma):
                self._sigma = float(np.median(fit.sigma))
                self._sigma_block = block
                if self._second_tier(False, threshold):  # read again, as the block's others
                    return self._read_out(f, out, threshold, timings, k)
            ok = fit.converged
            x = np.where(ok, fit.x, x)
            y = np.where(ok, fit.y, y)
            # significance of each fitted spot, peak signal over its noise (ISBI SNR):
            # drops noise blobs the network took for faint particles
            snr = fit_snr(fit.photons, fit.background, float(np.median(fit.sigma)), read)
            keep = snr >= self.card.outputs.min_fit_snr
            if second:  # below the threshold, only peaks the matched filter confirms
                keep = (keep & (score >= thr)) | (matched & ok)
            x, y, score = x[keep], y[keep], score[keep]
            photons, background, sigma = fit.photons[keep], fit.background[keep], fit.sigma[keep]
            if self.split_z is not None:
                # live, around a followed particle, the lobe test alone (see split_merged)
                stretch = None if self.split_region else self.card.outputs.split_elongation
                x, y, score, photons, background, sigma = split_merged(
                    f, x, y, score, photons, background, sigma,
                    z_min=self.split_z, min_fit_snr=self.card.outputs.min_fit_snr,
                    elongation_min=stretch, read_noise=read, offset=e.camera_offset_adu,
                    scale=scale, region=self.split_region,
                )  # fmt: skip
            if self.min_photons > 0:
                keep = photons >= self.min_photons
                x, y, score = x[keep], y[keep], score[keep]
                photons, background, sigma = photons[keep], background[keep], sigma[keep]
        else:  # rings have no Gaussian to fit: centred on their symmetry if the card asks
            x, y, score = centred_as_card(f, x, y, score, self.card.outputs)
            photons = background = np.full(len(x), np.nan)
            sigma = np.full(len(x), sigma0)
        self._frames = k + 1
        t3 = time.perf_counter()
        return Detections(
            x, y, score, photons, background, sigma, {**timings, "readout": (t3 - t2) * 1e3}
        )
