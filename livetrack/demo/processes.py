"""Child processes of the demo: started with the same Python, logged to files, always reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from livetrack.wire.client import ControlClient, ServiceUnavailableError


class Child:
    """One ``livetrack`` sub-command in its own process, its output in ``log``."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        self._fh = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livetrack.cli", *args],
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
        )

    def running(self) -> bool:
        """Whether it is still running."""
        return self.proc.poll() is None

    def wait_for_line(self, text: str, timeout_s: float) -> bool:
        """Wait until ``text`` appears in its log (or it exits, or time runs out)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if text in self.log.read_text(errors="replace"):
                return True
            if not self.running():
                return False
            time.sleep(0.05)
        return False

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; its exit code."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        return int(self.proc.returncode)

    def tail(self, n: int = 15) -> str:
        """The last lines of its log (for error messages)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def start_service(addr: dict[str, str], log: Path, *extra: str) -> tuple[Child, ControlClient]:
    """``livetrack serve`` on ``addr``; returns once it answers (model loaded), or raises."""
    serve = Child(
        "serve",
        [
            "serve",
            "--frames",
            addr["frames"],
            "--results",
            addr["results"],
            "--control",
            addr["control"],
            *extra,
        ],
        log,
    )
    control = ControlClient(addr["control"], timeout_ms=2000, retries=1)
    end = time.monotonic() + 120
    while True:
        try:
            control.request("status")
            return serve, control
        except ServiceUnavailableError:
            if not serve.running() or time.monotonic() > end:
                control.close()
                serve.stop()
                raise RuntimeError(f"the service did not start:\n{serve.tail()}") from None
