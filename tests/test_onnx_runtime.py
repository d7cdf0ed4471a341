"""The ONNX fast path: conversion and checks at upload, runtime choice, .onnx files."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time

import numpy as np
import onnx
import pytest
import skops.io
from onnx import TensorProto, external_data_helper, helper
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestCentroid
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent
from app.registry.onnx_compile import disagreement, verification_rows
from app.registry.onnx_graph import references_external_data
from app.registry.sandbox import _parse_report
from app.registry.schema import derive_schema
from app.serving.batching import MicroBatcher
from app.serving.runtimes.cache import ModelCache
from tests.conftest import Trained, auth, make_keys, running_app, sign_in, upload


@pytest.fixture(scope="module")
def cancer() -> Trained:
    X, y = load_breast_cancer(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0)
    return Trained(forest.fit(X, y), X)


@pytest.fixture(scope="module")
def iris_onnx() -> tuple[LogisticRegression, bytes]:
    """An .onnx file as a user would export it (skl2onnx defaults: ZipMap output)."""
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    return model, to_onnx(model, X[:1].astype(np.float32)).SerializeToString()


@pytest.fixture(scope="module")
def served(tmp_path_factory, cancer, diabetes, iris_onnx):
    """PostgreSQL app with a forest, a ridge, an unconvertible model and an .onnx."""
    X, y = load_iris(return_X_y=True)
    with running_app("postgresql", tmp_path_factory.mktemp("db")) as app:
        keys = make_keys(app)
        client = app.test_client()
        for name, data, filename, fields in (
            (
                "forest",
                cancer.as_skops(),
                "forest.skops",
                {"sample": json.dumps(cancer.X[:40].tolist())},
            ),
            ("ridge", diabetes.as_joblib(), "ridge.joblib", {}),
            ("centroid", skops.io.dumps(NearestCentroid().fit(X, y)), "c.skops", {}),
            ("exported", iris_onnx[1], "exported.onnx", {}),
        ):
            response = upload(client, keys.admin, name, data, filename, **fields)
            assert response.status_code == 201, response.get_json()
        yield app, client, keys


def predict(client, key, name, rows):
    with client.post(
        f"/api/v1/models/{name}/predict",
        headers=auth(key),
        data=json.dumps({"instances": np.asarray(rows).tolist()}),
        content_type="application/json",
    ) as response:
        assert response.status_code == 200, response.get_json()
        return response.get_json()


def version(client, key, name, number=1):
    with client.get(
        f"/api/v1/models/{name}/versions/{number}", headers=auth(key)
    ) as response:
        return response.get_json()


def set_runtime(client, key, name, runtime, number=1):
    with client.put(
        f"/api/v1/models/{name}/versions/{number}/runtime",
        json={"runtime": runtime, "reason": "test"},
        headers=auth(key),
    ) as response:
        return response.status_code, response.get_json()


def test_forest_is_verified_at_upload_and_answers_like_sklearn(served, cancer):
    _, client, keys = served
    info = version(client, keys.predict, "forest")
    assert (info["runtime"], info["runtime_setting"], info["runtime_verdict"]) == (
        "onnx",
        "auto",
        "verified",
    )
    assert info["onnx_speedup"] > 1  # a forest answers one row faster in onnxruntime
    assert info["runtime_check"]["rows_checked"] == 40 + 300
    assert info["runtime_check"]["input"] == "float"  # what sklearn trees compute in
    body = predict(client, keys.predict, "forest", cancer.X)
    assert body["predictions"] == cancer.estimator.predict(cancer.X).tolist()
    difference = np.abs(
        np.asarray(body["probabilities"]) - cancer.estimator.predict_proba(cancer.X)
    )
    assert difference.max() <= 1e-5


def test_admin_forces_a_runtime_per_version(served, cancer):
    app, client, keys = served
    assert set_runtime(client, keys.predict, "forest", "sklearn")[0] == 403
    status, body = set_runtime(client, keys.admin, "forest", "fastest")
    assert (status, body["error"]["code"]) == (400, "invalid_runtime")

    status, body = set_runtime(client, keys.admin, "forest", "sklearn")
    assert status == 200
    assert (body["runtime"], body["runtime_setting"]) == ("sklearn", "sklearn")
    rows = cancer.X[:50]
    answer = predict(client, keys.predict, "forest", rows)
    assert answer["predictions"] == cancer.estimator.predict(rows).tolist()
    assert answer["probabilities"] == cancer.estimator.predict_proba(rows).tolist()

    status, body = set_runtime(client, keys.admin, "forest", "auto")
    assert (status, body["runtime"]) == (200, "onnx")
    with app.app_context():
        changes = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "version.runtime")
            .order_by(AuditEvent.id)
        ).all()
        assert [c.details["to"] for c in changes] == ["sklearn", "auto"]


def test_admin_page_shows_runtime_verdict_and_speedup(served):
    app, _, _ = served
    admin = app.test_client()
    sign_in(admin, "root", "correct horse battery")
    with admin.get("/admin/models/forest") as page:
        assert page.status_code == 200
        cell = re.search(r'<td class="runtime"[^>]*>(.*?)</td>', page.text, re.S)
    assert cell is not None
    text = " ".join(cell.group(1).split())
    assert text.startswith("onnx") and "ONNX verified" in text and "× faster" in text


def test_admin_page_forces_a_runtime(served, cancer):
    app, client, keys = served
    admin = app.test_client()
    token = sign_in(admin, "root", "correct horse battery")
    with admin.get("/admin/models/forest") as page:
        assert "/admin/models/forest/versions/1/runtime" in page.text
    with admin.get("/admin/models/forest/versions/1/runtime") as page:
        assert page.status_code == 200
        assert re.search(r'<option selected value="auto">', page.text)
        assert "ONNX graph: verified" in page.text
    with admin.post(
        "/admin/models/forest/versions/1/runtime",
        data={"runtime": "sklearn", "reason": "compare", "csrf_token": token},
        follow_redirects=True,
    ) as done:
        assert "is served by sklearn (sklearn)" in done.text
    assert version(client, keys.predict, "forest")["runtime"] == "sklearn"
    rows = cancer.X[:20]
    assert (
        predict(client, keys.predict, "forest", rows)["probabilities"]
        == cancer.estimator.predict_proba(rows).tolist()
    )
    # A version without a verified graph cannot be forced onto onnxruntime.
    with admin.post(
        "/admin/models/centroid/versions/1/runtime",
        data={"runtime": "onnx", "csrf_token": token},
        follow_redirects=True,
    ) as refused:
        assert "Refused: version 1 has no verified ONNX graph" in refused.text
    assert version(client, keys.predict, "centroid")["runtime_setting"] == "auto"
    with admin.post(
        "/admin/models/forest/versions/1/runtime",
        data={"runtime": "auto", "csrf_token": token},
    ) as back:
        assert back.status_code == 302
    assert version(client, keys.predict, "forest")["runtime"] == "onnx"


def test_unconvertible_model_is_served_by_sklearn(served):
    _, client, keys = served
    info = version(client, keys.predict, "centroid")
    assert (info["runtime"], info["runtime_verdict"]) == ("sklearn", "not_convertible")
    assert "NearestCentroid" in info["runtime_reason"]
    status, body = set_runtime(client, keys.admin, "centroid", "onnx")
    assert (status, body["error"]["code"]) == (409, "onnx_unavailable")
    X, _ = load_iris(return_X_y=True)
    expected = NearestCentroid().fit(*load_iris(return_X_y=True)).predict(X[::10])
    assert (
        predict(client, keys.predict, "centroid", X[::10])["predictions"]
        == expected.tolist()
    )


def test_regression_agrees_within_relative_tolerance(served, diabetes):
    _, client, keys = served
    info = version(client, keys.predict, "ridge")
    assert (info["runtime"], info["runtime_verdict"]) == ("onnx", "verified")
    body = predict(client, keys.predict, "ridge", diabetes.X[:100])
    np.testing.assert_allclose(
        body["predictions"], diabetes.estimator.predict(diabetes.X[:100]), rtol=1e-5
    )


def test_uploaded_onnx_file_gets_its_schema_from_the_graph(served, iris_onnx):
    _, client, keys = served
    model, _ = iris_onnx
    info = version(client, keys.predict, "exported")
    assert (info["format"], info["runtime"], info["runtime_verdict"]) == (
        "onnx",
        "onnx",
        "native",
    )
    assert (info["n_features"], info["classes"], info["task"]) == (
        4,
        [0, 1, 2],
        "classification",
    )
    X, _ = load_iris(return_X_y=True)
    body = predict(client, keys.predict, "exported", X)
    assert body["predictions"] == model.predict(X).tolist()
    assert (
        np.abs(np.asarray(body["probabilities"]) - model.predict_proba(X)).max() <= 1e-5
    )
    status, body = set_runtime(client, keys.admin, "exported", "sklearn")
    assert (status, body["error"]["code"]) == (409, "sklearn_unavailable")


def _external(tensor: TensorProto) -> TensorProto:
    external_data_helper.set_external_data(tensor, location="/etc/passwd")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    return tensor


def test_onnx_referencing_external_data_is_refused(served, iris_onnx):
    _, client, keys = served
    graph = onnx.load_model_from_string(iris_onnx[1])
    graph.graph.initializer.append(
        _external(
            helper.make_tensor(
                "stolen",
                TensorProto.FLOAT,
                [4],
                np.zeros(4, np.float32).tobytes(),
                raw=True,
            )
        )
    )
    response = upload(
        client, keys.admin, "leaky", graph.SerializeToString(), "leaky.onnx"
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "onnx_external_data"
    with client.get("/api/v1/models/leaky", headers=auth(keys.admin)) as missing:
        assert missing.status_code == 404  # nothing was stored
    garbage = upload(client, keys.admin, "garbage", b"\x08\x07not a graph", "g.onnx")
    assert garbage.status_code == 422
    assert garbage.get_json()["error"]["code"] == "invalid_model_file"


def test_external_data_is_found_in_node_attributes_and_subgraphs():
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    plain = helper.make_node("Constant", [], ["y"], value=value)
    graph = helper.make_graph(
        [plain], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
    )
    assert not references_external_data(helper.make_model(graph))
    hidden = helper.make_node(
        "Constant",
        [],
        ["y"],
        value=_external(
            helper.make_tensor(
                "v", TensorProto.FLOAT, [1], np.ones(1, np.float32).tobytes(), raw=True
            )
        ),
    )
    inner = helper.make_graph(
        [hidden],
        "inner",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    branch = helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=graph)
    outer = helper.make_graph(
        [branch],
        "outer",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    assert references_external_data(helper.make_model(outer))


def test_verification_contract():
    schema = {"task": "classification"}
    labels, proba = np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    assert disagreement(schema, (labels, proba), (labels, proba + 9e-6))[0] is None
    assert (
        "probabilities differ"
        in disagreement(schema, (labels, proba), (labels, proba + 2e-5))[0]
    )
    assert (
        "1 of 3 labels differ"
        in disagreement(schema, (labels, proba), (np.array([0, 1, 0]), proba))[0]
    )
    # 1 and 1.0 are different JSON: the answer must not change with the runtime.
    assert disagreement(schema, (labels, None), (labels.astype(float), None))[0]
    regression = {"task": "regression"}
    values = np.array([100.0, -2.0, 0.0])
    assert (
        disagreement(regression, (values, None), (values * (1 + 9e-6), None))[0] is None
    )
    assert disagreement(regression, (values, None), (values * (1 + 2e-5), None))[0]
    rows = verification_rows([[0.0, 5.0], [1.0, 5.0], [0.5, 7.0]])
    assert rows.shape == (303, 2)
    assert rows[:, 0].min() >= 0 and rows[:, 0].max() <= 1
    assert rows[:, 1].min() >= 5 and rows[:, 1].max() <= 7


def test_sandbox_keeps_a_valid_model_when_its_conversion_dies():
    validation = json.dumps({"ok": True, "schema": {}, "sample": {}})
    report, runtime = _parse_report(f"noise\n{validation}\n".encode())
    assert report["ok"] and runtime is None  # the caller records not_convertible


def test_model_cache_is_bounded_in_megabytes(iris, iris_v2, diabetes):
    blobs = [iris.as_skops(), iris_v2.as_skops(), diabetes.as_skops()]
    shas = [hashlib.sha256(b).hexdigest() for b in blobs]
    schemas = [derive_schema(t.estimator) for t in (iris, iris_v2, diabetes)]
    cases = list(zip(shas, blobs, schemas, strict=True))
    unbounded = ModelCache(capacity=100)
    sizes = [
        unbounded.get(sha, schema, "skops", lambda b=blob: b).footprint
        for sha, blob, schema in cases
    ]
    unbounded.clear()
    assert all(size > 0 for size in sizes)
    budget = sum(sizes) - 1  # the three do not fit together; the last two do
    cache = ModelCache(capacity=100, max_bytes=budget)
    for sha, blob, schema in cases:
        cache.get(sha, schema, "skops", lambda b=blob: b)
        assert cache.bytes_used <= budget
    assert shas[0] not in cache and shas[1] in cache and shas[2] in cache
    assert cache.evictions == 1
    processes = [p.proc for m in cache.loaded() for p in m._all]
    assert all(p is not None and p.poll() is None for p in processes)
    cache.clear()  # closing the cache stops its inference processes
    assert all(p.poll() is not None for p in processes)


def test_micro_batcher_answers_each_request_with_its_own_rows(cancer):
    forest = cancer.estimator

    def predict(rows, deadline):
        assert deadline > time.monotonic()
        if rows.shape[1] != 30:
            raise ValueError("wrong width")
        return forest.predict(rows), forest.predict_proba(rows)

    batcher = MicroBatcher(predict, max_rows=16, max_wait_seconds=0.05)
    answers: dict[int, object] = {}

    def ask(i):
        rows = cancer.X[i : i + 1] if i != 5 else np.zeros((1, 3))
        try:
            answers[i] = batcher.predict(rows, time.monotonic() + 10)
        except ValueError as exc:
            answers[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert isinstance(answers.pop(5), ValueError)  # only the bad request fails
    for i, (labels, proba) in answers.items():
        assert labels.tolist() == forest.predict(cancer.X[i : i + 1]).tolist()
        np.testing.assert_array_equal(proba, forest.predict_proba(cancer.X[i : i + 1]))
    assert batcher.batches < batcher.batched_requests  # requests were combined


def eight_concurrent_predictions(app, keys, iris):
    """Eight threads ask for three rows each at once; every answer must be its own.
    Returns the loaded model that served them (scikit-learn)."""
    results: dict[int, list] = {}

    def ask(i):
        results[i] = predict(
            app.test_client(), keys.predict, "iris", iris.X[i * 10 : i * 10 + 3]
        )["predictions"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for i in range(8):
        assert (
            results[i] == iris.estimator.predict(iris.X[i * 10 : i * 10 + 3]).tolist()
        )
    [loaded] = [
        m for m in app.extensions["modeldock"].models.loaded() if m.kind == "isolated"
    ]
    return loaded


def test_micro_batching_on_the_sklearn_path_keeps_answers(tmp_path, iris):
    with running_app(
        "sqlite",
        tmp_path,
        MODELDOCK_MICROBATCH_MAX_ROWS=8,
        MODELDOCK_MICROBATCH_MAX_WAIT_MS=20,
        MODELDOCK_REQUEST_LOG_ENABLED=False,
    ) as app:
        keys = make_keys(app)
        client = app.test_client()
        assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
        assert set_runtime(client, keys.admin, "iris", "sklearn")[0] == 200
        loaded = eight_concurrent_predictions(app, keys, iris)
        assert loaded.batcher.batched_requests == 8
        # Request logging is off in this app: nothing was queued.
        assert app.extensions["modeldock.request_log"].flush() == 0


def test_micro_batching_is_set_per_model(tmp_path, iris):
    with running_app("sqlite", tmp_path, MODELDOCK_REQUEST_LOG_ENABLED=False) as app:
        keys = make_keys(app)
        client = app.test_client()
        assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
        assert set_runtime(client, keys.admin, "iris", "sklearn")[0] == 200
        path = "/api/v1/models/iris/batching"
        model = client.get("/api/v1/models/iris", headers=auth(keys.predict)).get_json()
        assert model["batching"] == {
            "max_rows": None,
            "max_wait_ms": None,
            "effective": None,
        }  # the deployment's: off
        for bad, field in (
            ({"max_rows": -1}, "max_rows"),
            ({"max_rows": 2.5}, "max_rows"),
            ({"max_rows": True}, "max_rows"),
            ({"max_wait_ms": "2"}, "max_wait_ms"),
            ({"max_wait_ms": 5000}, "max_wait_ms"),
        ):
            with client.put(path, json=bad, headers=auth(keys.admin)) as refused:
                error = refused.get_json()["error"]
                assert (refused.status_code, error["code"], error["field"]) == (
                    400,
                    "invalid_batching",
                    field,
                ), bad
        assert (
            client.put(
                path, json={"max_rows": 8}, headers=auth(keys.predict)
            ).status_code
            == 403
        )
        with client.put(
            path,
            json={"max_rows": 8, "max_wait_ms": 20, "reason": "burst traffic"},
            headers=auth(keys.admin),
        ) as done:
            assert done.status_code == 200
            assert done.get_json()["batching"] == {
                "max_rows": 8,
                "max_wait_ms": 20.0,
                "effective": {"max_rows": 8, "max_wait_ms": 20.0},
            }
        loaded = eight_concurrent_predictions(app, keys, iris)
        assert (loaded.batcher.max_rows, loaded.batcher.batched_requests) == (8, 8)
        # Off for this model: requests no longer go through the batcher.
        off = client.put(path, json={"max_rows": 0}, headers=auth(keys.admin))
        assert off.get_json()["batching"]["effective"] is None
        predict(client, keys.predict, "iris", iris.X[:3])
        assert loaded.batcher.batched_requests == 8
        with app.app_context():
            events = db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "model.batching")
                .order_by(AuditEvent.id)
            ).all()
            assert [e.details["to"]["max_rows"] for e in events] == [8, 0]
            assert events[0].reason == "burst traffic"


def test_admin_page_sets_micro_batching(served):
    app, client, keys = served
    admin = app.test_client()
    token = sign_in(admin, "root", "correct horse battery")
    with admin.get("/admin/models/centroid") as page:
        assert re.search(r'id="batching">.*?<strong>off</strong>', page.text, re.S)
    with admin.post(
        "/admin/models/centroid/batching", data={"max_rows": "-3", "csrf_token": token}
    ) as refused:
        assert refused.status_code == 400 and 'id="max_rows-error"' in refused.text
    with admin.post(
        "/admin/models/centroid/batching",
        data={
            "max_rows": "4",
            "max_wait_ms": "5",
            "reason": "bursts",
            "csrf_token": token,
        },
        follow_redirects=True,
    ) as done:
        assert "up to 4 rows, at most 5 ms wait" in done.text
        assert "this model&#39;s setting" in done.text
    with client.get("/api/v1/models/centroid", headers=auth(keys.predict)) as api:
        assert api.get_json()["batching"]["effective"] == {
            "max_rows": 4,
            "max_wait_ms": 5.0,
        }
    with admin.post(
        "/admin/models/centroid/batching",
        data={"max_rows": "", "max_wait_ms": "", "csrf_token": token},
        follow_redirects=True,
    ) as back:
        assert re.search(
            r'id="batching">.*?<strong>off</strong>.*?deployment', back.text, re.S
        )
