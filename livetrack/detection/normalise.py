"""Frame normalisation shared by training and inference (the card names it)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray


def sub_sample(frame: NDArray[np.generic], max_samples: int = 16384) -> tuple[NDArray[Any], int]:
    """A regular sub-sample of ``frame`` of at most ~``max_samples`` pixels, and its step.

    ~16 000 pixels give a frame's level and spread to ~1 % of its noise; more only cost
    time (a median of a 512² frame: 3 ms).
    """
    f = np.asarray(frame)
    step = max(1, int(np.sqrt(f.size / max_samples)))
    return f[::step, ::step], step


def robust_normalise(
    frame: NDArray[np.generic], max_samples: int = 16384, compress: bool = True
) -> NDArray[np.float32]:
    """asinh((frame − median) / scale), with median and scale from a regular sub-sample.

    ``scale`` is 1.4826 × MAD, floored by the standard deviation of the lower 80 %
    of the sample (integer frames with little background can have MAD = 0). Makes
    the network independent of camera offset, gain and background level. The
    asinh keeps the noise floor linear and compresses bright spots logarithmically,
    so 100 and 30 000 photons both sit in a range a small network handles.
    """
    f = np.asarray(frame)
    sub, step = sub_sample(f, max_samples)
    sub = sub.astype(np.float32)
    med, scale = _level_and_scale(sub.ravel())
    ramp = _background_ramp(sub, step, f.shape, scale) if f.ndim == 2 else None
    if ramp is not None:  # a gradient of several noise σ: flattened, then measured again
        sub_map, full_map = ramp
        med, scale = _level_and_scale((sub - sub_map).ravel())
        flat = f.astype(np.float32)
        flat -= full_map
        return _transform(flat, med, scale, compress)
    table = _lookup_table(f, med, scale, compress)
    if table is not None:  # one gather per pixel: the same numbers, ~1 ms sooner
        lo, values = table
        out: NDArray[np.float32] = _take_levels(f.reshape(-1), lo, values)
        return out.reshape(f.shape)
    return _transform(f.astype(np.float32), med, scale, compress)


def _level_and_scale(sample: NDArray[np.float32]) -> tuple[float, float]:
    """The median, and 1.4826 × MAD floored by the std of the lower 80 % (see above)."""
    sample = sample.copy()  # partitioned in place below
    med, p80 = _median_and_p80(sample)
    mad, _ = _median_and_p80(np.abs(sample - np.float32(med)), p80=False)
    low = sample[sample <= p80]
    return med, max(1.4826 * mad, float(low.std()) if low.size else 0.0, 1e-3)


#: background blocks (px of the frame): wider than any spot, narrower than an
#: illumination gradient; a training crop (64 px) is one block, so never flattened
BLOCK_PX = 64
#: the most blocks per side (a large frame's blocks grow instead)
MAX_BLOCKS = 16
#: flatten where the block medians span this many noise σ (a flat frame's span
#: by chance, 64 blocks of 64 samples: ~0.75 σ)
FLATTEN_SPAN = 1.5


def _background_ramp(
    sub: NDArray[np.float32],
    step: int,
    shape: tuple[int, ...],
    scale: float,
    span: float = FLATTEN_SPAN,
    block_px: int = BLOCK_PX,
    max_blocks: int = MAX_BLOCKS,
    thin: bool = True,
) -> tuple[NDArray[np.float32], NDArray[np.float32]] | None:
    """The frame's slowly varying background (bilinear through block medians), zero-mean.

    Uneven illumination puts one side of a frame several noise σ above the median the
    network is fed relative to, and faint particles there below its threshold. Returns
    the map on the sub-sample and on the frame, or None where the background is flat
    (to within ``span`` σ, :data:`FLATTEN_SPAN` unless given) or the frame holds
    fewer than 2 × 2 blocks.
    """
    got = _block_medians(sub, step, shape, block_px, max_blocks, thin)
    if got is None:
        return None
    medians, by, bx, _ = got
    h, w = shape
    nby, nbx = medians.shape
    if float(medians.max() - medians.min()) < span * scale:
        return None
    medians -= np.float32(np.median(medians))
    # bilinear through the blocks' centres (frame pixels), flat beyond the outer ones:
    # along x by a small matrix, then each row mixes two of those rows
    rows = medians @ _interpolation(w, nbx, bx).T  # (nby, w)
    lo, t = _neighbours(h, nby, by)
    full = rows[lo] * (1 - t)[:, None]
    full += rows[np.minimum(lo + 1, nby - 1)] * t[:, None]
    return full[::step, ::step], full


def without_ramp(frame: NDArray[np.float64]) -> NDArray[np.float64]:
    """The frame less its slowly varying background where that ramps (as the network's input)."""
    sub, step = sub_sample(frame)
    sub = sub.astype(np.float32)
    ramp = _background_ramp(sub, step, frame.shape, _level_and_scale(sub.ravel())[1])
    if ramp is None:
        return frame
    out: NDArray[np.float64] = frame - ramp[1]
    return out


def _block_medians(
    sub: NDArray[np.float32],
    step: int,
    shape: tuple[int, ...],
    block_px: int = BLOCK_PX,
    max_blocks: int = MAX_BLOCKS,
    thin: bool = True,
) -> tuple[NDArray[np.float32], int, int, NDArray[np.float32]] | None:
    """Each background block's median (from the sub-sample), a block's sides in frame px.

    And the samples each median was taken over, (blocks y, blocks x, samples). None
    where the frame holds fewer than 2 × 2 blocks.
    """
    h, w = shape
    block = max(block_px, -(-max(h, w) // max_blocks))
    b = max(1, block // step)  # a block's side in the sub-sample
    nby, nbx = sub.shape[0] // b, sub.shape[1] // b
    if nby < 2 and nbx < 2:
        return None
    nby, nbx = max(nby, 1), max(nbx, 1)
    by, bx = min(b, sub.shape[0]), min(b, sub.shape[1])
    blocks = sub[: nby * by, : nbx * bx].reshape(nby, by, nbx, bx).swapaxes(1, 2)
    # every other sample of a block is enough for its median (a quarter of the time)
    coarse = blocks[:, :, ::2, ::2] if thin and by >= 8 and bx >= 8 else blocks
    samples = coarse.reshape(nby, nbx, -1)
    medians = np.median(samples, axis=2).astype(np.float32)
    return medians, by * step, bx * step, samples


def background_slope(
    frame: NDArray[np.generic], x: NDArray[np.float64], y: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """The background's slope under each position (frame units per px, along x and y).

    From a quadric fitted to the medians of the same blocks as the network input's
    flattening; None where those span less than :data:`FLATTEN_SPAN` noise σ (the
    noise from each block's spread about its own median). A spot's fit on a constant
    background is pulled up the slope: a 0.6 e/px ramp under a spot of σ 3.3 px put
    its RMS error at 1.4 × the CRLB.
    """
    f = np.asarray(frame)
    if f.ndim != 2:
        return None
    sub, step = sub_sample(f)
    got = _block_medians(sub.astype(np.float32), step, f.shape)
    if got is None:
        return None
    medians, by, bx, samples = got
    # the noise from the samples' spread about their own block's median (a ramp
    # does not widen it); the frame's overall spread, which it does, costs 3× more
    scale = 1.4826 * float(np.median(np.abs(samples - medians[:, :, None])))
    if scale < 1.0:  # counts of a few ADU: the MAD is quantised, often 0
        scale = max(scale, _level_and_scale(sub.astype(np.float32).ravel())[1])
    if float(medians.max() - medians.min()) < FLATTEN_SPAN * scale:
        return None
    # a quadric through the block medians: illumination is smooth, and one block's
    # median is too noisy for a slope (±0.15 e/px between neighbours at 1000 e)
    ny, nx = medians.shape
    cy, cx = np.mgrid[:ny, :nx].astype(np.float64)
    u, v = ((cx + 0.5) * bx) / f.shape[1] - 0.5, ((cy + 0.5) * by) / f.shape[0] - 0.5
    zero = np.zeros_like(u)
    # terms a row or column of blocks cannot tell apart from the constant are left out
    terms = [np.ones_like(u), u if nx > 1 else zero, v if ny > 1 else zero,
             u * u if nx > 2 else zero, u * v if nx > 1 and ny > 1 else zero,
             v * v if ny > 2 else zero]  # fmt: skip
    a = np.stack([t.ravel() for t in terms], 1)
    c, *_ = np.linalg.lstsq(a, medians.ravel().astype(np.float64), rcond=None)
    pu, pv = (np.asarray(x) + 0.5) / f.shape[1] - 0.5, (np.asarray(y) + 0.5) / f.shape[0] - 0.5
    gx = (c[1] + 2 * c[3] * pu + c[4] * pv) / f.shape[1]
    gy = (c[2] + c[4] * pu + 2 * c[5] * pv) / f.shape[0]
    return gx, gy


def _neighbours(n: int, blocks: int, side: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """For each of ``n`` positions: the block centre below it and the weight of the next."""
    pos = (np.arange(n, dtype=np.float64) + 0.5) / side - 0.5
    pos = np.clip(pos, 0, blocks - 1)
    lo = np.minimum(pos.astype(np.intp), max(blocks - 2, 0))
    return lo, (pos - lo).astype(np.float32)


def _interpolation(n: int, blocks: int, side: int) -> NDArray[np.float32]:
    """(n, blocks) weights: linear interpolation between block centres along one axis."""
    lo, t = _neighbours(n, blocks, side)
    out = np.zeros((n, blocks), np.float32)
    out[np.arange(n), lo] = 1 - t
    out[np.arange(n), np.minimum(lo + 1, blocks - 1)] += t
    return out


@njit(cache=True, nogil=True)
def _take_levels(levels, lo, values):  # type: ignore[no-untyped-def]
    """``values[levels - lo]`` in one compiled pass (offsets in int64: nothing wraps).

    ``np.take`` first widens the uint16 offsets to a new int64 array, then gathers:
    0.22 ms per 512² frame against ~0.1 ms here, in the service's overhead.
    """
    out = np.empty(levels.shape[0], np.float32)
    for i in range(levels.shape[0]):
        out[i] = values[np.int64(levels[i]) - lo]
    return out


def compile_now() -> None:
    """Load (or compile, once per machine) the gather for 8- and 16-bit cameras."""
    for dtype in (np.uint8, np.uint16):
        robust_normalise(np.zeros((4, 4), dtype))


def _transform(
    values: NDArray[np.float32], med: float, scale: float, compress: bool
) -> NDArray[np.float32]:
    values -= np.float32(med)
    values *= np.float32(1.0 / scale)
    if compress:
        fast_arcsinh(values)
    return values


_TABLE_MAX = 1 << 16


def _lookup_table(
    f: NDArray[np.generic], med: float, scale: float, compress: bool
) -> tuple[int, NDArray[np.float32]] | None:
    """For an integer frame: the normalised value of every level from its min to max.

    A camera frame holds at most 65 536 distinct levels, usually a few thousand,
    so transforming the levels instead of the pixels gives the same float32
    numbers in a fraction of the time. None for float frames or a wider range.
    """
    if f.dtype.kind not in "ui" or f.size == 0:
        return None
    lo, hi = int(f.min()), int(f.max())
    if hi - lo >= _TABLE_MAX or hi - lo > f.size:
        return None
    levels = np.arange(lo, hi + 1, dtype=np.int64).astype(np.float32)
    return lo, _transform(levels, med, scale, compress)


def fast_arcsinh(a: NDArray[np.float32]) -> NDArray[np.float32]:
    """``np.arcsinh(a, out=a)`` as sign(a)·log(|a| + √(a² + 1)), in place.

    NumPy's float32 arcsinh is scalar libm on CPUs without AVX-512 (7 ms for a 512²
    frame of camera noise here, data-dependent); log and sqrt are vectorised
    (1 ms). Absolute error < 1.5e-7 for |a| < 1, relative error < 2e-7 above
    (float32 rounding; tests/test_normalise.py).
    """
    mag = np.abs(a)
    huge = mag.size > 0 and not float(mag.max()) <= _SQUARE_MAX  # (NaN too)
    if huge:  # a² would overflow: there asinh|a| = log 2|a| to float32 precision
        big = mag > _SQUARE_MAX
        far = np.log(np.float32(2.0) * mag[big].astype(np.float64)).astype(np.float32)
        mag[big] = 0.0
    t = np.multiply(mag, mag)
    t += np.float32(1.0)
    np.sqrt(t, out=t)
    t += mag
    np.log(t, out=t)
    if huge:
        t[big] = far
    np.copysign(t, a, out=a)
    return a


_SQUARE_MAX = 1e18  # float32 squares overflow above ~1.8e19


def _median_and_p80(a: NDArray[np.float32], p80: bool = True) -> tuple[float, float]:
    """``np.median(a)`` and ``np.percentile(a, 80)`` exactly, from one partition.

    Three separate numpy calls cost ~0.6 ms per frame (each partitions a copy);
    this is the service's largest per-frame overhead outside the model.
    """
    n = a.size
    h = n // 2
    r = 0.8 * (n - 1)  # numpy's default (linear) percentile position
    j = int(r)
    kth = [h - 1, h] if n % 2 == 0 else [h]
    if p80:
        kth += [j, min(j + 1, n - 1)]
    a.partition(sorted(set(kth)))  # in place: ``a`` is ours
    med = float((a[h - 1] + a[h]) / 2) if n % 2 == 0 else float(a[h])
    if not p80:
        return med, med
    lo, hi = float(a[j]), float(a[min(j + 1, n - 1)])
    return med, lo + (r - j) * (hi - lo)


def normalise_hologram(
    crop: NDArray[np.generic], downsample: int, offset_adu: float = 0.0
) -> NDArray[np.float32]:
    """``I / I₀ − 1`` with ``I₀`` the crop's median, block-averaged by ``downsample``."""
    f = np.asarray(crop, np.float32) - np.float32(offset_adu)
    background = float(np.median(f))
    if background <= 0:
        background = max(float(np.mean(np.abs(f))), 1.0)
    img = f / np.float32(background) - np.float32(1.0)
    if downsample > 1:
        h, w = img.shape
        img = img[: h - h % downsample, : w - w % downsample]
        img = img.reshape(h // downsample, downsample, w // downsample, downsample).mean((1, 3))
    return img.astype(np.float32)
