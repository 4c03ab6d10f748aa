"""CURVE on the service's sockets: an allowed key works, an unknown key and no key get nothing."""

from __future__ import annotations

import shutil
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from livetrack.detection.classical import TrackpyDetector
from livetrack.service import Service, ServiceConfig
from livetrack.wire import protocol as wire
from livetrack.wire.client import (
    ControlClient,
    FramePublisher,
    ResultSubscriber,
    ServiceUnavailableError,
)
from livetrack.wire.security import (
    ClientKeys,
    KeyFileError,
    ServerKeys,
    check_exposure,
    generate_keys,
)

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
LOCAL = "tcp://127.0.0.1:0"


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    generate_keys(d, "server")
    generate_keys(d / "clientside", "alice")
    generate_keys(d / "clientside", "mallory")
    (d / "clients").mkdir()
    shutil.copy(d / "clientside" / "alice.key", d / "clients" / "alice.key")
    return d


def test_secret_files_are_private(keydir: Path) -> None:
    mode = stat.S_IMODE((keydir / "server.key_secret").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE((keydir / "clientside" / "alice.key_secret").stat().st_mode) == 0o600


def test_exposure_rules() -> None:
    with pytest.raises(PermissionError, match="--keys"):
        check_exposure(("tcp://0.0.0.0:5555",), insecure=False, keys=None)
    check_exposure(("tcp://0.0.0.0:5555",), insecure=False, keys="/some/keys")
    check_exposure(("tcp://0.0.0.0:5555",), insecure=True, keys=None)
    check_exposure(("tcp://127.0.0.1:5555", "ipc:///tmp/x"), insecure=False, keys=None)


def test_incomplete_key_directories_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"server\.key_secret"):
        ServerKeys.load(tmp_path)
    generate_keys(tmp_path, "server")
    with pytest.raises(KeyFileError, match="no allowed client"):
        ServerKeys.load(tmp_path)


@pytest.mark.slow
def test_only_allowed_clients_are_served(keydir: Path) -> None:
    cfg = ServiceConfig(
        frames=LOCAL, results=LOCAL, control=LOCAL, policy="lossless", keys=str(keydir)
    )
    service = Service(TrackpyDetector(), cfg)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    assert service.ready.wait(10)
    ep = service.endpoints
    server_pub = keydir / "server.key"
    alice = ClientKeys.load(keydir / "clientside" / "alice.key_secret", server_pub)
    mallory = ClientKeys.load(keydir / "clientside" / "mallory.key_secret", server_pub)
    frame = np.random.default_rng(0).poisson(100, (64, 64)).astype(np.uint16)
    try:
        # allowed key: control, frames and results all work
        ok_ctl = ControlClient(ep["control"], timeout_ms=3000, retries=1, keys=alice)
        assert ok_ctl.request("status")["ok"]
        ok_sub = ResultSubscriber(ep["results"], topics=(wire.TOPIC_TRACKS,), keys=alice)
        ok_pub = FramePublisher(ep["frames"], keys=alice)
        time.sleep(0.5)
        ok_pub.publish(frame, seq=0)
        assert ok_sub.recv(5000) is not None
        # unknown key and no key: nothing in, nothing out
        for keys in (mallory, None):
            ctl = ControlClient(ep["control"], timeout_ms=500, retries=1, keys=keys)
            with pytest.raises(ServiceUnavailableError):
                ctl.request("status")
            ctl.close()
            sub = ResultSubscriber(ep["results"], topics=(wire.TOPIC_TRACKS,), keys=keys)
            pub = FramePublisher(ep["frames"], keys=keys)
            time.sleep(0.3)
            pub.publish(frame, seq=1)
            ok_pub.publish(frame, seq=2 if keys is mallory else 3)  # the service is still working
            assert sub.recv(1000) is None
            assert ok_sub.recv(5000) is not None
            sub.close()
            pub.close()
        assert ok_ctl.request("stats")["status"]["received"] == 3  # only alice's frames arrived
        for c in (ok_ctl, ok_sub, ok_pub):
            c.close()
    finally:
        service.stop()
        thread.join(5)
    assert not thread.is_alive()


@pytest.mark.slow
def test_cli_serve_off_loopback_needs_keys_and_takes_them(keydir: Path) -> None:
    import subprocess
    import sys

    def serve(*extra: str) -> subprocess.CompletedProcess[str]:
        args = ["serve", "--classical", "--frames", "tcp://0.0.0.0:0", "--results", LOCAL]
        return subprocess.run(
            [sys.executable, "-m", "livetrack.cli", *args, "--control", LOCAL, *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = serve("--seconds", "0.5")
    assert refused.returncode == 2
    assert "not a loopback address" in refused.stderr
    served = serve("--keys", str(keydir), "--seconds", "0.5")
    assert served.returncode == 0, served.stderr[-2000:]
    assert "tcp://0.0.0.0:" in served.stderr + served.stdout
    broken = serve("--keys", str(keydir / "clientside"), "--seconds", "0.5")
    assert broken.returncode == 2
    assert "server.key_secret" in broken.stderr
