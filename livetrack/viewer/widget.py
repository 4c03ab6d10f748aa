"""The napari dock widget: a running service's detections and tracks, live.

A subscriber thread reads the service's results into a
:class:`~livetrack.viewer.live.LiveView`; a Qt timer draws the newest snapshot at
most :data:`DRAW_HZ` times a second. The subscriber never waits for the drawing:
frames that arrive between two draws are counted and skipped (latest wins), and the
service, whose PUB socket never blocks, is not slowed by a slow viewer.
"""

from __future__ import annotations

import threading
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from livetrack.viewer.live import LiveView, Snapshot, status_line

#: the most draws a second (the display's rate; more would only cost the viewer)
DRAW_HZ = 30
POLICIES = ("realtime", "lossless")


class LiveTrackWidget(QWidget):
    """Connect to ``livetrack serve``; show its detections, tracks and health.

    Parameters
    ----------
    napari_viewer
        The viewer the layers go into (napari passes it).
    results, control
        The service's results (PUB) and control (REP) addresses.
    """

    def __init__(
        self,
        napari_viewer: Any,
        results: str = "tcp://127.0.0.1:5556",
        control: str = "tcp://127.0.0.1:5557",
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.view = LiveView()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.results = QLineEdit(results)
        self.control = QLineEdit(control)
        self.tail = QSpinBox()
        self.tail.setRange(1, 1000)
        self.tail.setValue(self.view.tail_frames)
        self.tail.valueChanged.connect(self._set_tail)
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(self.toggle)
        self.policy = QComboBox()
        self.policy.addItems(POLICIES)
        self.policy.activated.connect(self._set_policy)
        reset = QPushButton("Reset tracks")
        reset.clicked.connect(lambda: self._request("reset_tracks"))
        self.status = QLabel(status_line({}, 0))
        self.reply = QLabel("")
        form = QFormLayout(self)
        form.addRow("results", self.results)
        form.addRow("control", self.control)
        form.addRow("tail (frames)", self.tail)
        row = QHBoxLayout()
        row.addWidget(self.connect_button)
        row.addWidget(reset)
        form.addRow(row)
        form.addRow("policy", self.policy)
        form.addRow(self.status)
        form.addRow(self.reply)
        self.points_layer: Any = None
        self.tracks_layer: Any = None
        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / DRAW_HZ))
        self.timer.timeout.connect(self.draw)
        self.draws = 0

    def toggle(self) -> None:
        """Connect, or disconnect when connected."""
        if self._thread is not None:
            self.disconnect_service()
        else:
            self.connect_service()

    def connect_service(self) -> None:
        """Start the subscriber thread and the drawing timer."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._subscribe, args=(self.results.text(),), daemon=True, name="livetrack-sub"
        )
        self._thread.start()
        self.timer.start()
        self.connect_button.setText("Disconnect")

    def disconnect_service(self) -> None:
        """Stop the subscriber and the timer (the layers stay)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._thread = None
        self.timer.stop()
        self.connect_button.setText("Connect")

    def _subscribe(self, address: str) -> None:
        from livetrack.wire.client import ResultSubscriber

        sub = ResultSubscriber(address, queue=1000)
        try:
            while not self._stop.is_set():
                result = sub.recv(timeout_ms=100)
                if result is not None:
                    self.view.feed(result)
        finally:
            sub.close()

    def _set_policy(self, _index: int) -> None:
        self._request("set_policy", policy=self.policy.currentText())

    def _set_tail(self, frames: int) -> None:
        self.view.tail_frames = int(frames)
        if self.tracks_layer is not None:
            self.tracks_layer.tail_length = int(frames)

    def _request(self, cmd: str, **args: Any) -> dict[str, Any]:
        from livetrack.wire.client import ControlClient

        client = ControlClient(self.control.text(), timeout_ms=1000, retries=1)
        try:
            reply = client.request(cmd, **args)
        except Exception as exc:  # a service that is gone: say so, keep the viewer
            reply = {"ok": False, "error": str(exc)}
        finally:
            client.close()
        self.reply.setText(f"{cmd}: {'ok' if reply.get('ok') else reply.get('error', reply)}")
        return reply

    def draw(self) -> None:
        """Draw the newest snapshot, if any arrived since the last draw."""
        snap = self.view.snapshot()
        if snap is None:
            return
        self._draw_points(snap)
        if len(snap.tracks):
            self._draw_tracks(snap)
        self.status.setText(status_line(snap.status, snap.undrawn))
        if snap.status.get("policy") in POLICIES:  # the service's, whoever set it
            self.policy.setCurrentText(snap.status["policy"])
        self.draws += 1

    def _draw_points(self, snap: Snapshot) -> None:
        features = {"particle": snap.point_ids}
        if self.points_layer is None or self.points_layer not in self.viewer.layers:
            self.points_layer = self.viewer.add_points(
                snap.points, name="livetrack detections", size=10, features=features,
                face_color="transparent", border_color="yellow", border_width=0.15,
            )  # fmt: skip
        else:
            self.points_layer.data = snap.points
            self.points_layer.features = features

    def _draw_tracks(self, snap: Snapshot) -> None:
        if self.tracks_layer is None or self.tracks_layer not in self.viewer.layers:
            self.tracks_layer = self.viewer.add_tracks(
                snap.tracks, name="livetrack tracks", tail_length=self.view.tail_frames,
                tail_width=3,
            )  # fmt: skip
        else:
            self.tracks_layer.data = snap.tracks
        self.viewer.dims.set_point(0, snap.seq)  # the tails end at the newest frame

    def closeEvent(self, event: Any) -> None:
        """Stop the subscriber with the widget."""
        self.disconnect_service()
        super().closeEvent(event)
