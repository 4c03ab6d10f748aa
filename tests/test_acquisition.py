"""The simulated microscope on a real UniMMCore, the frame pump, actuation and feedback.

Everything goes through real ZeroMQ sockets on loopback (random ports, linger 0,
timeouts) and a real pymmcore-plus core with Python devices.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from livetrack.acquisition import (
    AcquisitionConfig,
    ActuationServer,
    ControllerConfig,
    CoreActuator,
    CoreFramePump,
    FeedbackController,
    RemoteActuator,
    Trigger,
    load_section,
    run_control_loop,
    simulated_core,
)
from livetrack.config import ConfigError, Distribution, SimulationConfig
from livetrack.detection.classical import TrackpyDetector
from livetrack.service import Service, ServiceConfig
from livetrack.wire import protocol as wire
from livetrack.wire.client import FramePublisher, free_loopback_addresses

from .conftest import small


def still(
    cfg: SimulationConfig, diffusion: float = 0.0, number: int = 6, **particles: Any
) -> SimulationConfig:
    """A small field of bright beads with the given diffusion coefficient."""
    extra = {k: Distribution(**v) if isinstance(v, dict) else v for k, v in particles.items()}
    c = small(cfg, 96, 80, number=number, min_separation_px=14.0, **extra)
    motion = c.motion.model_copy(update={"diffusion_um2_per_s": diffusion})
    return c.model_copy(update={"motion": motion})


class Sink:
    """A PULL socket standing in for the service's frame input."""

    def __init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"

    def frames(self, n: int, timeout_s: float = 10.0) -> list[tuple[wire.FrameHeader, np.ndarray]]:
        out = []
        end = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < end:
            if self.sock.poll(100):
                h, a = wire.decode_frame(self.sock.recv_multipart())
                out.append((h, a.copy()))
        return out

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


def _shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Translation of b relative to a (x, y) by cross-correlation.

    Not phase correlation: whitening weights the noise-only high frequencies like the
    beads' own, and the peak then moves by a pixel with the noise realisation.
    """
    fa, fb = np.fft.fft2(a - a.mean()), np.fft.fft2(b - b.mean())
    r = np.fft.ifft2(fb * np.conj(fa)).real
    iy, ix = np.unravel_index(np.argmax(r), r.shape)
    h, w = r.shape
    return (float(ix if ix <= w // 2 else ix - w), float(iy if iy <= h // 2 else iy - h))


def test_devices_are_real_core_devices(beads: SimulationConfig) -> None:
    core, _ = simulated_core(still(beads), seed=1)
    assert core.getCameraDevice() == "Camera"
    assert core.getPixelSizeUm() == pytest.approx(beads.pixel_size_um)
    assert (core.getImageWidth(), core.getImageHeight()) == (96, 80)
    core.setExposure(5.0)
    assert core.getExposure() == 5.0
    core.setProperty("Camera", "Binning", 2)
    core.snapImage()
    assert core.getImage().shape == (40, 48)
    core.setProperty("Camera", "Binning", 1)
    core.setROI(10, 10, 32, 24)
    core.snapImage()
    assert core.getImage().shape == (24, 32)


def test_stage_move_shifts_the_image_and_focus_blurs_it(beads: SimulationConfig) -> None:
    core, sample = simulated_core(still(beads, photons={"mean": 20000.0}), seed=2)
    core.snapImage()
    a = core.getImage().astype(float)
    dx_px, dy_px = 7, -4
    core.setXYPosition(dx_px * beads.pixel_size_um, dy_px * beads.pixel_size_um)
    core.snapImage()
    b = core.getImage().astype(float)
    # moving the stage by +d moves the sample, as seen by the camera, by −d
    assert _shift(a, b) == (-dx_px, -dy_px)
    assert sample.stage_um == pytest.approx((7 * beads.pixel_size_um, -4 * beads.pixel_size_um))
    peak_in_focus = b.max()
    core.setPosition(1.5)  # µm out of focus: the Gaussian PSF widens, the peak falls
    core.snapImage()
    assert core.getImage().max() - 100 < 0.6 * (peak_in_focus - 100)


def test_trap_device_pulls_the_trapped_particle(beads: SimulationConfig) -> None:
    cfg = still(beads, diffusion=0.2)
    trap = cfg.motion.trap.model_copy(update={"stiffness_pN_per_um": 5.0, "trapped": 1})
    cfg = cfg.model_copy(update={"motion": cfg.motion.model_copy(update={"trap": trap})})
    core, sample = simulated_core(cfg, seed=3)
    pid = sample.pin_nearest(*sample.trap_px)
    core.setProperty("Trap", "X-px", 30.0)
    core.setProperty("Trap", "Y-px", 50.0)
    time.sleep(0.3)  # relaxation time γ/κ ≈ 5 ms at D = 0.2 µm²/s, κ = 5 pN/µm
    xs = []
    for _ in range(20):
        core.snapImage()
        xs.append(sample.position_px(pid))
    x, y = np.mean(xs, axis=0)
    assert abs(x - 30.0) < 3
    assert abs(y - 50.0) < 3
    assert float(core.getProperty("Trap", "Stiffness-pN-per-um")) == 5.0


def test_continuous_frames_arrive_with_their_metadata(beads: SimulationConfig, sink: Sink) -> None:
    core, _sample = simulated_core(still(beads, diffusion=0.1), seed=4)
    core.setXYPosition(3.0, -2.0)
    pump = CoreFramePump(core, FramePublisher(sink.address, queue=100))
    time.sleep(0.2)
    t_start = time.time_ns()
    pump.start_continuous()
    got = sink.frames(20)
    pump.stop()
    pump.publisher.close()
    assert len(got) == 20
    seqs = [h.seq for h, _ in got]
    assert seqs == list(range(seqs[0], seqs[0] + 20))
    stamps = np.array([h.t_acq_ns for h, _ in got])
    assert stamps[0] > t_start
    # the camera runs at its frame interval (20 ms), in real time
    assert np.median(np.diff(stamps)) / 1e6 == pytest.approx(20.0, abs=3.0)
    h, a = got[-1]
    assert h.shape == (80, 96)
    assert h.dtype == "uint16"
    assert a.shape == (80, 96)
    assert h.pixel_size_um == pytest.approx(beads.pixel_size_um)
    assert h.exposure_ms == pytest.approx(beads.camera.exposure_ms)
    assert h.stage_um == pytest.approx((3.0, -2.0))
    c = pump.counts()
    assert c.acquired == c.sent + c.dropped


def test_mda_frame_ready_publishes_every_frame(beads: SimulationConfig, sink: Sink) -> None:
    import useq

    core, _ = simulated_core(still(beads), seed=5)
    pump = CoreFramePump(core, FramePublisher(sink.address, queue=100))
    pump.attach_mda()
    time.sleep(0.2)
    seq = useq.MDASequence(time_plan={"interval": 0, "loops": 12})
    core.mda.run(seq)
    got = sink.frames(12, timeout_s=10)
    pump.publisher.close()
    assert [h.seq for h, _ in got] == list(range(12))
    assert all(h.pixel_size_um == pytest.approx(beads.pixel_size_um) for h, _ in got)
    assert pump.stats.sent == 12


def test_no_service_never_stalls_the_camera_and_it_reconnects(beads: SimulationConfig) -> None:
    (address,) = free_loopback_addresses(1)
    core, _ = simulated_core(still(beads), seed=6)
    pump = CoreFramePump(core, FramePublisher(address, queue=4))
    pump.start_continuous()
    try:
        time.sleep(1.0)  # nobody listening: frames are dropped and counted
        c = pump.counts()  # one consistent reading while the pump runs
        acquired, dropped = c.acquired, c.dropped
        assert acquired >= 20  # 50 fps, never blocked (half of it and more, for a busy CI)
        assert dropped == acquired
        assert c.sent == 0
        sink = zmq.Context.instance().socket(zmq.PULL)
        sink.setsockopt(zmq.LINGER, 0)
        sink.bind(address)  # the service comes (back)
        # It reconnects in ~0.4 s (RECONNECT_IVL_MAX); the test only asks that it does, unaided.
        assert sink.poll(10_000), "no frame within 10 s of the service appearing"
        sink.close(0)
    finally:
        pump.stop()
        pump.publisher.close()
    s = pump.counts()
    assert s.acquired == s.sent + s.dropped
    assert s.sent > 0


def test_actuation_commands_round_trip_and_bad_ones_are_counted(beads: SimulationConfig) -> None:
    core, sample = simulated_core(still(beads), seed=7)
    actuator = CoreActuator(core)
    server = ActuationServer(actuator, "tcp://127.0.0.1:0")
    server.start()
    remote = RemoteActuator(server.endpoint)
    raw = zmq.Context.instance().socket(zmq.PUSH)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server.endpoint)
    try:
        time.sleep(0.2)
        t = wire.now_ns()
        remote.move_xy(1.5, -0.5, seq=3, t_acq_ns=t)
        remote.set_trap(40.0, 30.0, seq=3, t_acq_ns=t)
        raw.send(b"\xc1 not msgpack")
        raw.send(
            wire.packb(
                {
                    "version": 1,
                    "cmd": "move_xy",
                    "seq": 1,
                    "t_acq_ns": 1,
                    "t_sent_ns": 1,
                    "x_um": float("nan"),
                    "y_um": 0.0,
                }
            )
        )
        raw.send(
            wire.packb(
                {"version": 1, "cmd": "format_disk", "seq": 1, "t_acq_ns": 1, "t_sent_ns": 1}
            )
        )
        raw.send(wire.packb({"version": 9, "cmd": "move_xy"}))
        end = time.monotonic() + 5
        while sum(server.rejected.values()) < 4 and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        raw.close(0)
        remote.close()
        server.close()
    assert core.getXYPosition() == pytest.approx((1.5, -0.5))
    assert sample.trap_px == (40.0, 30.0)
    assert actuator.applied == {"move_xy": 1, "set_trap": 1}
    assert server.rejected == {"malformed": 1, "bad_command": 2, "wrong_version": 1}
    assert len(actuator.latency_ms) == 2
    assert all(0 < v < 5000 for v in actuator.latency_ms)


def _result(
    seq: int,
    ids: list[int],
    xy: list[tuple[float, float]],
    stage: tuple[float, float],
    px: float = 0.1,
    t_acq_ns: int | None = None,
) -> wire.Result:
    a = np.asarray(xy, float).reshape(-1, 2)
    return wire.Result(
        wire.TOPIC_TRACKS,
        seq,
        t_acq_ns or wire.now_ns(),
        wire.now_ns(),
        {"particle": np.asarray(ids, np.int64), "x": a[:, 0], "y": a[:, 1]},
        {"stage_um": list(stage), "pixel_size_um": px},
    )


class Recorder:
    def __init__(self) -> None:
        self.moves: list[tuple[float, float]] = []
        self.traps: list[tuple[float, float]] = []
        self.events: list[dict[str, Any]] = []

    def move_xy(self, x_um: float, y_um: float, seq: int, t_acq_ns: int) -> None:
        self.moves.append((x_um, y_um))

    def set_trap(self, x_px: float, y_px: float, seq: int, t_acq_ns: int) -> None:
        self.traps.append((x_px, y_px))

    def mda_event(self, event: dict[str, Any], seq: int, t_acq_ns: int) -> None:
        self.events.append(event)


def test_centring_acts_in_the_frames_own_stage_coordinates() -> None:
    rec = Recorder()
    ctl = FeedbackController(ControllerConfig(), rec, 0.1, (101, 101))  # centre (50, 50)
    ctl.on_tracks(_result(0, [7, 8], [(60.0, 45.0), (10.0, 10.0)], stage=(100.0, 200.0)))
    # the nearest track to the centre is followed; the stage goes to where it was seen
    assert ctl.followed == 7
    assert rec.moves[-1] == pytest.approx((101.0, 199.5))
    # a later frame still taken at the old stage position must not move twice as far
    ctl.on_tracks(_result(1, [7, 8], [(60.0, 45.0), (10.0, 10.0)], stage=(100.0, 200.0)))
    assert rec.moves[-1] == pytest.approx((101.0, 199.5))
    # a frame taken after the move, particle centred: stay
    ctl.on_tracks(_result(2, [7], [(50.0, 50.0)], stage=(101.0, 199.5)))
    assert rec.moves[-1] == pytest.approx((101.0, 199.5))
    # half gain moves half way; the safety limit clips big steps
    half = FeedbackController(ControllerConfig(kp=0.5, max_step_um=0.2), rec, 0.1, (101, 101))
    half.on_tracks(_result(0, [1], [(60.0, 50.0)], stage=(0.0, 0.0)))
    assert rec.moves[-1] == pytest.approx((0.2, 0.0))


def test_a_restarted_track_is_reacquired_in_sample_coordinates() -> None:
    rec = Recorder()
    ctl = FeedbackController(ControllerConfig(), rec, 0.1, (101, 101))  # centre (50, 50)
    ctl.on_tracks(_result(0, [7, 8], [(52.0, 50.0), (58.0, 50.0)], stage=(0.0, 0.0)))
    assert ctl.followed == 7  # seen at sample (5.2, 5.0) µm
    # the stage moved 0.5 µm right; the linker lost 7 and started 9 for the same bead,
    # now 3 px left in the frame. Track 8 is nearer 7's old *frame* position (52, 50)
    # but the stage accounts for that: 9 is the one within reach in sample coordinates.
    ctl.on_tracks(_result(1, [8, 9], [(53.0, 50.0), (47.5, 50.0)], stage=(0.5, 0.0)))
    assert ctl.followed == 9
    assert ctl.stats.reacquired == 1
    assert ctl.stats.reselections == 1
    assert rec.moves[-1] == pytest.approx((0.25, 0.0))  # steered on this very frame
    # a new track far from the followed one is not taken for it
    ctl.on_tracks(_result(2, [8, 10], [(53.0, 50.0), (90.0, 90.0)], stage=(0.25, 0.0)))
    assert ctl.followed == 9
    # after ``reacquire_after`` results without it, the nearest to where it was
    for k in range(3, 3 + ctl.cfg.reacquire_after + 1):
        ctl.on_tracks(_result(k, [8, 10], [(53.0, 50.0), (90.0, 90.0)], stage=(0.25, 0.0)))
    assert ctl.followed == 8
    assert ctl.stats.reselections == 2


def test_trap_clamp_triggers_and_safe_state() -> None:
    rec = Recorder()
    fired: list[Any] = []
    cfg = ControllerConfig(mode="trap", target_px=(20.0, 20.0), timeout_s=0.1)
    ctl = FeedbackController(
        cfg,
        rec,
        0.1,
        (64, 64),
        triggers=(Trigger("enter", region=(0, 0, 5, 5)), Trigger("count", value=3)),
        hook=fired.append,
    )
    ctl.on_tracks(_result(0, [1, 2], [(22.0, 19.0), (30.0, 30.0)], stage=(0.0, 0.0)))
    # the particle is 2 px right of the target: the trap goes 2 px left of it (kp = 1)
    assert rec.traps[-1] == pytest.approx((18.0, 21.0))
    assert fired == []
    ctl.on_tracks(_result(1, [1, 2, 3], [(21.0, 20.0), (3.0, 3.0), (40.0, 40.0)], stage=(0, 0)))
    ctl.on_tracks(_result(2, [1, 2, 3], [(21.0, 20.0), (3.0, 3.0), (40.0, 40.0)], stage=(0, 0)))
    kinds = sorted(ev.trigger.kind for ev in fired)
    assert kinds == ["count", "enter"]  # each once, not once per frame
    assert [ev.particle for ev in fired if ev.trigger.kind == "enter"] == [2]
    assert not ctl.check_timeout()
    time.sleep(0.15)
    assert ctl.check_timeout()
    assert ctl.stats.safe_state_entries == 1
    n = len(rec.traps)
    ctl.on_tracks(_result(3, [1], [(21.0, 20.0)], stage=(0, 0)))
    assert not ctl.safe
    assert len(rec.traps) == n + 1


def test_controller_config_errors_name_file_and_key(tmp_path: Any) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('[controller]\nmode = "spin"\nkp = 7\n')
    with pytest.raises(ConfigError) as err:
        load_section(p, "controller", ControllerConfig)
    msg = str(err.value)
    assert "bad.toml" in msg
    assert "mode" in msg
    assert "kp" in msg
    assert load_section(p, "acquisition", AcquisitionConfig) == AcquisitionConfig()


def _closed_loop(cfg: SimulationConfig, mode: str, seconds: float) -> float:
    """RMS true distance of the followed bead from the centre, service + sockets for real."""
    detector = TrackpyDetector(diameter=9, minmass=300.0)
    detector.warm_up()  # imports and trackpy's Numba refinement, before the loop runs
    service = Service(
        detector,
        ServiceConfig(
            frames="tcp://127.0.0.1:0", results="tcp://127.0.0.1:0", control="tcp://127.0.0.1:0"
        ),
    )
    th = threading.Thread(target=service.run, daemon=True)
    th.start()
    assert service.ready.wait(10)
    ep = service.endpoints
    core, sample = simulated_core(cfg, seed=11)
    h, w = core.getImageHeight(), core.getImageWidth()
    pinned = sample.pin_nearest((w - 1) / 2, (h - 1) / 2)
    actuator = CoreActuator(core)
    server = ActuationServer(actuator, "tcp://127.0.0.1:0")
    server.start()
    remote = RemoteActuator(server.endpoint)
    # follow the bead whose truth is logged (the one nearest the centre may be another
    # by the time the first result arrives)
    near = sample.position_px(pinned)
    ctl = FeedbackController(
        ControllerConfig(mode=mode, select_near_px=near), remote, cfg.pixel_size_um, (h, w)
    )
    stop = threading.Event()
    loop = threading.Thread(
        target=run_control_loop, args=(ctl, ep["results"]), kwargs={"should_stop": stop.is_set}
    )
    loop.start()
    pump = CoreFramePump(core, FramePublisher(ep["frames"]))
    time.sleep(0.3)
    pump.start_continuous()
    time.sleep(seconds)
    pump.stop()
    stop.set()
    loop.join(5)
    for c in (remote, server, pump.publisher):
        c.close()
    service.stop()
    th.join(5)
    if mode == "centre":
        assert actuator.applied.get("move_xy", 0) > 0.2 * seconds * 50  # most frames steer
    log = np.asarray(sample.truth_log)
    d = np.hypot(log[:, 1] - (w - 1) / 2, log[:, 2] - (h - 1) / 2)
    return float(np.sqrt(np.mean(d**2)))


@pytest.mark.slow
def test_closed_loop_centring_keeps_the_bead_near_the_centre(beads: SimulationConfig) -> None:
    # one bead: the loop itself, not identity through encounters (the demo measures those)
    cfg = still(beads, diffusion=0.2, number=1, photons={"mean": 5000.0, "min": 3000.0})
    cfg = cfg.model_copy(
        update={"camera": cfg.camera.model_copy(update={"width": 128, "height": 128})}
    )
    with_feedback = _closed_loop(cfg, "centre", 4.0)
    without = _closed_loop(cfg, "none", 4.0)
    assert with_feedback < 0.5 * without, (with_feedback, without)
