"""What drift monitoring costs: the sketch per prediction request, and the admin
model page with 30 features × 30 days of drift statistics.

    .venv/bin/python benchmarks/drift.py          # about a minute

1. The sketch alone: ``Sketch.observe`` (bin 30 features, add under a lock) per
   request of 1 and 100 rows, in µs.
2. The request path: CPU µs per request of the WSGI app (as in
   benchmarks/request_path.py, SQLite, no Redis) with the sketch on (the version has
   a reference) and with ``MODELDOCK_DRIFT_SOURCE=off``, interleaved rounds, median;
   the difference is the sketch's share of the request, flush thread included
   (``time.process_time`` counts every thread of the process).
3. The model page: SQL statements and milliseconds of ``GET /admin/models/<name>``
   with 30 features × 30 days (and 48 hours) of stored statistics.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="md-metrics-")
)

from benchmarks.request_path import caller, cpu_us_per_request  # noqa: E402

PATH = "/api/v1/models/cancer/predict"


def data():
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    buffer = io.BytesIO()
    joblib.dump(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y),
        buffer,
    )
    csv = "\n".join(
        [
            ",".join(f"x{j}" for j in range(30)),
            *(",".join(map(repr, row.tolist())) for row in X),
        ]
    ).encode()
    return X, buffer.getvalue(), csv


def build(url: str, source: str):
    from app import create_app
    from app.auth.credentials import create_api_key, create_user
    from app.extensions import db
    from app.rollout import versions as service

    X, model, csv = data()
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "LOG_LEVEL": "WARNING",
            "MODELDOCK_ENV": "production",
            "RATELIMIT_ENABLED": False,
            "MODELDOCK_PREDICTION_CACHE_SECONDS": 0,
            "MODELDOCK_DRIFT_SOURCE": source,
        }
    )
    with app.app_context():
        db.create_all()
        service.upload_version("cancer", "cancer.joblib", model, reference=csv)
        admin = create_user("bench", "bench password 1", "admin")
        _, key = create_api_key(admin, "bench", ["predict", "admin"])
        db.session.commit()
    return app, key, X


def sketch_alone() -> dict[str, float]:
    import numpy as np

    from app.observability.reference import BinSpec, describe_rows
    from app.observability.sketch import Sketch

    X, _, _ = data()
    spec = BinSpec.build(1, describe_rows(X, [f"x{j}" for j in range(30)]))
    sketch = Sketch(None, "sketch", 0.0)
    out = {}
    for label, rows in (("1 row", X[7:8]), ("100 rows", X[200:300])):
        rows = np.ascontiguousarray(rows)
        n = 20000 if len(rows) == 1 else 2000
        best = min(
            timeit.repeat(lambda r=rows: sketch.observe(spec, r), number=n, repeat=5)
        )
        out[label] = best / n * 1e6
    return out


def request_path(source: str, requests: int, rounds: int) -> dict[str, float]:
    import logging

    logging.disable(logging.INFO)
    folder = tempfile.mkdtemp(prefix="md-drift-")
    app, key, X = build(f"sqlite:///{folder}/bench.db", source)
    bodies = {
        "1 row": json.dumps({"instances": X[7:8].tolist()}).encode(),
        "100 rows": json.dumps({"instances": X[200:300].tolist()}).encode(),
    }
    calls = {
        label: caller(app, PATH, body, {"X-API-Key": key})
        for label, body in bodies.items()
    }
    for call in calls.values():
        for _ in range(300):
            call()
    samples: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(rounds):
        for label, call in calls.items():
            samples[label].append(cpu_us_per_request(call, requests))
    app.extensions["modeldock.request_log"].close()
    return {label: statistics.median(values) for label, values in samples.items()}


def page() -> dict[str, float]:
    """Seed 30 features × 30 days and 48 hours of statistics; time the model page."""
    from datetime import timedelta

    from sqlalchemy import event

    from app.extensions import db
    from app.models import DriftStat, DriftWindow
    from app.models._time import utcnow
    from app.observability.sketch import day_of

    folder = tempfile.mkdtemp(prefix="md-drift-")
    app, key, X = build(f"sqlite:///{folder}/page.db", "sketch")
    now = utcnow()
    with app.app_context():
        for kind, starts in (
            ("day", [day_of(now) - timedelta(days=i) for i in range(30)]),
            (
                "hour",
                [
                    now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=i)
                    for i in range(48)
                ],
            ),
        ):
            for i, start in enumerate(starts):
                db.session.add(
                    DriftWindow(
                        version_id=1,
                        kind=kind,
                        start=start,
                        generation=1,
                        computed=1,
                        rows=1000,
                    )
                )
                for j in range(30):
                    db.session.add(
                        DriftStat(
                            version_id=1,
                            kind=kind,
                            start=start,
                            feature=j,
                            rows=1000,
                            psi=0.01 * (i % 7),
                            pvalue=0.5,
                            test="chi2",
                        )
                    )
        db.session.commit()
    from tests.conftest import sign_in

    client = app.test_client()
    sign_in(client, "bench", "bench password 1")
    statements: list[str] = []
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    timings = []
    for _ in range(20):
        statements.clear()
        started = time.perf_counter()
        response = client.get("/admin/models/cancer")
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and "drift-table" in response.text, (
            response.status_code
        )
    return {
        "statements": len(statements),
        "ms median": statistics.median(timings),
        "charts": response.text.count('<svg class="chart"'),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(request_path(args.child, args.requests, args.rounds)))
        return 0
    print(
        f"machine: {os.cpu_count()} cores; load average "
        f"{Path('/proc/loadavg').read_text().split()[0]}"
    )
    print(
        "sketch alone, µs per request (30 features):",
        {k: round(v, 1) for k, v in sketch_alone().items()},
    )
    results = {}
    for source in ("sketch", "off"):  # one process each: one limiter per process
        output = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                source,
                "--requests",
                str(args.requests),
                "--rounds",
                str(args.rounds),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[source] = json.loads(output.strip().splitlines()[-1])
    print("\n| body | drift off µs | sketch on µs | difference | share |")
    print("|---|---:|---:|---:|---:|")
    for label in results["off"]:
        off, on = results["off"][label], results["sketch"][label]
        print(
            f"| {label} | {off:.0f} | {on:.0f} | {on - off:+.0f} | "
            f"{(on - off) / off:+.1%} |"
        )
    print("\nmodel page, 30 features × 30 days:", page())
    return 0


if __name__ == "__main__":
    sys.exit(main())
