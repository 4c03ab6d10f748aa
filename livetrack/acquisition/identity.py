"""Keep a controller on its own particle through encounters, by brightness.

When another particle passes close to the followed one, the two may merge into
one spot for a few frames and the linker can hand the followed track id to the
other particle (an identity swap). Position alone cannot tell them apart once
they separate — both diffuse alike — but their brightness often can: beads
differ by 10–30 % in photons, and the detector measures a lone spot's photons
to a few per cent.

Every track near the followed one gets a reference brightness, learnt only in
frames where it is *isolated* (no other detection within ``crowd_px``: a
neighbour's light biases the fit, and a merged spot reads double). When the
followed track comes within ``crowd_px`` of others, learning stops for it and
those partners. Once they are isolated again for ``window`` frames, two
hypotheses are weighed for each partner — the ids are where they were, or the
two swapped — by the Gaussian log-likelihood of the new mean photons of both
tracks under each. Only when "swapped" is ahead by ``min_log_odds`` does the
controller follow the partner's track, so look-alike particles (where brightness
cannot tell) never cause a switch.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

# relative photon scatter of a lone spot assumed before any is measured, and its floor
PRIOR_REL_SD = 0.05
FLOOR_REL_SD = 0.02
# a reference is a running mean, then an EMA over about this many frames
EMA_FRAMES = 39
# frames an undecided encounter waits for its partners' windows before deciding without them
MAX_WAIT = 25


# a track unseen for this many results is forgotten (the linker's memory is shorter)
KEEP_UNSEEN = 50


@dataclass
class _Track:
    reference: float = math.nan
    learnt: int = 0
    recent: deque[float] = field(default_factory=deque)
    unseen: int = 0


def _trade(a: _Track, b: _Track) -> None:
    """Two tracks' particles traded ids: so do their learnt references."""
    a.reference, b.reference = b.reference, a.reference
    a.learnt, b.learnt = b.learnt, a.learnt


@dataclass
class BrightnessIdentity:
    """Brightness bookkeeping for the tracks around one followed particle.

    Parameters
    ----------
    crowd_px
        A detection with another within this distance is not isolated: its photons
        are not used (about 6 PSF widths).
    watch_px
        Tracks within this distance of the followed one learn their brightness, so a
        particle that comes close is already known.
    window
        Isolated frames averaged after an encounter before deciding.
    min_log_odds
        How much more likely "swapped" must be than "not swapped" to switch.
    """

    crowd_px: float = 12.0
    watch_px: float = 48.0
    window: int = 4
    min_log_odds: float = 16.0
    rel_var: float = PRIOR_REL_SD**2
    switches: int = 0
    #: log-odds of "swapped" at the last decision (logged with a switch)
    last_log_odds: float = 0.0
    _tracks: dict[int, _Track] = field(default_factory=dict)
    _partners: set[int] = field(default_factory=set)
    _waited: int = 0

    def reference_of(self, track: int) -> float | None:
        """The learnt brightness of ``track`` (None before it has one)."""
        t = self._tracks.get(track)
        return None if t is None or not math.isfinite(t.reference) else t.reference

    def continued(self, old: int, new: int) -> None:
        """The controller now follows track ``new`` as the particle of track ``old``.

        Either the linker restarted the particle under a new id, or, in an encounter,
        a partner's track took over where ours vanished: the two traded ids, so they
        trade references (a partner keeps its place in the undecided encounter, and
        the decision can still undo the move).
        """
        old, new = int(old), int(new)
        a = self._tracks.get(old)
        if a is None or old == new:
            return
        _trade(a, self._tracks.setdefault(new, self._new_track()))
        if new in self._partners:
            self._partners.discard(new)
            self._partners.add(old)

    def check(self, followed: int, ids: np.ndarray, xy: np.ndarray, photons: np.ndarray) -> int:
        """The row to follow after this frame: ``followed``, or a partner it swapped with.

        Parameters
        ----------
        followed
            Row of the followed track in ``ids`` / ``xy`` / ``photons``.
        ids, xy, photons
            This frame's track ids, positions (px, N × 2) and photons (NaN: unknown).
        """
        fx, fy = xy[followed]
        watched = np.flatnonzero(np.hypot(xy[:, 0] - fx, xy[:, 1] - fy) <= self.watch_px)
        sub = xy[watched]
        gap = np.hypot(sub[:, None, 0] - xy[None, :, 0], sub[:, None, 1] - xy[None, :, 1])
        gap[np.arange(len(watched)), watched] = np.inf
        isolated = gap.min(axis=1) > self.crowd_px
        me = int(ids[followed])
        crowd = {int(ids[j]) for j in np.flatnonzero(gap[watched == followed][0] <= self.crowd_px)}
        if crowd:  # an encounter: whoever comes close is a partner until it is decided
            self._partners |= crowd
            self._waited = 0
        frozen = self._partners | {me} if self._partners else set()
        tracks: dict[int, _Track] = {}
        for row, alone in zip(watched.tolist(), isolated.tolist(), strict=True):
            tid = int(ids[row])
            t = self._tracks.get(tid) or self._new_track()
            t.unseen = 0
            tracks[tid] = t
            p = float(photons[row])
            if not alone or not math.isfinite(p) or p <= 0:
                t.recent.clear()  # a crowded or unmeasured frame breaks the run
                continue
            t.recent.append(p)
            if tid not in frozen:
                self._learn(t, p)
        for tid, t in self._tracks.items():  # missed or out of reach for a while: kept
            if tid not in tracks and (t.unseen < KEEP_UNSEEN or tid in self._partners):
                t.unseen += 1
                t.recent.clear()
                tracks[tid] = t
        self._tracks = tracks
        if not self._partners or crowd:
            return followed
        return self._decide(followed, me, ids)

    # -- internals ------------------------------------------------------------------

    def _new_track(self) -> _Track:
        return _Track(recent=deque(maxlen=self.window))

    def _ready(self, t: _Track | None) -> bool:
        return t is not None and len(t.recent) >= self.window

    def _var(self, t: _Track) -> float:
        """Variance of (window mean − reference) for this track."""
        rel = max(self.rel_var, FLOOR_REL_SD**2)
        return t.reference**2 * rel * (1.0 / self.window + 1.0 / min(max(t.learnt, 1), EMA_FRAMES))

    def _decide(self, followed: int, me: int, ids: np.ndarray) -> int:
        own = self._tracks.get(me)
        if own is None or len(own.recent) < self.window:
            return followed
        ready = [p for p in self._partners if self._ready(self._tracks.get(p))]
        # a partner not in this frame (its track ended, or it is missed) cannot be
        # waited for: meanwhile the evidence on the others would go stale
        here = {int(i) for i in ids}
        alive = [p for p in self._partners if p in here]
        self._waited += 1
        if len(ready) < len(alive) and self._waited < MAX_WAIT:
            return followed  # wait for the partners' windows
        best, best_odds = -1, 0.0
        if math.isfinite(own.reference):
            m_own = float(np.mean(own.recent))
            for pid in ready:
                other = self._tracks[pid]
                m_other = float(np.mean(other.recent))
                v_own = self._var(own)
                if math.isfinite(other.reference):
                    v_other = self._var(other)
                    same = (m_own - own.reference) ** 2 / v_own + (
                        m_other - other.reference
                    ) ** 2 / v_other
                    swapped = (m_own - other.reference) ** 2 / v_other + (
                        m_other - own.reference
                    ) ** 2 / v_own
                    odds = 0.5 * (same - swapped)  # log P(swapped) / P(same)
                else:  # a partner first seen in the encounter: only ours is known
                    z_other = (m_other - own.reference) ** 2 / v_own
                    same = (m_own - own.reference) ** 2 / v_own
                    # it must look like ours, and ours must not, by twice the margin
                    odds = 0.5 * (same - z_other) / 2 if z_other <= 4.0 else 0.0
                if odds > best_odds:
                    best, best_odds = pid, odds
        self._partners.clear()
        self._waited = 0
        self.last_log_odds = best_odds
        if best < 0 or best_odds < self.min_log_odds:
            return followed
        rows = np.flatnonzero(ids == best)
        if len(rows) == 0:
            return followed
        # the particles traded ids: so do their references
        _trade(self._tracks[me], self._tracks[best])
        self.switches += 1
        return int(rows[0])

    def _learn(self, t: _Track, p: float) -> None:
        if not math.isfinite(t.reference):
            if len(t.recent) >= self.window:  # the first reference: a window's mean
                t.reference = float(np.mean(t.recent))
                t.learnt = self.window
            return
        rel = (p - t.reference) / t.reference
        t.learnt += 1
        a = max(2.0 / (EMA_FRAMES + 1), 1.0 / t.learnt)
        t.reference = (1 - a) * t.reference + a * p
        # the photon scatter of a lone spot, from every watched track
        self.rel_var = 0.98 * self.rel_var + 0.02 * rel * rel
