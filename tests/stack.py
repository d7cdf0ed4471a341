"""Helpers for tests that run the real servers: ports, processes, an HTTPS client."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def stop(
    process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 30.0
) -> None:
    """Stop one process we started, by its pid; kill it if it does not go."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def children(pid: int) -> set[int]:
    """The live child pids of ``pid`` (gunicorn's workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes
    elapsed: float = 0.0
    extra: dict = field(default_factory=dict)

    def all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def json(self):
        import json

        return json.loads(self.body)


class _TLS(http.client.HTTPSConnection):
    """Connects to 127.0.0.1 while presenting (and verifying) the host name."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _Plain(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)


class Client:
    """Talks to a host name served on 127.0.0.1, over HTTPS (verified) or HTTP."""

    def __init__(self, host: str, cafile: Path | None = None):
        self.host = host
        self.context = (
            ssl.create_default_context(cafile=str(cafile)) if cafile else None
        )

    def request(
        self,
        method: str,
        port: int,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        tls: bool = True,
        timeout: float = 30.0,
    ) -> Response:
        if tls:
            conn = _TLS(self.host, port, context=self.context, timeout=timeout)
        else:
            conn = _Plain(self.host, port, timeout=timeout)
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return Response(
                response.status, response.msg, data, time.perf_counter() - started
            )
        finally:
            conn.close()


def openssl_handshake(
    port: int, version: str, servername: str | None = None, cafile: Path | None = None
) -> tuple[bool, str]:
    """Try a TLS handshake with ``openssl s_client -<version>`` (tls1, tls1_1, …).

    SECLEVEL=0 lets the client offer the old protocols at all: modern OpenSSL
    refuses them by itself, which would prove nothing about the server.
    """
    command = [
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        f"-{version}",
        "-cipher",
        "DEFAULT:@SECLEVEL=0",
    ]
    if servername:
        command += ["-servername", servername]
    if cafile:
        command += ["-CAfile", str(cafile)]
    result = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20
    )
    output = result.stdout + result.stderr
    negotiated = result.returncode == 0 and "Cipher is (NONE)" not in output
    return negotiated, output


def start_logged(command: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """Start a server process with stdout and stderr in ``log``."""
    handle = open(log, "wb")
    try:
        return subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )
    finally:
        handle.close()  # the child keeps its own descriptor


def env_with(**values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELDOCK_", "PROMETHEUS_"))
    }
    env.update(values)
    return env
