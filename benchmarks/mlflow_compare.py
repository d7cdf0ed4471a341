"""Send the same MLflow scoring requests to `mlflow models serve` and to ModelDock.

    nice -n 19 .venv/bin/python -m benchmarks.mlflow_compare [--seconds 5]

One scikit-learn model (iris, fitted on a DataFrame so that both servers know its
column names) is saved as an MLflow model and uploaded to ModelDock (a fresh
PostgreSQL database). Both servers run on 127.0.0.1 with two workers:
``mlflow models serve --env-manager local`` (uvicorn, MLflow 3.x; needs
``mlflow-skinny``, ``pandas`` and scikit-learn in this venv, no network) and
ModelDock under gunicorn. Every body format of the protocol (built by MLflow's own
``dump_input_data`` and pandas) goes to both: answers must be equal; refused bodies
must have the same status and ``error_code``. Then wrk measures requests/s of one
``dataframe_split`` body at a few connection counts (``Connection: close``, as
benchmarks/load.py explains), ModelDock with an API key and its request log on.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from benchmarks import servers
from benchmarks.load import Wrk
from benchmarks.serving import Registry, as_joblib

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
JSON, CSV = "application/json", "text/csv"
# Positional rows (no column names): MLflow refuses them for a model whose signature
# names its columns; ModelDock takes them in the model's feature order, as its other
# protocols do (docs/protocols.md). Reported, not counted as a difference.
LENIENT = {"instances", "inputs (dump_input_data, params)"}


def train():
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(X, columns=NAMES)
    return frame, LogisticRegression(max_iter=500).fit(frame, y)


def bodies(frame) -> list[tuple[str, str, str]]:
    """(what, Content-Type, body): every format, then bodies both must refuse."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.utils.proto_json_utils import dump_input_data

    rows = frame.iloc[[0, 60, 120, 149]]
    shuffled = rows[["petal_width", "sepal_length", "petal_length", "sepal_width"]]
    return [
        ("dataframe_split (dump_input_data)", JSON, dump_input_data(shuffled)),
        (
            "dataframe_split (to_json)",
            JSON,
            json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split"))}),
        ),
        (
            "dataframe_records",
            JSON,
            json.dumps({"dataframe_records": shuffled.to_dict(orient="records")}),
        ),
        ("instances", JSON, json.dumps({"instances": rows.values.tolist()})),
        (
            "inputs (dump_input_data, params)",
            JSON,
            dump_input_data(rows.to_numpy(), params={}),
        ),
        ("inputs by column", JSON, json.dumps({"inputs": rows.to_dict("list")})),
        ("csv (to_csv, index)", CSV, shuffled.to_csv()),
        ("csv (index=False)", CSV, rows.to_csv(index=False)),
        ("refused: missing column", JSON, dump_input_data(rows[NAMES[:3]])),
        ("refused: no format key", JSON, json.dumps({"data": [[1, 2, 3, 4]]})),
        ("refused: not JSON", JSON, "{not json"),
        ("refused: text/plain", "text/plain", rows.to_csv(index=False)),
    ]


def post(port: int, path: str, body: str, content_type: str, headers: dict):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST", path, body.encode(), {"Content-Type": content_type, **headers}
        )
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


class MlflowServer(servers.Server):
    """``mlflow models serve`` runs uvicorn as its child: stop the whole group."""

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        super().stop()


def start_mlflow(model_dir: Path, folder: Path) -> servers.Server:
    port = servers.free_port()
    log_path = folder / "mlflow.log"
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"file://{folder / 'mlruns'}",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                str(model_dir),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "2",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return MlflowServer("mlflow", port, process, log_path)


def wait_ping(server: servers.Server, headers: dict, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited; see {server.log_path}")
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            connection.request("GET", "/ping", headers=headers)
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(0.5)
    raise TimeoutError(f"{server.name} did not answer /ping within {timeout} s")


def error_code(text: str) -> str | None:
    try:
        return json.loads(text).get("error_code")
    except (ValueError, AttributeError):
        return None


def compare(mlflow_port: int, modeldock_port: int, key: str, frame) -> list[str]:
    """Each body to both servers; return the differences (none expected)."""
    problems = []
    for what, content_type, body in bodies(frame):
        a = post(mlflow_port, "/invocations", body, content_type, {})
        b = post(
            modeldock_port,
            "/mlflow/iris/invocations",
            body,
            content_type,
            {"Authorization": f"Bearer {key}"},
        )
        if a[0] == 200:
            same = b[0] == 200 and json.loads(a[1]) == json.loads(b[1])
            shown = f"{b[0]} {b[1]}"
        else:
            same = (a[0], error_code(a[1])) == (b[0], error_code(b[1])) or (
                a[0] == 415 == b[0]  # MLflow answers this one in plain text
            )
            shown = f"{b[0]} {error_code(b[1]) or b[1][:80]}"
        shown += f" (mlflow: {a[0]} {error_code(a[1]) or a[1][:160]!r})"
        if not same and what in LENIENT and b[0] == 200:
            print(f"  lenient   {what}: {shown}")
            continue
        print(f"  {'same' if same else 'DIFFERENT':9} {what}: {shown}")
        if not same:
            problems.append(f"{what}: mlflow {a} / modeldock {b}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", default="1,8")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow.sklearn
        from mlflow.models import infer_signature
    from tests.live import postgres_database

    frame, model = train()
    folder = Path(tempfile.mkdtemp(prefix="modeldock-mlflow-"))
    running: list[servers.Server] = []
    wrk = Wrk()
    try:
        signature = infer_signature(frame, model.predict(frame))
        mlflow.sklearn.save_model(model, folder / "model", signature=signature)
        mlflow_server = start_mlflow(folder / "model", folder)
        running.append(mlflow_server)
        with postgres_database() as url:
            registry = Registry(url)
            key = registry.setup()
            registry.upload("iris", as_joblib(model), frame.values[::15].tolist())
            env = {
                "MODELDOCK_ENV": "production",
                "SECRET_KEY": secrets.token_hex(32),
                "DATABASE_URL": url,
                "LOG_LEVEL": "WARNING",
                "MODELDOCK_PREDICTION_CACHE_SECONDS": "0",
            }
            modeldock = servers.start("modeldock", "wsgi:app", env, folder)
            running.append(modeldock)
            auth = {"Authorization": f"Bearer {key}"}
            wait_ping(modeldock, auth)
            wait_ping(mlflow_server, {})
            print("both servers answer /ping; the same bodies to both:")
            problems = compare(mlflow_server.port, modeldock.port, key, frame)
            body = bodies(frame)[0][2].encode()
            print(f"requests/s, one dataframe_split body of 4 rows, {args.seconds} s:")
            for connections in [int(c) for c in args.connections.split(",")]:
                cells = []
                for name, port, path, headers in (
                    ("mlflow models serve", mlflow_server.port, "/invocations", {}),
                    ("modeldock", modeldock.port, "/mlflow/iris/invocations", auth),
                ):
                    run = wrk.run(
                        f"http://127.0.0.1:{port}{path}",
                        body,
                        headers,
                        connections,
                        args.seconds,
                    )
                    cells.append(
                        f"{name} {run.rps:7.0f} req/s (p50 {run.p50_ms:.1f} "
                        f"ms, p99 {run.p99_ms:.1f} ms, non-2xx {run.non_2xx})"
                    )
                print(f"  {connections:2} connections: " + "; ".join(cells))
            for server in running:
                server.stop()
    finally:
        for server in running:
            server.stop()
        wrk.close()
        shutil.rmtree(folder, ignore_errors=True)
    print("answers: all the same" if not problems else "\n".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
