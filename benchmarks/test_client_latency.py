"""Time one single-row prediction through Flask's test client (no HTTP), median of many.

Run: .venv/bin/python benchmarks/test_client_latency.py
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from app.accounts import create_api_key, create_user  # noqa: E402
from app.demo import train_demo_model  # noqa: E402
from app.extensions import db  # noqa: E402
from app.registry import service  # noqa: E402


def main(repeats: int = 2000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"SECRET_KEY": "bench", "DATABASE_URL": f"sqlite:///{tmp}/b.db",
                          "RATELIMIT_ENABLED": False})
        with app.app_context():
            db.create_all()
            admin = create_user("bench", "bench-password", "admin")
            _, key = create_api_key(admin, "bench", ["predict"])
            service.upload_version("demo", "demo.skops", train_demo_model())
            db.session.commit()
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        rng = random.Random(0)
        for label, distinct in (("distinct rows (model runs)", True),
                                ("one repeated row (prediction cache)", False)):
            timings = []
            for i in range(repeats + 50):  # the first 50 warm up
                row = [round(rng.uniform(4, 8), 3) for _ in range(4)] if distinct \
                    else [5.1, 3.5, 1.4, 0.2]
                started = time.perf_counter()
                response = client.post("/api/v1/models/demo/predict",
                                       json={"instances": [row]}, headers=headers)
                if i >= 50:
                    timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            timings.sort()
            print(f"single-row predict via test client, {label}, {repeats} requests: "
                  f"median {statistics.median(timings):.3f} ms, "
                  f"p90 {timings[int(0.9 * repeats)]:.3f} ms, "
                  f"p99 {timings[int(0.99 * repeats)]:.3f} ms")
        app.extensions["modeldock.request_log"].flush()


if __name__ == "__main__":
    main()
