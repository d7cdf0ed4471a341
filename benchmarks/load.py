"""Load from wrk (Debian package): a Lua script per body, one bounded run per cell.

By default every request is sent with ``Connection: close`` (a connection per
request, as nginx sends them to gunicorn without upstream keep-alive);
``keepalive=True`` keeps each connection open, as ``requests.Session``, browsers and
most HTTP clients do. benchmarks/targets.py measures both.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}
wrk.body = [==[{body}]==]

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d %d %.1f\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50.0), latency:percentile(99.0), latency.mean))
end
"""
RESULT = re.compile(r"WRK_RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) ([\d.]+)")


def ensure_wrk() -> str:
    """Return wrk's path; install the Debian package if it is missing (root only)."""
    path = shutil.which("wrk")
    if path:
        return path
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "wrk"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return path


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class Run:
    """One wrk run's numbers."""

    requests: int
    seconds: float
    errors: int
    non_2xx: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    load_before: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class Wrk:
    """Writes Lua scripts to a private temporary folder and runs wrk with them."""

    def __init__(self):
        self.binary = ensure_wrk()
        self.folder = Path(tempfile.mkdtemp(prefix="modeldock-wrk-"))
        self._scripts: dict[tuple, Path] = {}

    def script(self, body: bytes, headers: dict[str, str]) -> Path:
        key = (body, tuple(sorted(headers.items())))
        if key not in self._scripts:
            path = self.folder / f"s{len(self._scripts)}.lua"
            lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
            path.write_text(LUA.format(headers=lines, body=body.decode()))
            self._scripts[key] = path
        return self._scripts[key]

    def run(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        connections: int,
        seconds: int,
        warmup: int = 1,
        keepalive: bool = False,
    ) -> Run:
        """Warm up briefly, then measure ``seconds`` at ``connections``."""
        if not keepalive:
            headers = {**headers, "Connection": "close"}
        script = self.script(body, headers)
        if warmup > 0:
            self._wrk(url, script, connections, warmup)
        load = load_average()
        return Run(*self._wrk(url, script, connections, seconds), load_before=load)

    def _wrk(self, url: str, script: Path, connections: int, seconds: float):
        command = [
            self.binary,
            "-t1",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ]
        output = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=True
        ).stdout
        match = RESULT.search(output)
        if match is None:
            raise RuntimeError(f"wrk printed no result:\n{output}")
        requests, micros, errors, status, p50, p99, mean = match.groups()
        return (
            int(requests),
            int(micros) / 1e6,
            int(errors),
            int(status),
            int(p50) / 1000,
            int(p99) / 1000,
            float(mean) / 1000,
        )

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
