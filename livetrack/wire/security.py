"""CURVE encryption and client allow-lists for the service's sockets (pyzmq ``zmq.auth``).

A key directory holds ``server.key`` / ``server.key_secret`` (the service's pair)
and ``clients/`` with one public ``*.key`` per allowed client. ``livetrack keys``
makes pairs; secret files are written with mode 0600. Clients use their own pair
plus the server's public key. Imports no part of livetrack.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


class KeyFileError(ValueError):
    """A key directory or key file is missing or unreadable."""


def generate_keys(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Create ``name.key`` (public) and ``name.key_secret`` (mode 0600) in ``directory``."""
    if not zmq.has("curve"):
        raise KeyFileError("this libzmq has no CURVE support")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)  # the secret file is never readable by others, not even briefly
    try:
        public, secret = zmq.auth.create_certificates(d, name)
    finally:
        os.umask(old)
    os.chmod(secret, stat.S_IRUSR | stat.S_IWUSR)
    return Path(public), Path(secret)


@dataclass(frozen=True)
class ServerKeys:
    """The service's key pair and the folder of allowed client public keys."""

    public: bytes
    secret: bytes
    clients_dir: Path

    @classmethod
    def load(cls, directory: str | Path) -> ServerKeys:
        """Read ``server.key_secret`` and check ``clients/`` from a key directory."""
        d = Path(directory)
        secret_file = d / "server.key_secret"
        clients = d / "clients"
        if not secret_file.is_file():
            raise KeyFileError(
                f"{d}: no server.key_secret (make one with: livetrack keys {d} --name server)"
            )
        if not clients.is_dir() or not any(clients.glob("*.key")):
            raise KeyFileError(f"{clients}: no allowed client public keys (*.key)")
        public, secret = zmq.auth.load_certificate(secret_file)
        if secret is None:
            raise KeyFileError(f"{secret_file}: holds no secret key")
        return cls(public, secret, clients)


def secure_server(
    context: zmq.Context[Any], keys: ServerKeys, sockets: list[zmq.Socket[Any]]
) -> ThreadAuthenticator:
    """Turn on CURVE on server sockets; only clients in the allow-list can connect."""
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(keys.clients_dir))
    for s in sockets:
        s.curve_secretkey = keys.secret
        s.curve_publickey = keys.public
        s.curve_server = True
    return auth


@dataclass(frozen=True)
class ClientKeys:
    """A client's key pair and the server's public key."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def load(cls, client_secret_file: str | Path, server_public_file: str | Path) -> ClientKeys:
        """Read a client's ``*.key_secret`` and the server's ``server.key``."""
        public, secret = zmq.auth.load_certificate(client_secret_file)
        server_public, _ = zmq.auth.load_certificate(server_public_file)
        if secret is None:
            raise KeyFileError(f"{client_secret_file}: holds no secret key")
        return cls(public, secret, server_public)

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Configure a client socket before it connects."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server_public


def is_local(address: str) -> bool:
    """Whether a ZeroMQ address stays on this machine (loopback, ipc, inproc)."""
    url = urlparse(address)
    if url.scheme in ("ipc", "inproc"):
        return True
    host = (url.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(addresses: tuple[str, ...], *, insecure: bool, keys: str | None) -> None:
    """Refuse to bind beyond this machine without encryption, unless told it is fine."""
    for addr in addresses:
        if not is_local(addr) and keys is None and not insecure:
            raise PermissionError(
                f"{addr} is not a loopback address: binding it would expose the service to the "
                "network. Give CURVE keys (--keys DIR, see livetrack keys), or pass --insecure "
                "if this network is trusted."
            )


def check_metrics_exposure(host: str, *, insecure: bool) -> None:
    """Refuse plain-HTTP metrics beyond this machine unless told it is fine."""
    if not is_local(f"tcp://{host}:0") and not insecure:
        raise PermissionError(
            f"--metrics-host {host} is not a loopback address, and the metrics are plain "
            "HTTP, which CURVE keys do not cover: pass --insecure if this network is "
            "trusted, or keep them on 127.0.0.1."
        )
