"""The controller keeps its particle through an encounter that swapped the track ids."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from livetrack.acquisition import ControllerConfig, FeedbackController
from livetrack.acquisition.identity import BrightnessIdentity
from livetrack.wire import protocol as wire


class Moves:
    def __init__(self) -> None:
        self.moves: list[tuple[float, float]] = []

    def move_xy(self, x_um: float, y_um: float, seq: int, t_acq_ns: int) -> None:
        self.moves.append((x_um, y_um))

    def set_trap(self, x_px: float, y_px: float, seq: int, t_acq_ns: int) -> None:
        raise AssertionError("centring only")

    def mda_event(self, event: dict[str, Any], seq: int, t_acq_ns: int) -> None:
        raise AssertionError("centring only")


def _frame(seq: int, rows: list[tuple[int, float, float, float]]) -> wire.Result:
    ids, x, y, ph = (np.asarray(c) for c in zip(*rows, strict=True))
    return wire.Result(
        wire.TOPIC_TRACKS,
        seq,
        wire.now_ns(),
        wire.now_ns(),
        {"particle": ids.astype(np.int64), "x": x, "y": y, "photons": ph},
        {"stage_um": [0.0, 0.0], "pixel_size_um": 0.1},
    )


def _encounter(
    ctl: FeedbackController,
    bright: float,
    dim: float,
    swap: bool,
    seed: int = 0,
    bias_after: float = 1.0,
    handover: bool = False,
) -> tuple[float, float]:
    """Ours (``bright``) sits at the centre; a ``dim`` neighbour passes through it.

    The linker's ids: ours is 1, the neighbour 2; with ``swap`` they trade ids while
    merged. ``bias_after`` scales our photons as the two separate (a fit still
    sharing light). With ``handover`` the merged spot passes to id 2 half-way (id 1
    missing), so the controller reacquires 2 there. Returns where ours ends up (px).
    """
    rng = np.random.default_rng(seed)
    ours = np.array([50.0, 50.0])
    for seq in range(70):
        other = np.array([20.0 + seq, 50.5])  # passes straight through ours
        noisy = rng.normal(1.0, 0.03, 2)
        gap = float(np.hypot(*(other - ours)))
        if gap < 3.0:  # one merged spot, double bright: the linker keeps id 1 on it
            merged_id = 2 if handover and other[0] > ours[0] else 1
            rows = [(merged_id, *(0.5 * (ours + other)), (bright + dim) * noisy[0])]
        else:
            ids = (2, 1) if swap and other[0] > ours[0] else (1, 2)
            gain = bias_after if other[0] > ours[0] and gap < 20 else 1.0
            rows = [
                (ids[0], *ours, bright * gain * noisy[0]),
                (ids[1], *other, dim * noisy[1]),
            ]
        ctl.on_tracks(_frame(seq, rows))
    return float(ours[0]), float(ours[1])


def _controller(**cfg: Any) -> tuple[FeedbackController, Moves]:
    act = Moves()
    return FeedbackController(ControllerConfig(**cfg), act, 0.1, (101, 101)), act


def test_a_swap_in_an_encounter_is_undone_by_brightness() -> None:
    ctl, act = _controller()
    ours = _encounter(ctl, bright=3000.0, dim=2200.0, swap=True)
    assert ctl.followed == 2  # the id the linker gave our particle after the swap
    assert ctl.stats.identity_switches == 1
    # the stage steers on ours again, not on the neighbour that left with id 1
    assert act.moves[-1] == pytest.approx((ours[0] * 0.1 - 5.0, ours[1] * 0.1 - 5.0))


def test_without_a_swap_or_with_it_off_the_controller_keeps_the_track() -> None:
    ctl, _ = _controller()
    _encounter(ctl, bright=3000.0, dim=2200.0, swap=False)
    assert (ctl.followed, ctl.stats.identity_switches) == (1, 0)
    off, _ = _controller(identity_by_brightness=False)
    _encounter(off, bright=3000.0, dim=2200.0, swap=True)
    assert (off.followed, off.stats.identity_switches) == (1, 0)  # it follows the swap


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("dim", [3000.0, 3250.0])
def test_neighbours_alike_or_a_biased_read_never_cause_a_wrong_switch(
    seed: int, swap: bool, dim: float
) -> None:
    # ours reads 6 % low as they separate (a fit still sharing light), the neighbour
    # is as bright or 5 % brighter: a switch may only ever undo a real swap
    ctl, _ = _controller()
    _encounter(ctl, bright=3080.0, dim=dim, swap=swap, seed=seed, bias_after=0.94)
    if not swap:
        assert (ctl.followed, ctl.stats.identity_switches) == (1, 0)
    else:  # undone (to id 2, ours now) or, where brightness cannot tell, left alone
        assert (ctl.followed, ctl.stats.identity_switches) in ((2, 1), (1, 0))


def test_a_restarted_track_keeps_its_reference_and_crowds_teach_nothing() -> None:
    guard = BrightnessIdentity()
    rng = np.random.default_rng(1)
    ids = np.array([1, 2])
    apart = np.array([[50.0, 50.0], [70.0, 50.0]])
    for _ in range(10):
        guard.check(0, ids, apart, np.array([np.nan, 2000.0]))
    assert guard.reference_of(1) is None  # unmeasured: nothing learnt
    assert guard.reference_of(2) == pytest.approx(2000.0)
    for _ in range(40):
        guard.check(0, ids, apart, np.array([3000.0, 2000.0]) * rng.normal(1.0, 0.03, 2))
    assert guard.reference_of(1) == pytest.approx(3000.0, rel=0.03)
    assert 0.01 < np.sqrt(guard.rel_var) < 0.05  # the photon scatter it learnt
    before = guard.reference_of(1)
    crowded = np.array([[50.0, 50.0], [55.0, 50.0]])
    for _ in range(10):  # merged light reads bright: it must not be learnt
        guard.check(0, ids, crowded, np.array([5000.0, 5000.0]))
    assert guard.reference_of(1) == before
    guard.continued(1, 7)
    assert guard.reference_of(7) == before


@pytest.mark.parametrize("linker_swapped", [True, False])
def test_a_partner_track_taking_over_mid_encounter_inherits_our_reference(
    linker_swapped: bool,
) -> None:
    # the merged spot passes from id 1 to id 2 and the controller reacquires 2 (the
    # track that appeared where ours vanished). Seen apart again, 2 is ours when the
    # linker swapped (keep it: no switch) and the neighbour when it did not (switch
    # back to 1). Learnt references stay with the particles, not with the track ids.
    ctl, act = _controller()
    ours = _encounter(ctl, bright=2400.0, dim=3200.0, swap=linker_swapped, handover=True)
    assert ctl.stats.reacquired == 1
    if linker_swapped:
        assert (ctl.followed, ctl.stats.identity_switches) == (2, 0)
    else:
        assert (ctl.followed, ctl.stats.identity_switches) == (1, 1)
    assert act.moves[-1] == pytest.approx((ours[0] * 0.1 - 5.0, ours[1] * 0.1 - 5.0))


def test_a_partner_whose_track_ended_does_not_hold_up_the_decision() -> None:
    # three meet; the third's track ends while they are merged (the linker restarts
    # it later under a new id). The other two separate with swapped ids: the guard
    # decides once their windows are full, not after waiting out the vanished one
    guard = BrightnessIdentity()
    rng = np.random.default_rng(3)
    apart = np.array([[50.0, 50.0], [80.0, 50.0], [50.0, 80.0]])
    for _ in range(30):
        guard.check(
            0,
            np.array([1, 2, 3]),
            apart,
            np.array([2400.0, 3200.0, 2000.0]) * rng.normal(1, 0.03, 3),
        )
    met = np.array([[50.0, 50.0], [55.0, 50.0], [50.0, 55.0]])
    for _ in range(3):
        guard.check(0, np.array([1, 2, 3]), met, np.array([4000.0, 4000.0, 4000.0]))
    ids = np.array([1, 2])  # 3 is gone; 2 now sits on ours, 1 on the bright one
    xy = np.array([[80.0, 50.0], [50.0, 50.0]])
    frames = 0
    row = 0
    while row == 0 and frames < 30:
        row = guard.check(0, ids, xy, np.array([3200.0, 2400.0]) * rng.normal(1, 0.03, 2))
        frames += 1
    assert row == 1
    assert guard.switches == 1
    assert frames <= guard.window + 1


@pytest.mark.parametrize("guard", [True, False])
def test_a_track_lost_in_a_long_merge_is_found_again_by_brightness(guard: bool) -> None:
    # a bright neighbour (id 2) settles on ours (id 1) for 20 frames: one spot, id 2
    # (ours missed). The controller gives up on id 1 and reselects the merged spot, 2,
    # which then leaves with the neighbour while ours restarts as id 3. Position
    # cannot tell; the reference that id 2 inherited from id 1 can
    ctl, act = _controller(identity_by_brightness=guard)
    rng = np.random.default_rng(5)
    ours = np.array([50.0, 50.0])
    for seq in range(100):
        x = 20.0 + seq if seq < 29 else (49.0 + 0.05 * (seq - 29) if seq < 49 else seq + 3.0)
        other = np.array([x, 50.5])
        noisy = rng.normal(1.0, 0.03, 2)
        if 29 <= seq < 49:  # merged
            rows = [(2, *(0.5 * (ours + other)), 5600.0 * noisy[0])]
        else:
            rows = [
                (2, *other, 3200.0 * noisy[1]),
                (1 if seq < 29 else 3, *ours, 2400.0 * noisy[0]),
            ]
        ctl.on_tracks(_frame(seq, rows))
    assert ctl.stats.reselections == 2  # the first choice, and once ours was lost
    if guard:
        assert (ctl.followed, ctl.stats.identity_switches) == (3, 1)
        assert act.moves[-1] == pytest.approx((ours[0] * 0.1 - 5.0, ours[1] * 0.1 - 5.0))
    else:  # position alone follows the neighbour away
        assert ctl.followed == 2


def test_tracks_that_meet_before_any_reference_learn_one_and_catch_the_next_swap() -> None:
    # ours (3700) starts within reach of a neighbour (3000): an encounter is open
    # before either brightness is known. Apart, both learn their first reference
    # (nothing else tells who is who); when they meet again and trade ids, the guard
    # sees it
    guard = BrightnessIdentity()
    rng = np.random.default_rng(4)
    ids = np.array([1, 2])

    def frame(gap: float, photons: list[float]) -> int:
        ph = np.asarray(photons) * rng.normal(1.0, 0.02, 2)
        return guard.check(0, ids, np.array([[50.0, 50.0], [50.0 + gap, 50.0]]), ph)

    rows = [frame(8.0, [6700, 6700]) for _ in range(3)]  # merged from the start
    rows += [frame(20.0, [3700, 3000]) for _ in range(10)]
    assert guard.reference_of(1) == pytest.approx(3700, rel=0.05)
    rows += [frame(6.0, [6700, 6700]) for _ in range(3)]  # they meet again...
    rows += [frame(20.0, [3000, 3700]) for _ in range(10)]  # ...and leave with ids traded
    assert rows[:16] == [0] * 16
    assert rows[16:].count(1) == 1  # the frame it switched in (the caller moves to row 1)
    assert guard.switches == 1


def test_a_stale_reference_on_a_partner_does_not_cause_a_switch() -> None:
    # track 2's particle traded ids with a third while crowded away from ours, so its
    # reference (3810) is stale: its new particle reads 2600. After it passes ours,
    # "same" fits badly (2600 vs 3810), but "swapped" fits no better (ours 3150 vs
    # 3810): the guard must keep ours
    guard = BrightnessIdentity()
    rng = np.random.default_rng(2)
    ids = np.array([1, 2, 3])

    def frame(xy: list[list[float]], photons: list[float]) -> int:
        ph = np.asarray(photons) * rng.normal(1.0, 0.03, 3)
        return guard.check(0, ids, np.asarray(xy), ph)

    for _ in range(40):
        frame([[50, 50], [90, 50], [150, 50]], [3245, 3810, 2600])
    for _ in range(10):  # 2 and 3 meet and trade particles, away from ours
        frame([[50, 50], [90, 50], [95, 50]], [3245, 2600, 3810])
    for _ in range(3):  # 2 passes ours
        frame([[50, 50], [53, 50], [150, 50]], [6000, 6000, 3810])
    rows = [frame([[50, 50], [80, 50], [150, 50]], [3150, 2650, 3810]) for _ in range(80)]
    assert rows == [0] * 80
    assert guard.switches == 0
    assert guard.reference_of(2) == pytest.approx(2650, rel=0.1)  # learnt afresh
