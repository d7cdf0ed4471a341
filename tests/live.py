"""Helpers for tests that run the app under a real server: free ports, databases,
gunicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_database():
    """Create a fresh PostgreSQL database; yield its URL; drop it afterwards."""
    name = f"md_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def wait_for(url_host: str, port: int, path: str = "/healthz", timeout: float = 30.0):
    import http.client

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(url_host, port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
            last = response.status
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        finally:
            conn.close()
        time.sleep(0.2)
    raise TimeoutError(f"nothing answered on {url_host}:{port}{path}: {last!r}")


@contextmanager
def gunicorn(
    env: dict[str, str],
    workers: int = 4,
    extra: list[str] | None = None,
    log_path: Path | None = None,
):
    """Run ``gunicorn wsgi:app`` on a free 127.0.0.1 port; yield the port; stop it."""
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "60",
        "--graceful-timeout",
        "5",
        "--no-control-socket",  # gunicorn 27's default socket is one per user
        *(extra or []),
        "wsgi:app",
    ]
    log = open(log_path or os.devnull, "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            wait_for("127.0.0.1", port, timeout=90)
        except TimeoutError:
            if log_path is not None:
                log.flush()
                raise TimeoutError(log_path.read_text()[-3000:]) from None
            raise
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
