"""What each part of ModelDock's request path costs, in CPU microseconds per request.

    .venv/bin/python benchmarks/request_path.py          # about 40 s

No HTTP server and no load tool: the WSGI app is called directly, one request at a
time, so the numbers are the app's own CPU cost per request and barely move with
the machine's load (HTTP parsing and sockets, which every app pays, are in
``benchmarks/serving.py``). Variants of the same production app (PostgreSQL,
rate limits in Redis, request logging, metrics, the logistic pipeline from the
serving benchmark served by onnxruntime, prediction cache off) each switch one part
off; the differences are what those parts cost. The Flask constant-JSON app is the
floor: what Flask itself costs per request. Rounds are interleaved and the median
is printed, so that drift hits every variant alike.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="md-metrics-")
)

VARIANTS = {
    "ModelDock, everything on": {},
    "  request logging off": {"MODELDOCK_REQUEST_LOG_ENABLED": False},
    "  rate limiter off": {"RATELIMIT_ENABLED": False},
    "  rate limits in worker memory (no Redis)": {"REDIS_URL": None},
    "  logging and limiter off": {
        "MODELDOCK_REQUEST_LOG_ENABLED": False,
        "RATELIMIT_ENABLED": False,
    },
}
PATH = "/api/v1/models/logistic/predict"


def environ(path: str, body: bytes, headers: dict[str, str]) -> dict:
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.errors": sys.stderr,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    env.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    return env


def caller(app, path: str, body: bytes, headers: dict[str, str]):
    """A function that sends one request to ``app`` and checks it answered 200."""
    status: list[str] = []

    def start_response(line, _headers, _exc=None):
        status.append(line)

    def call() -> None:
        out = app(environ(path, body, headers), start_response)
        b"".join(out)
        getattr(out, "close", lambda: None)()

    call()
    if not status[-1].startswith("200"):
        raise RuntimeError(f"{path} answered {status[-1]}")
    return call


def cpu_us_per_request(call, count: int) -> float:
    started = time.process_time()  # the whole process: background threads count too
    for _ in range(count):
        call()
    return (time.process_time() - started) / count * 1e6


def build(url: str, overrides: dict, model: bytes, sample: list):
    from flask_migrate import upgrade

    from app import create_app
    from app.auth.credentials import create_api_key, create_user
    from app.extensions import db
    from app.rollout import versions as service

    config = {
        "DATABASE_URL": url,
        "SECRET_KEY": "bench",
        "LOG_LEVEL": "WARNING",
        "MODELDOCK_ENV": "production",
        "MODELDOCK_PREDICTION_CACHE_SECONDS": 0,
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "MODELDOCK_REDIS_PREFIX": f"bench-{secrets.token_hex(4)}:",
    }
    config.update(overrides)
    if config["REDIS_URL"] is None:
        del config["REDIS_URL"]
    app = create_app(config)
    with app.app_context():
        from sqlalchemy import inspect

        if "models" not in inspect(db.engine).get_table_names():  # the first variant
            upgrade()
            service.upload_version(
                "logistic", "logistic.joblib", model, sample_rows=sample
            )
        admin = create_user(
            f"bench-{secrets.token_hex(4)}", secrets.token_hex(8), "admin"
        )
        _, key = create_api_key(
            admin, "bench", ["predict"], rate_limit="100000000 per minute"
        )
        db.session.commit()
    return app, key


def measure(variant: str, url: str, requests: int, rounds: int) -> dict[str, float]:
    """In this process: median CPU µs per request of ``variant`` for each body."""
    import logging

    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logging.disable(logging.INFO)
    X, y = load_breast_cancer(return_X_y=True)
    buffer = io.BytesIO()
    joblib.dump(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y),
        buffer,
    )
    bodies = {
        "1 row": json.dumps({"instances": X[7:8].tolist()}).encode(),
        "100 rows": json.dumps({"instances": X[200:300].tolist()}).encode(),
    }
    if variant == FLOOR:
        from benchmarks.baselines.flask_constant import app

        calls = {
            label: caller(app, "/predict", body, {}) for label, body in bodies.items()
        }
    else:
        app, key = build(url, VARIANTS[variant], buffer.getvalue(), X[::15].tolist())
        calls = {
            label: caller(app, PATH, body, {"X-API-Key": key})
            for label, body in bodies.items()
        }
    for call in calls.values():
        for _ in range(300):
            call()
    samples: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(rounds):  # the bodies interleaved
        for label, call in calls.items():
            samples[label].append(cpu_us_per_request(call, requests))
    if variant != FLOOR:
        app.extensions["modeldock.request_log"].close()
    return {label: statistics.median(values) for label, values in samples.items()}


FLOOR = "Flask constant JSON (the floor)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # child process
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        print(
            json.dumps(measure(args.variant, args.database, args.requests, args.rounds))
        )
        return 0

    import subprocess

    from tests.live import postgres_database

    print(
        f"machine: {os.cpu_count()} cores; load average "
        f"{Path('/proc/loadavg').read_text().split()[0]}; {args.rounds} rounds of "
        f"{args.requests} requests per variant and body, median"
    )
    results = {}
    with postgres_database() as url:
        # One process per variant: flask-limiter's extension is shared by every app
        # in a process, so variants of it cannot live side by side.
        for variant in [*VARIANTS, FLOOR]:
            output = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--variant",
                    variant,
                    "--database",
                    url,
                    "--requests",
                    str(args.requests),
                    "--rounds",
                    str(args.rounds),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[variant] = json.loads(output.strip().splitlines()[-1])
    full = results["ModelDock, everything on"]
    print("\n| body | variant | CPU µs per request | vs everything on |")
    print("|---|---|---:|---:|")
    for label in full:
        for variant, numbers in results.items():
            us = numbers[label]
            print(f"| {label} | {variant} | {us:.0f} | {us - full[label]:+.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
