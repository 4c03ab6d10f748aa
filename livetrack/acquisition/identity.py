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
cannot tell) never cause a switch. A close call is not settled on ``window``
frames: the evidence keeps growing, frame by frame, for up to ``max_window``.

Two spots merged into one also look isolated, so a reading far brighter than
its reference (``MERGED_REL``) is not learnt unless it persists
(``RELEARN_FRAMES``). A switch also needs "swapped" to fit both tracks
(``SWAP_FIT_Z2``): a stale reference makes "same" fit badly without making
"swapped" right.
And when the followed track ends and the controller picks another by position
(:meth:`BrightnessIdentity.handed_over`), the pick inherits the reference and the
other tracks where the particle was last seen become partners: brightness can
still correct a wrong pick.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

# relative photon scatter of a lone spot assumed before any is measured, and its floor
PRIOR_REL_SD = 0.05
FLOOR_REL_SD = 0.02
# a reference is a running mean, then an EMA over about this many frames
EMA_FRAMES = 39
# a lone reading this much brighter than its reference is not learnt: two spots merged
# into one read as one bright "isolated" spot (1 + the other's share: > 1.6 for beads
# within ±20 %). A dimmer or mildly brighter reading is learnt: after a swap between
# two other tracks their references must follow their new particles
MERGED_REL = 0.4
# ...unless the track reads that bright for this many isolated frames in a row (~1.6 s
# at 50 frames/s): then the particle's brightness has changed, and it is learnt afresh
RELEARN_FRAMES = 80
# a switch needs "swapped" to fit both tracks, too (z² per track): when one reference is
# stale, "same" fits badly, and "swapped" may win while fitting badly as well
SWAP_FIT_Z2 = 16.0
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
    off: int = 0  # isolated readings in a row that were too far off the reference


def _trade(a: _Track, b: _Track) -> None:
    """Two tracks' particles traded ids: so do their learnt references."""
    a.reference, b.reference = b.reference, a.reference
    a.learnt, b.learnt = b.learnt, a.learnt
    a.off = b.off = 0


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
    window, max_window
        Isolated frames averaged after an encounter before deciding: at least
        ``window``; up to ``max_window`` while the evidence is not yet clear either way.
    min_log_odds
        How much more likely "swapped" must be than "not swapped" to switch.
    """

    crowd_px: float = 12.0
    watch_px: float = 48.0
    window: int = 4
    max_window: int = 25
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

    def handed_over(self, old: int, new: int, rivals: set[int]) -> None:
        """The followed track ``old`` ended; the controller chose ``new`` by position.

        ``new`` takes over the reference of ``old`` (as in :meth:`continued`), and
        the ``rivals`` — other tracks where the particle was last seen — become
        partners of an open encounter: once all are isolated again, brightness
        decides which of them is the particle, as after any encounter.
        """
        self.continued(old, new)
        if int(old) not in self._tracks:
            return  # nothing known of the particle: brightness cannot decide
        rivals = {int(r) for r in rivals} - {int(new), int(old)}
        if rivals:
            self._partners |= rivals
            self._waited = 0

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
        near = np.hypot(xy[:, 0] - fx, xy[:, 1] - fy) <= self.watch_px
        if self._partners:  # a partner leaving the watch still counts for the decision
            near |= np.isin(ids, list(self._partners))
        watched = np.flatnonzero(near)
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
        mine = self._tracks.get(me)
        blind = mine is None or not math.isfinite(mine.reference)
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
            # while ours has no reference, no encounter can be decided: the tracks take
            # their first isolated window even in one, as all that will be known of who
            # is who (centring bench seed 8: the bead and a neighbour stayed within
            # reach for its first seconds, nothing was learnt, and a swap then went
            # unnoticed). Once ours is known, a partner first seen in an encounter is
            # judged against ours instead
            if tid not in frozen or (blind and not math.isfinite(t.reference)):
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
        return _Track(recent=deque(maxlen=self.max_window))

    def _ready(self, t: _Track | None) -> bool:
        return t is not None and len(t.recent) >= self.window

    def _var(self, t: _Track, n: int | None = None) -> float:
        """Variance of (mean of ``n`` recent readings − the reference of ``t``)."""
        n = len(t.recent) if n is None else n
        rel = max(self.rel_var, FLOOR_REL_SD**2)
        return t.reference**2 * rel * (1.0 / max(n, 1) + 1.0 / min(max(t.learnt, 1), EMA_FRAMES))

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
        odds = {pid: self._swap_log_odds(own, self._tracks[pid]) for pid in ready}
        best = max(odds, key=lambda pid: odds[pid], default=-1)
        best_odds = max(0.0, odds.get(best, 0.0))
        # evidence grows with every isolated frame: a close call waits for more of it
        # (up to ``max_window`` frames) instead of settling on too few
        clear = best_odds >= self.min_log_odds or all(
            v <= -self.min_log_odds for v in odds.values()
        )
        if not clear and len(own.recent) < self.max_window and self._waited < MAX_WAIT:
            return followed
        log.info(
            "track %d after an encounter with %s: log-odds of a swap %s after %d frames",
            me,
            sorted(self._partners),
            {pid: round(v, 1) for pid, v in odds.items()},
            len(own.recent),
        )
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

    def _swap_log_odds(self, own: _Track, other: _Track) -> float:
        """The log-odds of "the two swapped" over "they did not", from recent photons."""
        if not math.isfinite(own.reference):
            return 0.0
        m_own = float(np.mean(own.recent))
        m_other = float(np.mean(other.recent))
        v_own = self._var(own)
        same = (m_own - own.reference) ** 2 / v_own
        if not math.isfinite(other.reference):
            # a partner first seen in the encounter: only ours is known. It must look
            # like ours, and ours must not, by twice the margin
            z_other = (m_other - own.reference) ** 2 / self._var(own, len(other.recent))
            return 0.5 * (same - z_other) / 2 if z_other <= 4.0 else 0.0
        v_other = self._var(other)
        same += (m_other - other.reference) ** 2 / v_other
        z_own = (m_own - other.reference) ** 2 / self._var(other, len(own.recent))
        z_other = (m_other - own.reference) ** 2 / self._var(own, len(other.recent))
        if max(z_own, z_other) > SWAP_FIT_Z2:
            return min(0.0, 0.5 * (same - z_own - z_other))  # neither fits: no switch
        return 0.5 * (same - z_own - z_other)

    def _learn(self, t: _Track, p: float) -> None:
        if not math.isfinite(t.reference):
            if len(t.recent) >= self.window:  # the first reference: a window's mean
                t.reference = float(np.mean(t.recent))
                t.learnt = self.window
            return
        rel = (p - t.reference) / t.reference
        if rel > MERGED_REL:
            t.off += 1
            if t.off >= RELEARN_FRAMES:
                t.reference, t.learnt, t.off = float(np.mean(t.recent)), self.window, 0
            return
        t.off = 0
        t.learnt += 1
        a = max(2.0 / (EMA_FRAMES + 1), 1.0 / t.learnt)
        t.reference = (1 - a) * t.reference + a * p
        # the photon scatter of a lone spot, from every watched track
        self.rel_var = 0.98 * self.rel_var + 0.02 * rel * rel
