"""Feedback on track results: centring, trap clamp, and event triggers.

The controller reads ``trk`` results (track positions with ids, each carrying
the stage position at which its frame was taken) and acts through an
:class:`~livetrack.acquisition.actuation.Actuator`.

Loop latency is accounted for by construction: a centring command is an
*absolute* stage target computed in the coordinates of the frame that was
measured (stage at exposure + error), so moves still in flight when the frame
was taken are never counted twice. With ``kp = 1`` the stage goes exactly to
where the particle was seen — the best guess for a diffusing particle (its
position is a martingale) — and the loop is stable at any latency, which a
naive relative PI loop is not. Optional velocity feed-forward adds the track's
velocity times the measured age of the frame (for drift or flow).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from livetrack.acquisition._config import ControllerConfig
from livetrack.acquisition.actuation import Actuator
from livetrack.acquisition.identity import BrightnessIdentity
from livetrack.wire import protocol as wire

log = logging.getLogger(__name__)
# Recent samples kept per series (≈ 3.3 min at 50 results/s): memory is flat in long runs;
# the RMS error is kept over the whole run from running sums.
RECENT = 10_000


@dataclass(frozen=True, slots=True)
class Trigger:
    """A condition on the tracks that calls a hook once per track (or once per crossing).

    ``enter``: a track enters ``region`` (x0, y0, x1, y1) px; ``speed``: a track's
    speed exceeds ``value`` px/s; ``count``: at least ``value`` tracks in a frame.
    """

    kind: Literal["enter", "speed", "count"]
    value: float = 0.0
    region: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """What a hook receives."""

    trigger: Trigger
    seq: int
    t_acq_ns: int
    particle: int
    x: float
    y: float


Hook = Callable[[TriggerEvent], None]


@dataclass
class ControllerStats:
    """What the loop did: results, actions, errors, and clicks to follow: (seq, particle)."""

    results: int = 0
    actions: int = 0
    reselections: int = 0
    reacquired: int = 0
    identity_switches: int = 0
    reselected_at: list[int] = field(default_factory=list)
    follow_requests: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=1000))
    safe_state_entries: int = 0
    triggers_fired: int = 0
    followed: int | None = None
    error_px: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    error_t_s: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    age_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    error_n: int = 0
    error_sq_sum: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Plain numbers for JSON."""
        a = np.asarray(self.age_ms)
        return {
            "results": self.results,
            "actions": self.actions,
            "reselections": self.reselections,
            "reacquired": self.reacquired,
            "identity_switches": self.identity_switches,
            "reselected_at_seq": self.reselected_at,
            "follow_requests": [list(r) for r in self.follow_requests],
            "safe_state_entries": self.safe_state_entries,
            "triggers_fired": self.triggers_fired,
            "followed": self.followed,
            "rms_error_px": (
                float(np.sqrt(self.error_sq_sum / self.error_n)) if self.error_n else None
            ),
            "decision_age_ms": (
                {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}
                if len(a)
                else {}
            ),
        }


class FeedbackController:
    """Turn track results into stage or trap commands.

    Parameters
    ----------
    config
        Mode, gains, target, limits.
    actuator
        Where commands go (in-process core, or a remote acquisition process).
    pixel_um
        Pixel size used when a result does not carry one.
    frame_shape
        (height, width), for the default target (the field centre).
    triggers, hook
        Conditions and the function they call.
    """

    def __init__(
        self,
        config: ControllerConfig,
        actuator: Actuator,
        pixel_um: float,
        frame_shape: tuple[int, int],
        triggers: tuple[Trigger, ...] = (),
        hook: Hook | None = None,
    ) -> None:
        self.cfg = config
        self.actuator = actuator
        self.pixel_um = pixel_um
        h, w = frame_shape
        self.target = np.asarray(config.target_px or ((w - 1) / 2.0, (h - 1) / 2.0), float)
        self.select_near = np.asarray(config.select_near_px or self.target, float)
        self.followed: int | None = config.particle
        self.triggers = triggers
        self.hook = hook or (lambda ev: log.info("trigger %s", ev))
        self.stats = ControllerStats(followed=self.followed)
        self._integral = np.zeros(2)
        self._trap: np.ndarray | None = None
        self._last: tuple[float, np.ndarray] | None = None  # (t_s, sample position µm)
        self._velocity = np.zeros(2)  # µm/s, smoothed
        self._missing = 0
        self._fired: set[tuple[int, int]] = set()
        self._count_above = False
        self._t0_ns: int | None = None
        self._prev: dict[int, tuple[int, np.ndarray]] = {}
        self._last_px: np.ndarray | None = None
        self._seen_um: np.ndarray | None = None  # followed particle, sample coordinates
        self._seen_px_um = pixel_um
        self._known = np.zeros(0, np.int64)  # track ids in the previous result
        self._identity = BrightnessIdentity() if config.identity_by_brightness else None
        self.last_result_s = time.monotonic()
        self.safe = False

    # -- selection -------------------------------------------------------------------

    def _last_seen_px(self, stage_um: np.ndarray | None) -> np.ndarray | None:
        """Where the followed particle was last seen, in this frame's pixels.

        Kept in the sample's coordinates (frame px + stage): the stage may have moved since.
        """
        if self._seen_um is not None and stage_um is not None:
            seen: np.ndarray = (self._seen_um - stage_um) / self._seen_px_um
            return seen
        return self._last_px

    def _select(
        self, ids: np.ndarray, xy: np.ndarray, stage_um: np.ndarray | None = None
    ) -> int | None:
        if len(ids) == 0:
            return None
        # a lost track is most likely the detection nearest where it was last seen
        seen = self._last_seen_px(stage_um)
        near = self.select_near if seen is None else seen
        d = np.hypot(xy[:, 0] - near[0], xy[:, 1] - near[1])
        return int(ids[int(np.argmin(d))])

    def _reacquire(self, ids: np.ndarray, xy: np.ndarray, stage_um: np.ndarray | None) -> bool:
        """Follow a track that just started where the followed one was last seen.

        The linker ends a track when its particle is missed for longer than its memory
        (skipped frames, a faint spell) and starts a new id when it reappears: the
        same particle. Switching at once, instead of after ``reacquire_after`` results
        without it, keeps the stage steering through the gap.
        """
        near = self._last_seen_px(stage_um)
        new = np.flatnonzero(~np.isin(ids, self._known))
        if near is None or len(new) == 0:
            return False
        d = np.hypot(xy[new, 0] - near[0], xy[new, 1] - near[1])
        k = int(np.argmin(d))
        if d[k] > self.cfg.reacquire_px:
            return False
        self._hand_over(int(ids[new[k]]), ids, xy, near)
        self.followed = int(ids[new[k]])
        self.stats.followed = self.followed
        self.stats.reacquired += 1
        return True

    def _hand_over(self, new: int, ids: np.ndarray, xy: np.ndarray, near: np.ndarray) -> None:
        """The identity guard hears that ``new`` now stands for the followed particle.

        The choice was by position only; every other track near where the particle
        was last seen stays a candidate, and brightness may still pick one of them.
        """
        if self._identity is None or self.followed is None:
            return
        d = np.hypot(xy[:, 0] - near[0], xy[:, 1] - near[1])
        rivals = {int(i) for i in ids[d <= max(self.cfg.reacquire_px, self._identity.crowd_px)]}
        self._identity.handed_over(self.followed, new, rivals)

    def _reselect(
        self, ids: np.ndarray, xy: np.ndarray, seq: int = -1, stage_um: np.ndarray | None = None
    ) -> None:
        chosen = self._select(ids, xy, stage_um)
        seen = self._last_seen_px(stage_um)
        if chosen is not None and seen is not None:  # lost, not the first choice
            self._hand_over(chosen, ids, xy, seen)
        self.followed = chosen
        self.stats.reselections += 1
        if len(self.stats.reselected_at) < 1000:
            self.stats.reselected_at.append(seq)
        self._restart_loop()

    def _restart_loop(self) -> None:
        """Another particle: the integral and the velocity were the old one's."""
        self._integral[:] = 0.0
        self._last = None
        self._velocity[:] = 0.0

    def _follow_if_asked(self, particle: Any, seq: int) -> None:
        """A person chose the particle (click-to-follow): it is followed from this frame."""
        if not isinstance(particle, int) or isinstance(particle, bool) or particle == self.followed:
            return
        self.followed = self.stats.followed = particle
        self.stats.follow_requests.append((seq, particle))
        self._missing = 0
        self._restart_loop()
        self._seen_um = self._last_px = None  # where the old one was says nothing of it
        if self._identity is not None:  # another particle: its brightness is learnt anew
            self._identity = BrightnessIdentity()

    # -- the loop --------------------------------------------------------------------

    def check_timeout(self) -> bool:
        """Enter the safe state (no actuation) when results stopped arriving; True if safe."""
        if not self.safe and time.monotonic() - self.last_result_s > self.cfg.timeout_s:
            self.safe = True
            self.stats.safe_state_entries += 1
            log.warning(
                "no results for %.2f s: controller in safe state (not actuating)",
                self.cfg.timeout_s,
            )
        return self.safe

    def on_tracks(self, res: wire.Result) -> None:
        """Act on one ``trk`` result."""
        self.last_result_s = time.monotonic()
        if self.safe:
            self.safe = False
            self._integral[:] = 0.0
            log.info("results are back: controller active again")
        self.stats.results += 1
        ids = res.columns.get("particle", np.zeros(0, np.int64))
        xy = np.column_stack([res.columns.get("x", []), res.columns.get("y", [])]).astype(float)
        if self._t0_ns is None:
            self._t0_ns = res.t_acq_ns
        self._run_triggers(res, ids, xy)
        self._follow_if_asked(res.fields.get("follow"), res.seq)
        if self.cfg.mode == "none" and self.followed is None:
            self.followed = self._select(ids, xy)
            self.stats.followed = self.followed
        if self.followed is None:
            self._reselect(ids, xy, res.seq)
            self.stats.followed = self.followed
            if self.followed is None:
                return
        px = float(res.fields.get("pixel_size_um") or self.pixel_um)
        stage = res.fields.get("stage_um")
        stage_xy = np.asarray(stage[:2], float) if stage is not None else np.zeros(2)
        here = stage_xy if stage is not None else None
        hit = np.flatnonzero(ids == self.followed)
        if len(hit) == 0 and self._reacquire(ids, xy, here):
            hit = np.flatnonzero(ids == self.followed)
        self._known = ids.copy()
        if len(hit) == 0:
            self._missing += 1
            if self._missing > self.cfg.reacquire_after:  # lost: the nearest to where it was
                self._missing = 0
                self._reselect(ids, xy, res.seq, here)
                self.stats.followed = self.followed
            return
        self._missing = 0
        pos = xy[self._row_by_brightness(res, ids, xy, int(hit[0]))]
        self._last_px = pos.copy()
        self._seen_um = stage_xy + pos * px
        self._seen_px_um = px
        err = pos - self.target
        e = float(np.hypot(*err))
        self.stats.error_n += 1
        self.stats.error_sq_sum += e * e
        self.stats.error_px.append(e)
        self.stats.error_t_s.append((res.t_acq_ns - self._t0_ns) / 1e9)
        if self.cfg.mode == "none":
            return
        self._update_velocity(res.t_acq_ns / 1e9, stage_xy + pos * px)
        age_s = max(0.0, (wire.now_ns() - res.t_acq_ns) / 1e9)
        self.stats.age_ms.append(age_s * 1e3)
        if np.hypot(*err) >= self.cfg.deadband_px:
            self._act(res, err, px, age_s, here)

    def _row_by_brightness(
        self, res: wire.Result, ids: np.ndarray, xy: np.ndarray, row: int
    ) -> int:
        """The followed particle's row: the linker's, unless its brightness says a neighbour's."""
        photons = res.columns.get("photons")
        if self._identity is None or photons is None or len(photons) != len(ids):
            return row
        found = self._identity.check(row, ids, xy, np.asarray(photons, float))
        if found != row:  # the linker swapped it with a neighbour: follow the particle
            log.info(
                "frame %d: brightness says track %d is ours (log-odds %.1f)",
                res.seq, ids[found], self._identity.last_log_odds,
            )  # fmt: skip
            self.followed = int(ids[found])
            self.stats.followed = self.followed
            self.stats.identity_switches += 1
        return found

    def _act(
        self, res: wire.Result, err: np.ndarray, px: float, age_s: float, stage: np.ndarray | None
    ) -> None:
        """One PI step (with the latency's predicted drift): move the stage or the trap."""
        self._integral += err * px
        correction_um = self.cfg.kp * err * px + self.cfg.ki * self._integral
        if self.cfg.predict_latency:
            correction_um = correction_um + self._velocity * age_s
        if self.cfg.mode == "centre":
            if stage is None:
                log.warning("trk result %d carries no stage_um: cannot centre", res.seq)
                return
            goal = stage + np.clip(correction_um, -self.cfg.max_step_um, self.cfg.max_step_um)
            self.actuator.move_xy(float(goal[0]), float(goal[1]), res.seq, res.t_acq_ns)
        else:  # trap clamp: pull the particle back by moving the trap past the target
            trap = self.target - correction_um / px
            self.actuator.set_trap(float(trap[0]), float(trap[1]), res.seq, res.t_acq_ns)
        self.stats.actions += 1

    def _update_velocity(self, t_s: float, p_um: np.ndarray) -> None:
        if self._last is not None and t_s > self._last[0]:
            v = (p_um - self._last[1]) / (t_s - self._last[0])
            self._velocity = 0.9 * self._velocity + 0.1 * v
        self._last = (t_s, p_um)

    def _run_triggers(self, res: wire.Result, ids: np.ndarray, xy: np.ndarray) -> None:
        for k, trig in enumerate(self.triggers):
            if trig.kind == "count":
                above = len(ids) >= trig.value
                if above and not self._count_above:
                    self._fire(trig, res, -1, np.full(2, np.nan))
                self._count_above = above
                continue
            for i, pid in enumerate(ids):
                key = (k, int(pid))
                if key in self._fired:
                    continue
                if trig.kind == "enter":
                    x0, y0, x1, y1 = trig.region
                    hit = x0 <= xy[i, 0] <= x1 and y0 <= xy[i, 1] <= y1
                else:
                    hit = self._speed_px_s(int(pid), res.t_acq_ns, xy[i]) > trig.value
                if hit:
                    self._fired.add(key)
                    self._fire(trig, res, int(pid), xy[i])
        if len(self._fired) > 100_000:  # bound the memory of a long run
            self._fired.clear()
        self._prev = {int(p): (res.t_acq_ns, xy[i].copy()) for i, p in enumerate(ids)}

    def _speed_px_s(self, pid: int, t_ns: int, p: np.ndarray) -> float:
        prev = self._prev.get(pid)
        if prev is None or t_ns <= prev[0]:
            return 0.0
        return float(np.hypot(*(p - prev[1])) / ((t_ns - prev[0]) / 1e9))

    def _fire(self, trig: Trigger, res: wire.Result, pid: int, p: np.ndarray) -> None:
        self.stats.triggers_fired += 1
        try:
            self.hook(TriggerEvent(trig, res.seq, res.t_acq_ns, pid, float(p[0]), float(p[1])))
        except Exception:  # a user hook must not stop the loop
            log.exception("trigger hook failed")
