"""The napari dock widget: a running service's frames, detections, tracks and health, live.

A subscriber thread reads the service's results into a
:class:`~livetrack.viewer.live.LiveView`; a Qt timer draws the newest snapshot as soon
as a picture is waiting (without pictures, at most :data:`DRAW_HZ` times a second).
The subscriber never waits for the drawing: frames that arrive between two draws are
counted and skipped (latest wins), and the service, whose PUB socket never blocks, is
not slowed by a slow viewer.

Frames come one of two ways. From the service's **preview** (``prv``, asked for on
connect at the panel's pictures a second, :data:`PREVIEW_HZ` unless changed): the
picture of a processed frame, published right after its results, so the detections
drawn over it were found in it; the service pays for those pictures, not for every
frame. Or, when the widget publishes a **Micro-Manager core's** frames itself,
straight from that core into napari-micromanager's own ``preview`` layer (no round
trip).

A click on a detection asks the service to have the controller follow it
(``follow``); the service carries the choice to the controller on the next frame.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from functools import partial
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from livetrack.viewer.layers import PREVIEW_LAYER, LiveLayers
from livetrack.viewer.live import PREVIEW_HZ, LiveView, status_line
from livetrack.wire import protocol as wire

#: draws a second of the newest detections when no pictures come
DRAW_HZ = 30
POLICIES = ("realtime", "lossless")
#: no picture for this long: the preview is off, draw the newest detections instead
PICTURES_STALE_S = 2.0


class LiveTrackWidget(QWidget):
    """Connect to ``livetrack serve``; show its frames, detections, tracks and health.

    Parameters
    ----------
    napari_viewer
        The viewer the layers go into (napari passes it).
    results, control, frames
        The service's results (PUB), control (REP) and frames (PULL) addresses;
        ``frames`` is used only to publish a Micro-Manager core's frames.
    """

    def __init__(
        self,
        napari_viewer: Any,
        results: str = "tcp://127.0.0.1:5556",
        control: str = "tcp://127.0.0.1:5557",
        frames: str = "tcp://127.0.0.1:5555",
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.view = LiveView()
        self.layers = LiveLayers(napari_viewer)
        self.mm: Any = None  # a MicroManagerLink while publishing a core's frames
        self.followed: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # what to undo when the window goes (Qt may have deleted the widgets by then)
        self._asked: dict[str, str | None] = {"preview_at": None}
        self._build(results, control, frames)
        self.timer = QTimer(self)
        # ticks twice a picture: one is drawn within half a period of its arrival
        self.timer.setInterval(int(500 / self.preview_hz.value()))
        self.timer.timeout.connect(self.draw)
        self.draws = 0
        self.draw_ms: deque[float] = deque(maxlen=1000)  # the viewer's own cost per draw
        self._last_draw = 0.0
        self._status_at = 0.0
        napari_viewer.mouse_drag_callbacks.append(self._on_click)
        self.destroyed.connect(partial(_release, self._stop, self._asked))

    def _build(self, results: str, control: str, frames: str) -> None:
        self.results, self.control, self.frames = (QLineEdit(a) for a in (results, control, frames))
        self.tail = QSpinBox()
        self.tail.setRange(1, 1000)
        self.tail.setValue(self.view.tail_frames)
        self.tail.valueChanged.connect(self._set_tail)
        self.preview_hz = QSpinBox()
        self.preview_hz.setRange(1, wire.MAX_PREVIEW_HZ)
        self.preview_hz.setValue(PREVIEW_HZ)
        self.preview_hz.valueChanged.connect(self._set_preview_rate)
        self.show_frames = QCheckBox("show the service's frames")
        self.show_frames.setChecked(True)
        self.click_follows = QCheckBox("click a particle to follow it")
        self.click_follows.setChecked(True)
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(self.toggle)
        self.mm_button = QPushButton("Publish Micro-Manager")
        self.mm_button.setCheckable(True)
        self.mm_button.toggled.connect(self.link_micromanager)
        self.policy = QComboBox()
        self.policy.addItems(POLICIES)
        self.policy.activated.connect(self._set_policy)
        reset = QPushButton("Reset tracks")
        reset.clicked.connect(lambda: self._request("reset_tracks"))
        self.status = QLabel(status_line({}, 0))
        self.reply = QLabel("")
        for label in (self.status, self.reply):
            label.setWordWrap(True)
        self.setMaximumWidth(400)  # the image is what the user watches
        form = QFormLayout(self)
        for name, edit in (("results", self.results), ("control", self.control)):
            form.addRow(name, edit)
        form.addRow("frames", self.frames)
        form.addRow("tail (frames)", self.tail)
        form.addRow("pictures / s", self.preview_hz)
        for box in (self.show_frames, self.click_follows):
            form.addRow(box)
        row = QHBoxLayout()
        for button in (self.connect_button, reset, self.mm_button):
            row.addWidget(button)
        form.addRow(row)
        form.addRow("policy", self.policy)
        form.addRow(self.status)
        form.addRow(self.reply)

    def toggle(self) -> None:
        """Connect, or disconnect when connected."""
        if self._thread is not None:
            self.disconnect_service()
        else:
            self.connect_service()

    def connect_service(self) -> None:
        """Start the subscriber thread and the drawing timer; ask for frames if shown."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._subscribe, args=(self.results.text(),), daemon=True, name="livetrack-sub"
        )
        self._thread.start()
        self.timer.start()
        self.connect_button.setText("Disconnect")
        wants = self.show_frames.isChecked() and self.mm is None
        if wants and self._request("set_preview", hz=self.preview_hz.value()).get("ok"):
            self._asked["preview_at"] = self.control.text()

    def disconnect_service(self) -> None:
        """Stop the subscriber and the timer (the layers stay) and the preview we asked for."""
        self._release_preview()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._thread = None
        self.timer.stop()
        self.connect_button.setText("Connect")

    def _release_preview(self) -> None:
        """Turn off the preview this widget asked for (another client's stays)."""
        if self._asked["preview_at"] is not None and self._request("set_preview", hz=0).get("ok"):
            self._asked["preview_at"] = None

    def _subscribe(self, address: str) -> None:
        from livetrack.wire.client import ResultSubscriber

        # det is not taken: trk has the same positions and the ids (half the decoding)
        topics = (wire.TOPIC_TRACKS, wire.TOPIC_STATUS, wire.TOPIC_PREVIEW)
        sub = ResultSubscriber(address, topics=topics, queue=1000)
        try:
            while not self._stop.is_set():
                result = sub.recv(timeout_ms=100)
                if result is not None:
                    self.view.feed(result)
        finally:
            sub.close()

    def link_micromanager(self, on: bool) -> None:
        """Publish the running Micro-Manager core's frames to the service (or stop)."""
        if on and self.mm is None:
            try:  # pymmcore-plus only when asked for (livetrack[acquire])
                from livetrack.viewer.micromanager import MicroManagerLink, running_core

                self.mm = MicroManagerLink(running_core(self.viewer), self.frames.text())
            except Exception as exc:  # no core, no pymmcore-plus: say so, keep the viewer
                self.reply.setText(f"Micro-Manager: {exc}")
                self.mm_button.setChecked(False)
                return
            self._release_preview()  # the frames are here already
            # over napari-micromanager's image, in its units (µm when it knows the pixel)
            px = float(self.mm.core.getPixelSizeUm() or 1.0)
            self.layers.set_scale((px, px))
            self.reply.setText(f"publishing {self.mm.pump.source} to {self.frames.text()}")
        elif not on and self.mm is not None:
            self.mm.close()
            self.mm = None

    def _set_preview_rate(self, hz: int) -> None:
        """Draw at ``hz``, and ask the service for as many pictures if we asked before."""
        self.timer.setInterval(int(500 / hz))
        if self._asked["preview_at"] is not None:
            self._request("set_preview", hz=hz)

    def _set_policy(self, _index: int) -> None:
        self._request("set_policy", policy=self.policy.currentText())

    def _set_tail(self, frames: int) -> None:
        self.view.tail_frames = int(frames)
        if self.layers.tracks is not None:
            self.layers.tracks.tail_length = int(frames)

    def _request(self, cmd: str, **args: Any) -> dict[str, Any]:
        from livetrack.wire.client import ControlClient

        client = ControlClient(self.control.text(), timeout_ms=1000, retries=1)
        try:
            reply = client.request(cmd, **args)
        except Exception as exc:  # a service that is gone: say so, keep the viewer
            reply = {"ok": False, "error": str(exc)}
        finally:
            client.close()
        with contextlib.suppress(RuntimeError):  # the panel may be gone (viewer closing)
            self.reply.setText(f"{cmd}: {'ok' if reply.get('ok') else reply.get('error', reply)}")
        return reply

    def follow(self, particle: int) -> bool:
        """Ask for the controller to follow track ``particle``; True if the service took it."""
        if self._request("follow", particle=particle).get("ok"):
            self.followed = particle
            return True
        return False

    def _on_click(self, _viewer: Any, event: Any) -> Any:
        """A click (press and release without a drag) on a detection follows it."""
        if not self.click_follows.isChecked() or event.type != "mouse_press":
            return
        start = tuple(event.position)
        yield
        moved = False
        while event.type == "mouse_move":
            moved = True
            yield
        if not moved:
            particle = self.layers.particle_at(start)
            if particle is not None:
                self.follow(particle)

    def draw(self) -> None:
        """Draw what is new: each picture with its own frame's detections, else the newest.

        While pictures come, only a picture is drawn (so the points are always those
        found in the image below them); without pictures for :data:`PICTURES_STALE_S`
        (preview off, or not served), the newest detections, at most DRAW_HZ a second.
        """
        now = time.monotonic()
        if self.mm is not None and (frame := self.mm.newest_frame()) is not None:
            self.layers.draw_image(frame, 1, PREVIEW_LAYER)
        if now - self._status_at >= 0.25:  # text that changes 4 times a second is readable
            self._status_at = now
            self._show_status()
        if not self.view.image_waiting and (
            now - self._last_draw < 1.0 / DRAW_HZ
            or now - self.view.last_image_at < PICTURES_STALE_S
        ):
            return
        snap = self.view.snapshot()
        if snap is None:
            return
        if snap.image is not None:
            self.layers.draw_image(snap.image, snap.image_step)
        self.layers.draw(snap, self.view.tail_frames, self.followed)
        self.draws += 1
        self._last_draw = now
        self.draw_ms.append((time.monotonic() - now) * 1e3)

    def _show_status(self) -> None:
        status, undrawn = self.view.status()
        text = status_line(status, undrawn)
        if self.followed is not None:
            text += f" · following {self.followed}"
        self.status.setText(text)
        if status.get("policy") in POLICIES:  # the service's, whoever set it
            self.policy.setCurrentText(status["policy"])

    def closeEvent(self, event: Any) -> None:
        """Stop the subscriber and the Micro-Manager link with the widget."""
        self.disconnect_service()
        self.link_micromanager(False)
        super().closeEvent(event)


def _release(stop: threading.Event, asked: dict[str, str | None], *_: Any) -> None:
    """The widget is gone (napari closed): end the subscriber, turn off our preview."""
    stop.set()
    address = asked.get("preview_at")
    if address is not None:
        from livetrack.wire.client import ControlClient

        client = ControlClient(address, timeout_ms=500, retries=0)
        with contextlib.suppress(Exception):
            client.request("set_preview", hz=0)
        client.close()
