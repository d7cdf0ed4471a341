"""Model code runs only in confined inference processes, under a deadline.

Each hostile file (tests/hostile_state.py) is built only from names the restricted
unpickler allows; the harm is in its state. Each is either refused at upload or
contained: no file content in any answer, a JSON error within the deadline, and
healthy traffic to another model answering throughout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest

from app import create_app
from app.extensions import db
from app.models import MLModel, ModelAlias, ModelArtifact, ModelVersion
from app.registry import changes
from app.serving.runtimes.isolated import IsolatedRuntime
from app.serving.runtimes.predictor import Predictor
from tests import hostile_state as hostile
from tests.conftest import auth, upload
from tests.live import gunicorn

IRIS_SCHEMA = {
    "estimator": "Hostile",
    "allow_nan": False,
    "n_features": 4,
    "feature_names": ["x0", "x1", "x2", "x3"],
    "named_features": False,
    "task": "regression",
    "classes": None,
    "has_proba": False,
}
SECRET = "s3cr3t-value-that-must-never-leave-the-server"


def register_unchecked(
    name: str, data: bytes, file_format: str, task: str = "classification"
) -> None:
    """Store a version as if upload validation had missed it (inside an app
    context), so that the runtime alone must contain it."""
    schema = {
        **IRIS_SCHEMA,
        "task": task,
        "classes": [0, 1, 2] if task == "classification" else None,
    }
    model = MLModel(name=name, description="", task=task)
    db.session.add(model)
    db.session.flush()
    version = ModelVersion(
        model=model,
        number=1,
        file_format=file_format,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        input_schema=schema,
        sample={
            "rows": [hostile.NORMAL_ROW],
            "predictions": [0],
            "probabilities": None,
        },
        metrics=None,
        notes="registered without validation",
    )
    version.artifact = ModelArtifact(data=data)
    db.session.add(version)
    db.session.flush()
    db.session.add(
        ModelAlias(model_id=model.id, alias="stable", version_id=version.id, weight=100)
    )
    changes.bump()
    db.session.commit()


def predict(client, key, name, row):
    return client.post(
        f"/api/v1/models/{name}/predict", headers=auth(key), json={"instances": [row]}
    )


@pytest.mark.parametrize(
    "builder",
    [
        hostile.tree_out_of_range_child,
        hostile.tree_self_loop,
        hostile.hist_gradient_boosting_bad_node,
    ],
)
def test_upload_refuses_trees_whose_state_would_misbehave(client, keys, builder):
    data, normal, extreme = builder()
    response = upload(client, keys.admin, "evil", data, filename="evil.joblib")
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "unsafe_model_state"
    assert "child index" in error["message"]
    assert (
        client.get("/api/v1/models/evil", headers=auth(keys.admin)).status_code == 404
    )  # nothing stored


def test_upload_refuses_a_vectorizer_that_opens_files(client, keys, tmp_path):
    secret = tmp_path / "secret_key"
    secret.write_text(SECRET)
    data, _ = hostile.file_reading_stack(str(secret))
    response = upload(client, keys.admin, "evil", data, filename="evil.joblib")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "unsafe_model_state" in body and "'filename'" in body
    assert SECRET not in body


def test_an_isolated_runtime_cannot_open_the_secret_key(
    app, client, keys, tmp_path, caplog
):
    instance = tmp_path / "instance"
    instance.mkdir()
    secret = instance / "secret_key"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)  # as config.py writes it
    os.write(fd, SECRET.encode())
    os.close(fd)
    data, row = hostile.file_reading_stack(str(secret))
    # Control: unconfined, this model really reads the file (its answer is the
    # count of characters in it).
    assert Predictor(data, "joblib", {**IRIS_SCHEMA}).predict(np.array([row]))[0][
        0
    ] == len(SECRET)
    with app.app_context():
        register_unchecked("evil", data, "joblib", task="regression")
    with caplog.at_level(logging.WARNING):
        response = predict(client, keys.predict, "evil", row)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "prediction_failed"
    assert SECRET not in response.get_data(as_text=True)
    assert "predictions" not in response.get_json()  # not even its length
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "PermissionError" in logged and SECRET not in logged


def test_inference_process_holds_no_secrets_and_is_confined(iris):
    runtime = IsolatedRuntime(
        "x" * 64,
        iris.as_skops(),
        "skops",
        {
            **IRIS_SCHEMA,
            "task": "classification",
            "classes": [0, 1, 2],
            "has_proba": True,
        },
    )
    try:
        [process] = runtime._all
        pid = process.proc.pid
        with open(f"/proc/{pid}/environ", "rb") as handle:
            names = {
                item.split(b"=")[0].decode()
                for item in handle.read().split(b"\0")
                if item
            }
        assert not names & {
            "SECRET_KEY",
            "DATABASE_URL",
            "REDIS_URL",
            "MODELDOCK_SECRET_KEY",
        }
        assert names <= {
            "PATH",
            "PYTHONPATH",
            "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
            "JOBLIB_MULTIPROCESSING",
            "PYTHONDONTWRITEBYTECODE",
            "MODELDOCK_RUNTIME_MEMORY_MB",
            "MODELDOCK_RUNTIME_TRUSTED",
        }
        layers = runtime.describe()["confinement"]
        assert any(layer.startswith("landlock") for layer in layers)
        labels, proba = runtime.predict(iris.X[:5], time.monotonic() + 10)
        assert labels.tolist() == iris.estimator.predict(iris.X[:5]).tolist()
    finally:
        runtime.close()
    assert (
        not os.path.exists(f"/proc/{pid}")
        or open(f"/proc/{pid}/status").read().find("State:\tZ") >= 0
    )


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory, iris):
    """gunicorn, 2 gthread workers, SQLite: a healthy model and four hostile ones."""
    folder = tmp_path_factory.mktemp("isolation")
    url = f"sqlite:///{folder / 'modeldock.db'}"
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "isolation"})
    with app.app_context():
        from flask_migrate import upgrade

        from app.auth.credentials import create_api_key, create_user
        from app.rollout import versions as service

        upgrade()
        admin = create_user("ops", "ops-password-1", "admin")
        _, key = create_api_key(admin, "ops", ["predict", "admin"])
        service.upload_version("healthy", "healthy.skops", iris.as_skops())
        service.upload_version("loop", "loop.onnx", hostile.onnx_loop())
        service.upload_version("bomb", "bomb.onnx", hostile.onnx_constant_of_shape())
        db.session.commit()
        register_unchecked("crash", hostile.tree_out_of_range_child()[0], "joblib")
        register_unchecked("hang", hostile.tree_self_loop()[0], "joblib")
        db.engine.dispose()
    app.extensions["modeldock"].close()
    env = {
        "DATABASE_URL": url,
        "SECRET_KEY": "isolation",
        "MODELDOCK_PREDICT_TIMEOUT_SECONDS": "2",
        "MODELDOCK_ISOLATED_MEMORY_MB": "1024",
        "MODELDOCK_RATELIMIT_DEFAULT": "100000 per minute",
        "MODELDOCK_REQUEST_LOG_ENABLED": "false",
    }
    log = folder / "gunicorn.log"
    with gunicorn(
        env,
        workers=2,
        extra=["--worker-class", "gthread", "--threads", "4"],
        log_path=log,
    ) as port:
        yield port, key, log


def _post(port, key, name, row, timeout=30):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request(
            "POST",
            f"/api/v1/models/{name}/predict",
            body=json.dumps({"instances": [row]}),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {key}",
            },
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read()), time.monotonic() - started
    finally:
        conn.close()


@pytest.mark.slow
def test_hostile_models_fail_alone_while_healthy_traffic_answers(hostile_server):
    port, key, log = hostile_server
    assert _post(port, key, "healthy", hostile.NORMAL_ROW)[0] == 200
    stop, healthy = threading.Event(), []

    def healthy_traffic():
        while not stop.is_set():
            status, body, _ = _post(port, key, "healthy", hostile.NORMAL_ROW)
            healthy.append(status)

    attacks = (
        [("crash", hostile.EXTREME_ROW)] * 3
        + [("hang", hostile.EXTREME_ROW)] * 3
        + [("loop", hostile.EXTREME_ROW)] * 2
        + [("bomb", [20.0, 0, 0, 0])] * 2
    )
    with ThreadPoolExecutor(len(attacks) + 2) as pool:
        traffic = [pool.submit(healthy_traffic) for _ in range(2)]
        time.sleep(0.5)
        results = list(pool.map(lambda a: (a[0], *_post(port, key, *a)), attacks))
        time.sleep(0.5)
        stop.set()
        for future in traffic:
            future.result()
    by_name: dict[str, list] = {}
    for name, status, body, seconds in results:
        by_name.setdefault(name, []).append((status, body["error"]["code"], seconds))
        assert seconds < 15, (name, status, seconds)  # deadline 2 s, plus queueing
        assert "Traceback" not in json.dumps(body)
    # The first crash answers 502; one queued behind its replacement may pass its
    # own deadline while the fresh process starts (504): never a 500, never a hang.
    crash = {(s, c) for s, c, _ in by_name["crash"]}
    assert (502, "runtime_failed") in crash
    assert crash <= {(502, "runtime_failed"), (504, "prediction_timeout")}
    assert {(s, c) for s, c, _ in by_name["hang"]} == {(504, "prediction_timeout")}
    assert {(s, c) for s, c, _ in by_name["loop"]} == {(504, "prediction_timeout")}
    assert {c for _, c, _ in by_name["bomb"]} <= {
        "prediction_failed",
        "runtime_failed",
        "prediction_timeout",
    }
    assert healthy and set(healthy) == {200}, healthy.count(200)
    # A fresh process takes over: the crashed and hung models answer ordinary rows
    # again (as soon as the replacement has started: seconds on a busy machine).
    for name in ("crash", "hang", "loop", "bomb"):
        row = hostile.NORMAL_ROW if name in ("crash", "hang") else [0.0] * 4
        give_up = time.monotonic() + 30
        status, body, _ = _post(port, key, name, row)
        while status == 504 and time.monotonic() < give_up:
            time.sleep(0.5)
            status, body, _ = _post(port, key, name, row)
        assert status == 200, (name, body)
    text = log.read_text()
    assert "passed its deadline; killed" in text and "failed (exit status" in text


def test_a_models_own_deadline_stops_its_runs(app, client, keys, runner):
    with app.app_context():
        register_unchecked("hang", hostile.tree_self_loop()[0], "joblib")
    bad = client.put(
        "/api/v1/models/hang/timeout", headers=auth(keys.admin), json={"seconds": -1}
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "seconds"
    response = client.put(
        "/api/v1/models/hang/timeout",
        headers=auth(keys.admin),
        json={"seconds": 0.5, "reason": "hostile"},
    )
    assert response.get_json()["timeout"] == {"seconds": 0.5, "effective": 0.5}
    started = time.monotonic()
    answer = predict(client, keys.predict, "hang", hostile.EXTREME_ROW)
    assert answer.status_code == 504, answer.get_json()
    assert answer.get_json()["error"]["code"] == "prediction_timeout"
    assert time.monotonic() - started < 5  # the default deadline is 10 s
    result = runner.invoke(args=["models", "timeout", "hang", "--inherit"])
    assert result.exit_code == 0 and "after 10 s" in result.output


def _chain_of_matmuls(width: int = 256, depth: int = 400) -> bytes:
    """An allowlisted graph (MatMul only) that takes seconds on a few thousand rows."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(width, dtype=np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["X" if i == 0 else f"h{i}", "w"], [f"h{i + 1}"])
        for i in range(depth)
    ]
    nodes.append(
        helper.make_node("ReduceSum", [f"h{depth}"], ["y"], axes=[1], keepdims=0)
    )
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 8
    return model.SerializeToString()


def test_in_process_onnx_runs_are_terminated_at_their_deadline():
    from app.serving.runtimes.base import PredictionTimeout
    from app.serving.runtimes.onnx import InProcessOnnx

    schema = {
        "estimator": "ONNX graph",
        "allow_nan": False,
        "n_features": 256,
        "task": "regression",
        "classes": None,
        "has_proba": False,
    }
    runtime = InProcessOnnx("c" * 64, _chain_of_matmuls(), schema)
    rows = np.ones((4000, 256))
    started = time.monotonic()
    with pytest.raises(PredictionTimeout):
        runtime.predict(rows, time.monotonic() + 0.3)
    assert time.monotonic() - started < 2.0
    labels, _ = runtime.predict(rows[:2], time.monotonic() + 10)  # still serves
    assert labels.tolist() == [256.0, 256.0]


def test_only_allowlisted_graphs_run_in_process(app, client, keys, iris):
    upload(client, keys.admin, "iris", iris.as_skops())
    upload(client, keys.admin, "loop", hostile.onnx_loop(), filename="loop.onnx")
    with app.test_request_context():
        from app.serving.state import serving_state

        state = serving_state()
        snapshot = state.routing.snapshot()
        kinds = {
            name: state.load_version(model.alias_version("stable")).kind
            for name, model in snapshot.models.items()
        }
    assert kinds == {"iris": "in-process onnxruntime", "loop": "isolated"}
    from app.serving.runtimes.onnx import inprocess_refusal

    assert "Loop" in inprocess_refusal(onnx.load_from_string(hostile.onnx_loop()))
    assert "ConstantOfShape" in inprocess_refusal(
        onnx.load_from_string(hostile.onnx_constant_of_shape())
    )
