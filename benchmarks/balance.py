"""Do keep-alive clients keep every worker busy? ModelDock as `make run` serves it.

``python benchmarks/balance.py`` (run by ``make bench``): gunicorn with the
repository's gunicorn.conf.py (2 workers), SQLite, the demo model, an API key,
request logs and metrics on; wrk with keep-alive connections (as requests.Session,
browsers and most clients behave) at 1, 8, 32 and 64 connections, 3 s each. The
access log's pid gives each worker's share. Prints one table and the targets of
issue 18 that it can judge: every worker within ±20 % of an equal share at 8, 32 and
64 connections, and req/s at 32 ≥ req/s at 8.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.load import ensure_wrk, load_average  # noqa: E402
from tests.live import free_port, wait_for  # noqa: E402

CONNECTIONS = (1, 8, 32, 64)
SECONDS = 3
WORKERS = 2
BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def seed(folder: Path) -> tuple[str, str]:
    """A migrated SQLite database with the demo model; return (url, API key)."""
    url = f"sqlite:///{folder / 'modeldock.db'}"
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench", "FLASK_APP": "wsgi"}
    flask = str(Path(sys.executable).parent / "flask")
    subprocess.run([flask, "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    from app import create_app
    from app.demo import ensure_demo
    from app.extensions import db

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench",
                      "MODELDOCK_ROUTING_REFRESH_SECONDS": 0})
    with app.app_context():
        ensure_demo(folder)
        db.session.commit()
    app.extensions["modeldock"].close()
    return url, json.loads((folder / "demo-credentials.json").read_text())["api_key"]


def wrk(port: int, key: str, connections: int, folder: Path) -> dict:
    script = folder / "keepalive.lua"
    script.write_text('wrk.method = "POST"\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {key}"\n'
                      f"wrk.body = [==[{BODY}]==]\n")
    out = subprocess.run([ensure_wrk(), "-t1", f"-c{connections}", f"-d{SECONDS}s",
                          "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/api/v1/models/demo/predict"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {"rps": rps, "p50": latency.get("50"), "p99": latency.get("99")}


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="modeldock-balance-"))
    url, key = seed(folder)
    port, log = free_port(), folder / "access.log"
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench",
           "MODELDOCK_RATELIMIT_DEFAULT": "100000000 per minute"}
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    server = subprocess.Popen(
        [gunicorn, "-c", str(ROOT / "gunicorn.conf.py"), "--bind",
         f"127.0.0.1:{port}", "--workers", str(WORKERS), "--access-logfile",
         str(log), "wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_for("127.0.0.1", port, timeout=90)
        print(f"load average before: {load_average():.2f}")
        for connections in CONNECTIONS:
            log.write_text("")
            result = wrk(port, key, connections, folder)
            shares = collections.Counter(
                json.loads(line).get("pid") for line in log.read_text().splitlines()
                if line.startswith("{"))
            counts = sorted(shares.values(), reverse=True) + [0] * WORKERS
            rows.append((connections, result, counts[:WORKERS]))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("| connections | req/s | p50 | p99 | requests per worker | worst share vs equal |")
    print("|---:|---:|---:|---:|---|---:|")
    verdicts = []
    for connections, result, counts in rows:
        equal = sum(counts) / WORKERS
        worst = max(abs(c - equal) / equal for c in counts) if equal else 1.0
        print(f"| {connections} | {result['rps']:.0f} | {result['p50']} | "
              f"{result['p99']} | {' : '.join(map(str, counts))} | ±{worst:.0%} |")
        if connections >= 8:
            verdicts.append((f"every worker within ±20 % at {connections} connections",
                             worst <= 0.20))
    rps = {connections: result["rps"] for connections, result, _ in rows}
    verdicts.append(("req/s at 32 ≥ req/s at 8", rps[32] >= rps[8]))
    for what, met in verdicts:
        print(f"{'pass' if met else 'FAIL'}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
