"""Start the apps under test with gunicorn on 127.0.0.1, read their workers' memory.

Every app (ModelDock and the baselines) gets the same worker settings: the
repository's ``gunicorn.conf.py`` when it exists, else ``DEFAULT_SETTINGS``.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONF = ROOT / "gunicorn.conf.py"
# Two workers for two cores; threads so that keep-alive connections are served
# (the sync worker closes every connection) and micro-batching has company.
DEFAULT_SETTINGS = [
    "--workers",
    "2",
    "--worker-class",
    "gthread",
    "--threads",
    "4",
    "--keep-alive",
    "5",
    "--timeout",
    "60",
    "--graceful-timeout",
    "5",
]


BASELINE_HOOKS = """
exec(compile(open({conf!r}).read(), {conf!r}, "exec"))


def post_worker_init(worker):
    \"\"\"ModelDock's model warm-up does not apply: a baseline loads at import.\"\"\"
"""


def worker_settings(
    folder: Path | None = None, modeldock: bool = True
) -> tuple[list[str], str]:
    """(gunicorn arguments, description) shared by every app in the benchmark.

    With the repository's ``gunicorn.conf.py``, a baseline gets the same file with
    ModelDock's own warm-up hook made a no-op (a plain WSGI function has no app
    context to warm); every worker setting stays the same.
    """
    if CONF.exists():
        conf = CONF
        if not modeldock and folder is not None:
            conf = folder / "gunicorn-baseline.conf.py"
            conf.write_text(BASELINE_HOOKS.format(conf=str(CONF)))
        return ["-c", str(conf)], f"{CONF.name} (found in the repository)"
    return list(DEFAULT_SETTINGS), " ".join(DEFAULT_SETTINGS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def workers(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []

    def memory(self) -> list[dict[str, float]]:
        """Resident and peak resident MB of each worker (VmRSS, VmHWM)."""
        out = []
        for pid in self.workers():
            fields = {}
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "VmHWM"):
                        fields[key] = int(value.split()[0]) / 1024
            except OSError:
                continue
            out.append(
                {
                    "pid": pid,
                    "rss_mb": round(fields.get("VmRSS", 0), 1),
                    "peak_mb": round(fields.get("VmHWM", 0), 1),
                }
            )
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    name: str,
    app: str,
    env: dict[str, str],
    log_dir: Path,
    pythonpath: str | None = None,
    settings: list[str] | None = None,
    cwd: Path = ROOT,
) -> Server:
    """Start ``gunicorn app`` on a free port (does not wait for it); ``settings``
    replaces the shared worker settings (the tutorial app's own 2 sync workers);
    ``cwd`` is the checkout whose ``app`` gunicorn imports (an earlier commit's)."""
    if settings is None:
        settings, _ = worker_settings(log_dir, modeldock=app.startswith("wsgi:"))
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        *settings,
        "--bind",
        f"127.0.0.1:{port}",
        "--no-control-socket",
    ]
    if pythonpath:
        command += ["--pythonpath", pythonpath]
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, app],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Server(name, port, process, log_path, env)


def wait_ready(server: Server, timeout: float = 90.0) -> None:
    """Wait until the server answers any HTTP request (every worker booted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited; see {server.log_path}")
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
        finally:
            connection.close()
    raise TimeoutError(f"{server.name} did not answer within {timeout} s")
