"""The streaming linker: one frame of detections in, track ids out, immediately."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

from livetrack.linking._assign import assign, compile_now
from livetrack.linking._config import LinkingConfig

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

_EMPTY_I = np.zeros(0, np.int64)


@dataclass(frozen=True, slots=True)
class LinkStep:
    """The linker's answer for one frame.

    Attributes
    ----------
    seq
        The frame's sequence number.
    particle
        Track id of each detection, in the order the detections were given.
    started
        Ids of tracks that began in this frame.
    ended
        Ids of tracks that ended at this frame (missed for more than ``memory``
        observed frames), with ``ended_last_seq`` the last frame each was seen in.
    fallbacks
        Ambiguous groups larger than ``max_subnet`` that were linked greedily.
    """

    seq: int
    particle: IntArray
    started: IntArray
    ended: IntArray
    ended_last_seq: IntArray
    fallbacks: int = 0


@dataclass
class LinkerStats:
    """Running totals (all counts since the last reset)."""

    frames: int = 0
    links: int = 0
    tracks_started: int = 0
    tracks_ended: int = 0
    fallbacks: int = 0
    largest_subnet: int = 0


@dataclass
class _Tracks:
    """Active tracks as parallel arrays (bounded: ended tracks are dropped)."""

    ids: IntArray = field(default_factory=lambda: _EMPTY_I.copy())
    x: FloatArray = field(default_factory=lambda: np.zeros(0))
    y: FloatArray = field(default_factory=lambda: np.zeros(0))
    vx: FloatArray = field(default_factory=lambda: np.zeros(0))
    vy: FloatArray = field(default_factory=lambda: np.zeros(0))
    last_seq: IntArray = field(default_factory=lambda: _EMPTY_I.copy())
    missed: IntArray = field(default_factory=lambda: _EMPTY_I.copy())
    length: IntArray = field(default_factory=lambda: _EMPTY_I.copy())
    photons: FloatArray = field(default_factory=lambda: np.zeros(0))  # smoothed; NaN: unknown

    def take(self, keep: NDArray[np.bool_] | IntArray) -> _Tracks:
        return _Tracks(*(getattr(self, n)[keep] for n in _FIELDS))

    def extend(self, other: _Tracks) -> _Tracks:
        return _Tracks(*(np.concatenate([getattr(self, n), getattr(other, n)]) for n in _FIELDS))


_FIELDS = ("ids", "x", "y", "vx", "vy", "last_seq", "missed", "length", "photons")
# a track's brightness follows its detections slowly, and ignores a jump beyond this
# factor (two particles fitted as one for a frame): that is what the penalty is for
_BRIGHTNESS_SMOOTHING = 0.3
_BRIGHTNESS_JUMP = 1.6


class OnlineLinker:
    """Links detections frame by frame; ids are stable and never reused.

    Parameters
    ----------
    config
        Linking parameters.
    first_id
        The first track id to hand out (to continue numbering after a restart).

    Examples
    --------
    >>> linker = OnlineLinker(LinkingConfig(search_range_px=5))
    >>> linker.link(0, [10.0, 50.0], [10.0, 50.0]).particle.tolist()
    [0, 1]
    >>> linker.link(1, [51.0, 11.0], [49.0, 10.5]).particle.tolist()
    [1, 0]
    """

    def __init__(self, config: LinkingConfig | None = None, first_id: int = 0) -> None:
        compile_now()  # at start-up, not inside the first live frame
        self.config = config or LinkingConfig()
        self._next_id = first_id
        self._tracks = _Tracks()
        self._last_seq: int | None = None
        self._drift = np.zeros(2)
        self.stats = LinkerStats()

    def reset(self) -> IntArray:
        """Forget every active track (ids keep counting up). Returns the ids ended."""
        ended = self._tracks.ids.copy()
        self._tracks = _Tracks()
        self._last_seq = None
        self._drift = np.zeros(2)
        self.stats = LinkerStats()
        return ended

    @property
    def active(self) -> int:
        """Number of tracks currently alive (including those in memory)."""
        return len(self._tracks.ids)

    def track_ids(self) -> set[int]:
        """The ids of the tracks alive now (including those in memory)."""
        return {int(i) for i in self._tracks.ids}

    def _predict(self, seq: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        t = self._tracks
        cfg = self.config
        dt = (seq - t.last_seq).astype(np.float64)
        if cfg.predictor == "velocity":
            # a track seen once has no velocity yet: use the population's drift
            fresh = t.length == 1
            vx = np.where(fresh, self._drift[0], t.vx)
            vy = np.where(fresh, self._drift[1], t.vy)
            px, py = t.x + vx * dt, t.y + vy * dt
        elif cfg.predictor == "drift":
            px, py = t.x + self._drift[0] * dt, t.y + self._drift[1] * dt
        else:
            px, py = t.x, t.y
        radius = cfg.search_range_px * (
            np.sqrt(dt) if cfg.grow_search_with_gap else np.ones_like(dt)
        )
        return px, py, radius

    def link(
        self,
        seq: int,
        x: ArrayLike,
        y: ArrayLike,
        photons: ArrayLike | None = None,
    ) -> LinkStep:
        """Link one frame's detections (pixels) to the active tracks.

        Parameters
        ----------
        seq
            Frame sequence number; must increase. Gaps (skipped frames) are allowed.
        x, y
            Detection positions in pixels (trackpy convention).
        photons
            Each detection's brightness (any unit; NaN where unknown): tracks whose
            brightness matches are preferred where they compete (see
            ``LinkingConfig.brightness_penalty``).

        Raises
        ------
        ValueError
            If ``seq`` does not increase or x and y differ in length.
        """
        xa, ya, fa = self._inputs(seq, x, y, photons)
        cfg = self.config
        t = self._tracks
        n_t, n_d = len(t.ids), len(xa)
        particle = np.full(n_d, -1, np.int64)
        mt, md, fallbacks = self._match(seq, xa, ya, fa) if n_t and n_d else (_EMPTY_I, _EMPTY_I, 0)
        if len(mt):
            particle[md] = t.ids[mt]
            self._update_linked(mt, xa[md], ya[md], fa[md], seq)
        # tracks that were not linked
        linked = np.zeros(n_t, bool)
        linked[mt] = True
        t.missed[~linked] += 1
        gone = t.missed > cfg.memory
        ended, ended_last = t.ids[gone], t.last_seq[gone]
        t = t.take(~gone) if gone.any() else t
        # detections that were not linked start new tracks
        new = np.flatnonzero(particle < 0)
        started = np.arange(self._next_id, self._next_id + len(new), dtype=np.int64)
        self._next_id += len(new)
        particle[new] = started
        if len(new):
            n = len(new)
            z = np.zeros(n)
            fresh = _Tracks(
                started, xa[new], ya[new], z, z.copy(), np.full(n, seq, np.int64),
                np.zeros(n, np.int64), np.ones(n, np.int64), fa[new],
            )  # fmt: skip
            t = t.extend(fresh)
        self._tracks = t
        self._last_seq = seq
        s = self.stats
        s.frames += 1
        s.links += len(mt)
        s.tracks_started += len(new)
        s.tracks_ended += len(ended)
        s.fallbacks += fallbacks
        return LinkStep(seq, particle, started, ended, ended_last, fallbacks)

    def _inputs(
        self, seq: int, x: ArrayLike, y: ArrayLike, photons: ArrayLike | None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The detections as flat float arrays, checked; photons NaN where not given."""
        xa = np.ascontiguousarray(x, dtype=np.float64).ravel()
        ya = np.ascontiguousarray(y, dtype=np.float64).ravel()
        if xa.shape != ya.shape:
            raise ValueError(f"x and y differ in length ({len(xa)} vs {len(ya)})")
        fa = (
            np.full(len(xa), np.nan)
            if photons is None
            else np.ascontiguousarray(photons, dtype=np.float64).ravel()
        )
        if fa.shape != xa.shape:
            raise ValueError(f"photons and x differ in length ({len(fa)} vs {len(xa)})")
        if self._last_seq is not None and seq <= self._last_seq:
            raise ValueError(f"frame seq {seq} does not follow the previous frame {self._last_seq}")
        return xa, ya, fa

    def _match(
        self, seq: int, xa: FloatArray, ya: FloatArray, fa: FloatArray
    ) -> tuple[IntArray, IntArray, int]:
        """Which track takes which detection: (track rows, detection rows, greedy fallbacks)."""
        cfg = self.config
        t = self._tracks
        n_t, n_d = len(t.ids), len(xa)
        px, py, radius = self._predict(seq)
        k = min(cfg.max_candidates, n_d)
        tree = cKDTree(np.column_stack([xa, ya]))
        dist, idx = tree.query(
            np.column_stack([px, py]),
            k=k,
            distance_upper_bound=float(radius.max()) * (1 + 1e-9),
        )
        dist = dist.reshape(n_t, k)
        idx = idx.reshape(n_t, k)
        ok = dist <= radius[:, None]
        ti = np.nonzero(ok)[0].astype(np.int64)
        dj = idx[ok].astype(np.int64)
        # Costs in units of each track's own spread: a track missed for a while
        # searches wider (√gap), but scored in raw px² it would outbid a live
        # track for that track's own detection, as leaving it unlinked (R² gap)
        # costs more. Each track then alternated between two ids for one particle.
        # The log-gap term is the rest of the Gaussian's likelihood: with tracks
        # kept ten frames, the scaled cost alone lets a long-missed track, whose
        # search is √10 wider, take detections from live tracks.
        spread = (radius / cfg.search_range_px) ** 2
        d2 = dist[ok] ** 2 / spread[ti]
        r2 = np.full(n_t, cfg.search_range_px**2)
        if cfg.brightness_penalty > 0:
            d2 = self._penalise(d2, t.photons[ti], fa[dj], r2[ti])
        if cfg.gap_penalty > 0:
            d2 = d2 + cfg.gap_penalty * r2[ti] * np.log(spread[ti])
        result = assign(ti, dj, d2, r2, n_t, n_d, cfg.max_subnet)
        self.stats.largest_subnet = max(self.stats.largest_subnet, result.largest_subnet)
        return result.track, result.detection, result.fallbacks

    def _update_linked(
        self, mt: IntArray, x: FloatArray, y: FloatArray, f_new: FloatArray, seq: int
    ) -> None:
        """Move the linked tracks to their detections; update velocity, drift, brightness."""
        t = self._tracks
        cfg = self.config
        dt = (seq - t.last_seq[mt]).astype(np.float64)
        dx = (x - t.x[mt]) / dt
        dy = (y - t.y[mt]) / dt
        a = cfg.velocity_smoothing
        first = t.length[mt] == 1
        t.vx[mt] = np.where(first, dx, a * dx + (1 - a) * t.vx[mt])
        t.vy[mt] = np.where(first, dy, a * dy + (1 - a) * t.vy[mt])
        if cfg.predictor != "none" and len(mt) >= 3:
            step = np.array([np.median(dx), np.median(dy)])
            self._drift = a * step + (1 - a) * self._drift
        t.x[mt] = x
        t.y[mt] = y
        f_old = t.photons[mt]
        jump = np.abs(np.log(np.maximum(f_new, 1e-9) / np.maximum(f_old, 1e-9)))
        smooth = f_old + _BRIGHTNESS_SMOOTHING * (f_new - f_old)
        upd = np.where(jump <= np.log(_BRIGHTNESS_JUMP), smooth, f_old)
        t.photons[mt] = np.where(np.isnan(f_old), f_new, np.where(np.isnan(f_new), f_old, upd))
        t.last_seq[mt] = seq
        t.missed[mt] = 0
        t.length[mt] += 1

    def _penalise(
        self, d2: FloatArray, f_track: FloatArray, f_det: FloatArray, r2: FloatArray
    ) -> FloatArray:
        """TrackMate-style brightness penalty on squared link lengths (NaN: none)."""
        rel = np.abs(f_track - f_det) / np.maximum(f_track + f_det, 1e-9)
        pen = 1.0 + 3.0 * self.config.brightness_penalty * np.nan_to_num(rel, nan=0.0)
        # never above leaving the track unlinked (R²): brightness only breaks ties
        out: FloatArray = np.minimum(d2 * pen * pen, np.maximum(d2, 0.999 * r2))
        return out

    def flush(self) -> tuple[IntArray, IntArray]:
        """End every active track (end of stream). Returns (ids, last seq seen)."""
        ids, last = self._tracks.ids.copy(), self._tracks.last_seq.copy()
        self.stats.tracks_ended += len(ids)
        self._tracks = _Tracks()
        return ids, last


def link_table(
    table: pd.DataFrame,
    config: LinkingConfig | None = None,
    frame_column: str = "frame",
    pos_columns: tuple[str, str] = ("x", "y"),
) -> pd.DataFrame:
    """Link a whole detection table offline, frame by frame, with :class:`OnlineLinker`.

    The result is exactly what streaming the same frames gives (a ``photons`` column,
    when there is one, takes part as in :meth:`OnlineLinker.link`). Returns a copy with
    a ``particle`` column, ready for ``trackpy.msd`` / ``emsd`` / ``compute_drift``.
    """
    linker = OnlineLinker(config)
    out = table.sort_values(frame_column, kind="stable").reset_index(drop=True)
    particle = np.empty(len(out), np.int64)
    frames = out[frame_column].to_numpy()
    xs = out[pos_columns[0]].to_numpy(np.float64)
    ys = out[pos_columns[1]].to_numpy(np.float64)
    fs = out["photons"].to_numpy(np.float64) if "photons" in out else np.full(len(out), np.nan)
    bounds = np.flatnonzero(np.diff(frames)) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [len(out)]])
    for a, b in zip(starts, stops, strict=True):
        if b > a:
            step = linker.link(int(frames[a]), xs[a:b], ys[a:b], fs[a:b])
            particle[a:b] = step.particle
    out["particle"] = particle
    return out
