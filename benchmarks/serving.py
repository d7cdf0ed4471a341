"""ModelDock against the tutorial app, a framework-free app and the HTTP ceiling.

Run (one command, about four minutes on 2 cores; installs wrk if missing):

    make bench        # or: .venv/bin/python benchmarks/serving.py

It trains the reference models on breast-cancer data shipped with scikit-learn
(a StandardScaler + LogisticRegression pipeline; a 100-tree, depth-10 random
forest), registers them in a fresh PostgreSQL database, starts ModelDock under
gunicorn with production settings (auth, validation, request logging on; Redis
rate limits when Redis answers) and three baselines under the same worker
settings, checks every app's predictions, then measures each cell with wrk and
prints requests/s, p50, p99, rows/s and the ratios of this run. Results are also
written to ``benchmarks/results/latest.json`` and ``latest.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import joblib  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import report, servers  # noqa: E402
from benchmarks.checks import check_answers, hit  # noqa: E402
from benchmarks.load import Wrk, load_average  # noqa: E402

BASELINES = ROOT / "benchmarks" / "baselines"
EXTRA_FORESTS = 18  # with the pipeline and the forest: 20 models in memory
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.0f} s] {message}", flush=True)


def train():
    """The reference models and the extra forests for the memory measurement."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    forests = [
        RandomForestClassifier(
            n_estimators=100, max_depth=10, random_state=seed, n_jobs=None
        ).fit(X, y)
        for seed in range(EXTRA_FORESTS + 1)
    ]
    return X, {"logistic": logistic.fit(X, y), "forest": forests[0]}, forests[1:]


def as_joblib(estimator) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


def redis_url() -> str | None:
    import redis

    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_timeout=1).ping()
    except redis.RedisError:
        return None
    return url


class Registry:
    """ModelDock's database, prepared in this process through the service layer."""

    def __init__(self, url: str):
        from app import create_app

        self.app = create_app(
            {"DATABASE_URL": url, "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING"}
        )

    def setup(self) -> str:
        from flask_migrate import upgrade

        from app.auth.credentials import create_api_key, create_user
        from app.extensions import db

        with self.app.app_context():
            upgrade()
            admin = create_user("bench", secrets.token_hex(8), "admin")
            # A limit no benchmark reaches: the limiter still counts every request.
            _, key = create_api_key(
                admin, "bench", ["predict", "admin"], rate_limit="100000000 per minute"
            )
            db.session.commit()
        return key

    def upload(self, name: str, data: bytes, sample: list) -> dict:
        from app.extensions import db
        from app.registry import describe
        from app.rollout import versions as service

        with self.app.app_context():
            version = service.upload_version(
                name, f"{name}.joblib", data, sample_rows=sample
            )
            db.session.commit()
            return describe.version_dict(version)

    def force_runtime(self, name: str, runtime: str) -> None:
        from app.extensions import db
        from app.registry import service
        from app.rollout import runtime_settings as runtimes

        with self.app.app_context():
            version = service.get_version(service.get_model(name), 1)
            runtimes.set_runtime(version, runtime, "benchmark: micro-batching")
            db.session.commit()

    def onnx_bytes(self, name: str) -> bytes | None:
        from app.registry import artifacts, service

        with self.app.app_context():
            version = service.get_version(service.get_model(name), 1)
            return artifacts.onnx_bytes(version.id) if version.onnx_sha256 else None

    def close(self) -> None:
        from app.extensions import db

        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()


def bodies(X: np.ndarray) -> dict[str, dict]:
    """The request bodies: one row (every app) and 100 rows (not the tutorial)."""
    one, hundred = X[7:8], X[200:300]
    return {
        "1": {
            "rows": one,
            "native": {"instances": one.tolist()},
            "tutorial": {"features": one[0].tolist()},
        },
        "100": {
            "rows": hundred,
            "native": {"instances": hundred.tolist()},
            "tutorial": None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds",
        type=int,
        default=3,
        help="per cell at 8 connections (one less at 1 and 32)",
    )
    parser.add_argument("--connections", default="1,8,32")
    args = parser.parse_args(argv)
    connections = [int(c) for c in args.connections.split(",")]
    os.chdir(ROOT)
    started = time.monotonic()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout
    wrk = Wrk()
    settings, settings_text = servers.worker_settings()
    print(f"machine: {os.cpu_count()} cores; {uptime_before.strip()}")
    print(f"gunicorn worker settings for every app: {settings_text}")

    from tests.live import postgres_database

    X, models, extras = train()
    say("trained the reference models")
    folder = Path(tempfile.mkdtemp(prefix="modeldock-bench-"))
    running: list[servers.Server] = []
    try:
        with postgres_database() as url:
            result = run(
                args, connections, url, X, models, extras, folder, wrk, running
            )
    finally:
        for server in running:
            server.stop()
        wrk.close()
        shutil.rmtree(folder, ignore_errors=True)
    result["uptime_before"] = uptime_before.strip()
    result["uptime_after"] = subprocess.run(
        ["uptime"], capture_output=True, text=True
    ).stdout.strip()
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    result["gunicorn"] = settings_text
    report.write(result)
    return 0


def start_all(specs: dict, folder: Path, running: list) -> dict:
    """Start several apps at once (they boot in parallel); return them by name."""
    started = {}
    for name, (app, env) in specs.items():
        pythonpath = None if app.startswith("wsgi:") else str(BASELINES)
        started[name] = servers.start(name, app, env, folder, pythonpath)
        running.append(started[name])
    return started


def run(args, connections, url, X, models, extras, folder, wrk, running) -> dict:
    registry = Registry(url)
    key = registry.setup()
    sample = X[::15].tolist()  # the stored sample: 38 real rows
    forest = registry.upload("forest", as_joblib(models["forest"]), sample)
    versions = {"forest": forest}
    say("forest uploaded")
    redis = redis_url()
    env = {
        "MODELDOCK_ENV": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "DATABASE_URL": url,
        "MODELDOCK_MODEL_CACHE_SIZE": "32",
        "MODELDOCK_REQUEST_LOG_ENABLED": "true",
        "LOG_LEVEL": "WARNING",
        # Every request computes its answer, as in the baselines: the prediction
        # cache would answer wrk's repeated body from Redis instead.
        "MODELDOCK_PREDICTION_CACHE_SECONDS": "0",
        **({"REDIS_URL": redis} if redis else {}),
    }
    apps = start_all({"modeldock": ("wsgi:app", env)}, folder, running)
    servers.wait_ready(apps["modeldock"])
    auth = {"X-API-Key": key}
    body_1 = json.dumps(bodies(X)["1"]["native"]).encode()
    hit(apps["modeldock"].port, "/api/v1/models/forest/predict", body_1, auth, times=40)
    memory = {"1 model": apps["modeldock"].memory()}
    say(f"ModelDock started; worker memory with 1 model {memory['1 model']}")

    files = {}
    for name, estimator in models.items():
        files[name] = folder / f"{name}.joblib"
        files[name].write_bytes(as_joblib(estimator))
    apps.update(
        start_all(
            {  # these boot while the other versions upload
                "tutorial-logistic": (
                    "tutorial:app",
                    {"TUTORIAL_MODEL": str(files["logistic"])},
                ),
                "tutorial-forest": (
                    "tutorial:app",
                    {"TUTORIAL_MODEL": str(files["forest"])},
                ),
                "constant": ("constant:application", {}),
                "flask-constant": ("flask_constant:app", {}),
            },
            folder,
            running,
        )
    )
    # Nineteen more versions (the pipeline and 18 forests), two uploads at a time.
    uploads = [("logistic", as_joblib(models["logistic"]))] + [
        (f"forest-{i:02d}", as_joblib(forest)) for i, forest in enumerate(extras, 1)
    ]
    with ThreadPoolExecutor(2) as pool:
        for (name, _), info in zip(
            uploads,
            pool.map(lambda job: registry.upload(job[0], job[1], sample), uploads),
            strict=True,
        ):
            versions[name] = info
    time.sleep(2.0)  # each worker's routing thread sees the change and warms all
    for name, _ in [("forest", None), *uploads]:
        hit(apps["modeldock"].port, f"/api/v1/models/{name}/predict", body_1, auth, 4)
    memory["20 models"] = apps["modeldock"].memory()
    say(f"20 models registered; worker memory with 20 models {memory['20 models']}")

    registry.force_runtime("forest-01", "sklearn")  # the micro-batching subject
    runtimes = {name: versions[name]["runtime"] for name in models}
    for name in models:
        if runtimes[name] == "onnx":
            (folder / f"{name}.onnx").write_bytes(registry.onnx_bytes(name))
    registry.close()
    raw_spec = ",".join(
        f"{n}=onnx:{folder / f'{n}.onnx'}"
        if runtimes[n] == "onnx"
        else f"{n}=sklearn:{files[n]}"
        for n in models
    )
    apps.update(
        start_all(
            {
                "raw": ("raw_runtime:application", {"RAW_MODELS": raw_spec}),
                "modeldock-nolog": (
                    "wsgi:app",
                    {**env, "MODELDOCK_REQUEST_LOG_ENABLED": "false"},
                ),
                "modeldock-batch": (
                    "wsgi:app",
                    {
                        **env,
                        "MODELDOCK_MICROBATCH_MAX_ROWS": "8",
                        "MODELDOCK_MICROBATCH_MAX_WAIT_MS": "2",
                    },
                ),
                # Rate limits counted in each worker, not in Redis: what sharing costs.
                "modeldock-locallimits": (
                    "wsgi:app",
                    {**{k: v for k, v in env.items() if k != "REDIS_URL"}},
                ),
            },
            folder,
            running,
        )
    )
    for server in apps.values():
        servers.wait_ready(server)
    checks = check_answers(apps, key, X, models, bodies(X))
    for name in ("modeldock", "modeldock-batch"):  # the forest forced to scikit-learn
        check_answers(
            {"modeldock": apps[name]},
            key,
            X,
            {"forest-01": extras[0]},
            bodies(X),
            only="modeldock",
        )
        checks.append(f"{name}/forest-01 (scikit-learn)")
    say(f"all apps started; predictions checked ({len(checks)} app/model/body sets)")
    cells = measure(args, connections, wrk, apps, key, X)
    say("measured; profiling a ModelDock worker under load (py-spy)")
    parts = profile_cell(args, wrk, apps["modeldock"], key, X, folder)
    return {
        "versions": {
            n: {
                k: versions[n][k]
                for k in (
                    "runtime",
                    "runtime_verdict",
                    "runtime_reason",
                    "onnx_speedup",
                )
            }
            for n in models
        },
        "memory": memory,
        "redis": bool(redis),
        "cells": cells,
        "profile": parts,
        "seconds_per_cell": args.seconds,
    }


def profile_cell(args, wrk, server, key, X, folder: Path) -> list:
    """Forest, one row, 8 connections, with py-spy on every worker (not timed)."""
    from benchmarks import profile

    seconds = max(args.seconds, 3)
    spies = profile.record(server.workers(), seconds, folder)
    if not spies:
        return []
    wrk.run(
        f"http://127.0.0.1:{server.port}/api/v1/models/forest/predict",
        json.dumps(bodies(X)["1"]["native"]).encode(),
        {"X-API-Key": key},
        8,
        seconds + 1,
        warmup=0,
    )
    for spy in spies:
        spy.wait(timeout=60)
    return profile.summarize(folder)


def measure(args, connections, wrk, started, key, X) -> list[dict]:
    """Every cell, comparisons adjacent in time so that load drift hits all alike."""
    cells = []
    all_bodies = bodies(X)
    auth = {"X-API-Key": key}
    warmed: set = set()

    def cell(app, model, rows, conns, path, body, headers, note=""):
        server = started[app]
        encoded = json.dumps(body).encode()
        target = (app, path, encoded)
        warmup = 0 if target in warmed else 1
        warmed.add(target)
        load = load_average()
        # The cells the targets name (8 connections) get the full time, others less.
        seconds = args.seconds if conns == 8 else max(1, args.seconds - 1)
        outcome = wrk.run(
            f"http://127.0.0.1:{server.port}{path}",
            encoded,
            headers,
            conns,
            seconds,
            warmup=warmup,
        )
        row = {
            "app": app,
            "model": model,
            "rows": rows,
            "connections": conns,
            "rps": round(outcome.rps, 1),
            "p50_ms": outcome.p50_ms,
            "p99_ms": outcome.p99_ms,
            "rows_per_s": round(outcome.rps * rows, 1),
            "errors": outcome.errors + outcome.non_2xx,
            "load_before": load,
            "note": note,
        }
        cells.append(row)
        print(
            f"  {app:18} {model:10} rows={rows:<4} c={conns:<3} "
            f"{row['rps']:>9.1f} req/s  p50 {row['p50_ms']:6.2f} ms  "
            f"p99 {row['p99_ms']:6.2f} ms  errors {row['errors']}  load {load:.2f}",
            flush=True,
        )

    for rows in ("1", "100"):
        for conns in connections:
            for model in ("logistic", "forest"):
                native = all_bodies[rows]["native"]
                cell(
                    "modeldock",
                    model,
                    int(rows),
                    conns,
                    f"/api/v1/models/{model}/predict",
                    native,
                    auth,
                )
                if all_bodies[rows]["tutorial"] is not None:
                    cell(
                        f"tutorial-{model}",
                        model,
                        int(rows),
                        conns,
                        "/predict",
                        all_bodies[rows]["tutorial"],
                        {},
                    )
                cell("raw", model, int(rows), conns, f"/predict/{model}", native, {})
            cell(
                "constant",
                "-",
                int(rows),
                conns,
                "/predict",
                all_bodies[rows]["native"],
                {},
            )
            if rows == "1":
                cell(
                    "flask-constant",
                    "-",
                    1,
                    conns,
                    "/predict",
                    all_bodies[rows]["native"],
                    {},
                    "reference",
                )
    for model in ("logistic", "forest"):  # request logging on vs off, twice each
        for app in ("modeldock", "modeldock-nolog") * 2:
            cell(
                app,
                model,
                1,
                8,
                f"/api/v1/models/{model}/predict",
                all_bodies["1"]["native"],
                auth,
                "logging",
            )
    for model in ("logistic", "forest"):  # rate limits in Redis vs in each worker
        for app in ("modeldock", "modeldock-locallimits"):
            cell(
                app,
                model,
                1,
                8,
                f"/api/v1/models/{model}/predict",
                all_bodies["1"]["native"],
                auth,
                "limits",
            )
    for conns in (8, 32):  # micro-batching on the scikit-learn path
        for app in ("modeldock", "modeldock-batch"):
            cell(
                app,
                "forest-01",
                1,
                conns,
                "/api/v1/models/forest-01/predict",
                all_bodies["1"]["native"],
                auth,
                "sklearn",
            )
    return cells


if __name__ == "__main__":
    sys.exit(main())
