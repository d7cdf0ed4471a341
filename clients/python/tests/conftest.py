"""A real ModelDock for the client's tests: gunicorn on 127.0.0.1 (one worker, so
rate limits count in one place), SQLite, the demo model of `make run` (iris species)
and a diabetes regressor, and API keys with tiny rate limits. Its access log records
each request's method, path, status and Idempotency-Key."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]  # the ModelDock repository
ACCESS_FORMAT = "%(m)s %(U)s %(s)s %({idempotency-key}i)s"

# A key's own rate limit (flask-limiter syntax) for each test that needs one.
KEY_LIMITS = {
    "predict": None,
    "storm": "4 per second",
    "starved": "1 per hour",
    "restart": "1 per 2 seconds",
}


@dataclass(frozen=True)
class Hit:
    """One line of the server's access log."""

    method: str
    path: str
    status: int
    idempotency_key: str


class LiveServer:
    """gunicorn serving ModelDock; can be killed, paused and started again on the
    same port."""

    def __init__(self, tmp: Path, database_url: str, keys: dict[str, str]):
        self.tmp, self.keys = tmp, keys
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = tmp / "access.log"
        self.error_log = tmp / "error.log"
        self.output = tmp / "server.out"  # the app's own JSON logs
        metrics = tmp / "metrics"
        metrics.mkdir()
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},
            "DATABASE_URL": database_url,
            "SECRET_KEY": "client-test-secret",
            "MODELDOCK_ROUTING_REFRESH_SECONDS": "0",
            "MODELDOCK_REQUEST_LOG_FLUSH_SECONDS": "0.2",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--graceful-timeout",
            "2",
            # gunicorn's plain logger: its access log can show a request header.
            "--logger-class",
            "gunicorn.glogging.Logger",
            "--access-logfile",
            str(self.access_log),
            "--access-logformat",
            ACCESS_FORMAT,
            "--error-logfile",
            str(self.error_log),
            "wsgi:app",
        ]
        # A session of its own, so that kill() reaches the worker and any
        # inference process too, and nothing else.
        with open(self.output, "ab") as output:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn exited:\n" + self.errors())
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except urllib.error.HTTPError as error:
                error.close()
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer:\n" + self.errors())

    def ensure_up(self) -> None:
        """Running and not paused (a test that failed halfway may leave it not)."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        else:
            self.resume()

    def kill(self) -> None:
        """SIGKILL the whole server at once: no graceful anything."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel, never answered."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGCONT)  # a paused server cannot stop
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def errors(self) -> str:
        logs = [p for p in (self.error_log, self.output) if p.exists()]
        return "\n".join(p.read_text()[-3000:] for p in logs)

    def hits(self) -> list[Hit]:
        """Every request logged so far, in order."""
        if not self.access_log.exists():
            return []
        hits = []
        for line in self.access_log.read_text().splitlines():
            method, path, status, key = line.split(" ", 3)
            hits.append(Hit(method, path, int(status), key))
        return hits

    def hits_of(self, key: str, timeout: float = 5.0, at_least: int = 1) -> list[Hit]:
        """The requests that carried ``key``, once the log has ``at_least`` of them
        (gunicorn writes a line after the answer has gone: a client can be first)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [hit for hit in self.hits() if hit.idempotency_key == key]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def _prepare(database_url: str) -> dict[str, str]:
    """Create the tables, a user, the keys and the two models; return the keys."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from skops.io import dumps

    from app import create_app
    from app.auth.credentials import create_api_key, create_user
    from app.cli.demo import train_demo_model
    from app.extensions import db
    from app.rollout import versions

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "client-test-secret",
            "DATABASE_URL": database_url,
            "RATELIMIT_ENABLED": False,
            "MODELDOCK_REQUEST_LOG_FLUSH_SECONDS": 0.0,
            "MODELDOCK_VALIDATION_MEMORY_MB": 1024,
        }
    )
    X, y = load_diabetes(return_X_y=True)
    diabetes = Ridge(alpha=0.5).fit(X, y)
    try:
        with app.app_context():
            db.create_all()
            user = create_user("alice", "alice password 1", "user")
            keys = {
                name: create_api_key(user, name, ["predict"], rate_limit=limit)[1]
                for name, limit in KEY_LIMITS.items()
            }
            versions.upload_version("demo", "demo.skops", train_demo_model())
            versions.upload_version("diabetes", "diabetes.skops", dumps(diabetes))
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
        return keys
    finally:
        app.extensions["modeldock"].close()  # its inference processes


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client-server")
    database_url = f"sqlite:///{tmp / 'modeldock.db'}"
    live = LiveServer(tmp, database_url, _prepare(database_url))
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def md(server):
    """The server, up and answering, for one test."""
    server.ensure_up()
    return server
