"""Prediction latency and throughput with request logging on vs off, in one run.

    .venv/bin/python benchmarks/request_logging.py             # SQLite in a temp dir
    .venv/bin/python benchmarks/request_logging.py --postgres  # a fresh PostgreSQL db

Two gunicorn servers (gunicorn.conf.py, same database, same model, one worker each)
differ only in MODELDOCK_REQUEST_LOG_ENABLED. The prediction cache is off so every
request runs the model. Latency: sequential keep-alive requests sent to the two
servers in turn, so that noise from other processes hits both alike. Throughput:
both servers loaded at the same time by the same number of clients, sharing the
CPUs; the one that costs more per request completes fewer.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
POSTGRES = os.environ.get("TEST_POSTGRES_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seed(database_url: str) -> str:
    """Create the schema, a user with a key and the iris model; return the key."""
    import io

    import skops.io
    from flask_migrate import upgrade
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from app import create_app
    from app.accounts import create_api_key, create_user
    from app.extensions import db
    from app.registry import service

    X, y = load_iris(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": "bench",
                      "MODELDOCK_LOG_FORMAT": "text", "LOG_LEVEL": "WARNING"})
    with app.app_context():
        upgrade()
        user = create_user("bench", "bench password", "user")
        _, key = create_api_key(user, "bench", ["predict"])
        service.upload_version("iris", "iris.skops", io.BytesIO(
            skops.io.dumps(model)).getvalue())
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return key


def start(port: int, database_url: str, logging_on: bool, tmp: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELDOCK_")}
    env.update(DATABASE_URL=database_url, SECRET_KEY="bench", LOG_LEVEL="warning",
               MODELDOCK_REQUEST_LOG_ENABLED=str(logging_on).lower(),
               MODELDOCK_PREDICTION_CACHE_SECONDS="0",
               MODELDOCK_RATELIMIT_DEFAULT="10000000 per minute",
               PROMETHEUS_MULTIPROC_DIR=str(tmp / f"metrics-{port}"))
    log = open(tmp / f"gunicorn-{port}.log", "wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py",
         "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--access-logfile", "/dev/null",
         # no worker recycling or idle disconnects in the middle of a measurement
         "--max-requests", "0", "--keep-alive", "300", "wsgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"gunicorn on {port} did not start; see {tmp}")


class Caller:
    """One keep-alive connection sending the same prediction request."""

    def __init__(self, port: int, key: str, rows: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        row = [5.1, 3.5, 1.4, 0.2]
        self.body = json.dumps({"instances": [row] * rows}).encode()
        self.headers = {"Authorization": f"Bearer {key}",
                        "Content-Type": "application/json"}

    def __call__(self) -> float:
        started = time.perf_counter()
        self.conn.request("POST", "/api/v1/models/iris/predict", self.body,
                          self.headers)
        response = self.conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"unexpected status {response.status}")
        return time.perf_counter() - started

    def close(self):
        self.conn.close()


def throughput(ports: dict[str, int], key: str, rows: int, clients: int,
               seconds: float) -> dict[str, float]:
    """Load both servers at the same time; requests per second each completed."""
    done = threading.Event()
    counts = {mode: [0] * clients for mode in ports}

    def run(mode, i):
        caller = Caller(ports[mode], key, rows)
        try:
            while not done.is_set():
                caller()
                counts[mode][i] += 1
        finally:
            caller.close()

    threads = [threading.Thread(target=run, args=(mode, i))
               for mode in ports for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    done.set()
    for thread in threads:
        thread.join()
    return {mode: sum(counts[mode]) / seconds for mode in ports}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", action="store_true",
                        help="use a fresh database on the local PostgreSQL")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200, help="per round and mode")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="throughput window per round and mode")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="modeldock-bench-"))
    admin = None
    if args.postgres:
        import sqlalchemy as sa

        name = f"bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        database_url = POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    else:
        database_url = f"sqlite:///{tmp / 'bench.db'}"
    servers = {}
    try:
        key = seed(database_url)
        ports = {"on": free_port(), "off": free_port()}
        for mode, port in ports.items():
            servers[mode] = start(port, database_url, mode == "on", tmp)
        for port in ports.values():  # warm up
            caller = Caller(port, key, args.rows)
            for _ in range(50):
                caller()
            caller.close()
        latencies: dict[str, list[float]] = {"on": [], "off": []}
        rates: dict[str, list[float]] = {"on": [], "off": []}
        callers = {mode: Caller(port, key, args.rows) for mode, port in ports.items()}
        cpu_before = {mode: worker_cpu(servers[mode]) for mode in ports}
        served = {mode: 0 for mode in ports}
        for _ in range(args.rounds):
            # Latency: one request to each server in turn, so that whatever else
            # runs on the machine slows both alike.
            for i in range(args.requests):
                order = ("on", "off") if i % 2 == 0 else ("off", "on")
                for mode in order:
                    latencies[mode].append(callers[mode]())
            # Throughput: both servers loaded at once, sharing the same CPUs.
            for mode, rate in throughput(ports, key, args.rows, args.clients,
                                         args.seconds).items():
                rates[mode].append(rate)
                served[mode] += round(rate * args.seconds)
            for mode, port in ports.items():  # fresh connections after the load
                callers[mode].close()
                callers[mode] = Caller(port, key, args.rows)
        for caller in callers.values():
            caller.close()
        time.sleep(2 * 1.0)  # let the last request-log flush happen
        cpu_ms = {}
        for mode in ports:
            served[mode] += len(latencies[mode])
            cpu_ms[mode] = (worker_cpu(servers[mode]) - cpu_before[mode]) \
                / served[mode] * 1000
        report(args, latencies, rates, cpu_ms, database_url.split(":")[0])
    finally:
        for process in servers.values():
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        if admin is not None:
            import sqlalchemy as sa

            with admin.connect() as conn:
                conn.execute(sa.text(
                    f'DROP DATABASE IF EXISTS "{database_url.rsplit("/", 1)[1]}" '
                    "WITH (FORCE)"))
            admin.dispose()


def worker_cpu(process: subprocess.Popen) -> float:
    """CPU seconds (user + system) used so far by a gunicorn master's workers."""
    pid = process.pid
    total = 0.0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def report(args, latencies, rates, cpu_ms, backend: str) -> None:
    def ms(values, q):
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    result = {"backend": backend, "rows_per_request": args.rows,
              "requests_per_mode": len(latencies["on"])}
    print(f"\nrequest logging on vs off — {backend}, {args.rows} row(s) per request, "
          f"{len(latencies['on'])} sequential requests per mode (interleaved), "
          f"{args.rounds} × {args.seconds:.0f} s of {args.clients} concurrent clients "
          f"per mode (both at once)\n")
    print(f"{'':24}{'logging on':>12}{'logging off':>13}{'overhead':>10}")
    for label, q in (("latency p50 (ms)", 50), ("latency p95 (ms)", 95)):
        on, off = ms(latencies["on"], q), ms(latencies["off"], q)
        print(f"{label:24}{on:12.3f}{off:13.3f}{(on / off - 1) * 100:9.1f}%")
        result[f"p{q}_ms"] = {"on": round(on, 3), "off": round(off, 3)}
    mean_on = statistics.fmean(latencies["on"]) * 1000
    mean_off = statistics.fmean(latencies["off"]) * 1000
    print(f"{'latency mean (ms)':24}{mean_on:12.3f}{mean_off:13.3f}"
          f"{(mean_on / mean_off - 1) * 100:9.1f}%")
    rate_on, rate_off = statistics.median(rates["on"]), statistics.median(rates["off"])
    print(f"{'throughput (req/s)':24}{rate_on:12.1f}{rate_off:13.1f}"
          f"{(1 - rate_on / rate_off) * 100:9.1f}%")
    print(f"{'worker CPU per request (ms)':28}{cpu_ms['on']:8.3f}{cpu_ms['off']:13.3f}"
          f"{(cpu_ms['on'] / cpu_ms['off'] - 1) * 100:9.1f}%")
    result.update(mean_ms={"on": round(mean_on, 3), "off": round(mean_off, 3)},
                  throughput_rps={"on": round(rate_on, 1), "off": round(rate_off, 1)},
                  worker_cpu_ms_per_request={k: round(v, 3) for k, v in cpu_ms.items()})
    print("\n" + json.dumps(result))


if __name__ == "__main__":
    main()
