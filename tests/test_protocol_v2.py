"""Open Inference Protocol (KServe v2), driven by NVIDIA's tritonclient over real HTTP
against a real WSGI server, with answers compared to scikit-learn's own."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from app.extensions import db
from app.models import RequestLog
from app.rollout import versions as service
from app.serving.state import serving_state
from tests.conftest import auth, make_keys, running_app, upload
from tests.live_server import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory, iris, iris_v2, diabetes):
    """A served app on PostgreSQL (as in production) with iris v1+v2 and diabetes."""
    with running_app("postgresql", tmp_path_factory.mktemp("db")) as app:
        keys = make_keys(app)
        client = app.test_client()
        for name, data in (
            ("iris", iris.as_skops()),
            ("iris", iris_v2.as_skops()),
            ("diabetes", diabetes.as_skops()),
        ):
            response = upload(client, keys.admin, name, data)
            assert response.status_code == 201, response.get_json()
        with serve(app) as address:
            yield app, address, keys


@pytest.fixture
def triton_client(live):
    _, address, keys = live
    client = triton.InferenceServerClient(
        address, connection_timeout=10, network_timeout=30
    )
    try:
        # Pass a copy per call: tritonclient writes Inference-Header-Content-Length
        # into the headers dict it is given.
        yield client, auth(keys.predict)
    finally:
        client.close()


def tensor(name, array, datatype, binary):
    item = triton.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array, binary_data=binary)
    return item


def test_server_metadata_and_health(triton_client):
    client, headers = triton_client
    assert client.is_server_live(headers=dict(headers))
    assert client.is_server_ready(headers=dict(headers))
    metadata = client.get_server_metadata(headers=dict(headers))
    assert metadata["name"] == "modeldock"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata(triton_client):
    client, headers = triton_client
    iris = client.get_model_metadata("iris", headers=dict(headers))
    assert iris["versions"] == ["1", "2"] and iris["platform"] == "scikit-learn"
    assert iris["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert iris["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    pinned = client.get_model_metadata("iris", "2", headers=dict(headers))
    assert pinned["versions"] == ["2"]
    regressor = client.get_model_metadata("diabetes", headers=dict(headers))
    assert regressor["outputs"] == [
        {"name": "predict", "datatype": "FP64", "shape": [-1]}
    ]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize(
    "datatype", ["FP32", "FP64", "INT32", "INT64", "BOOL", "BYTES"]
)
def test_infer_each_datatype_matches_sklearn(triton_client, iris, datatype, binary):
    client, headers = triton_client
    rows = iris.X[::15]
    if datatype in ("FP32", "FP64"):
        sent = rows.astype(np.float32 if datatype == "FP32" else np.float64)
        expected_rows = sent.astype(np.float64)
    elif datatype in ("INT32", "INT64"):
        sent = np.rint(rows).astype(np.int32 if datatype == "INT32" else np.int64)
        expected_rows = sent.astype(np.float64)
    elif datatype == "BOOL":
        sent = rows > np.median(rows, axis=0)
        expected_rows = sent.astype(np.float64)
    else:  # BYTES: numbers as text
        sent = np.array([[f"{v:.1f}" for v in row] for row in rows], dtype=np.object_)
        expected_rows = rows.round(1)
    result = client.infer(
        "iris",
        [tensor("input", sent, datatype, binary)],
        headers=dict(headers),
        request_id=f"req-{datatype}",
    )
    np.testing.assert_array_equal(
        result.as_numpy("predict"), iris.estimator.predict(expected_rows)
    )
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"),
        iris.estimator.predict_proba(expected_rows),
        rtol=1e-12,
    )
    response = result.get_response()
    assert response["id"] == f"req-{datatype}"
    assert (response["model_name"], response["model_version"]) == ("iris", "1")


def test_requested_outputs_classification_and_per_feature_inputs(triton_client, iris):
    client, headers = triton_client
    rows = iris.X[[3, 77, 130]]
    per_feature = [tensor(f"x{j}", rows[:, j].copy(), "FP64", True) for j in range(4)]
    only_labels = client.infer(
        "iris",
        per_feature,
        headers=dict(headers),
        outputs=[triton.InferRequestedOutput("predict")],
    )
    assert only_labels.as_numpy("predict_proba") is None
    np.testing.assert_array_equal(
        only_labels.as_numpy("predict"), iris.estimator.predict(rows)
    )
    for binary in (True, False):  # BYTES output as binary and as JSON strings
        top = client.infer(
            "iris",
            [tensor("input", rows, "FP64", False)],
            headers=dict(headers),
            outputs=[
                triton.InferRequestedOutput(
                    "predict_proba", binary_data=binary, class_count=2
                )
            ],
        )
        scores = top.as_numpy("predict_proba")
        assert scores.shape == (3, 2)
        cells = [c.decode() if isinstance(c, bytes) else c for c in scores[:, 0]]
        assert [int(c.split(":")[1]) for c in cells] == iris.estimator.predict(
            rows
        ).tolist()
        assert float(cells[0].split(":")[0]) == pytest.approx(
            iris.estimator.predict_proba(rows).max(axis=1)[0], abs=1e-6
        )


def test_regressor_and_pinned_version(triton_client, iris_v2, diabetes):
    client, headers = triton_client
    rows = diabetes.X[:5]
    result = client.infer(
        "diabetes", [tensor("input", rows, "FP64", True)], headers=dict(headers)
    )
    np.testing.assert_allclose(
        result.as_numpy("predict"), diabetes.estimator.predict(rows), rtol=1e-12
    )
    pinned = client.infer(
        "iris",
        [tensor("input", iris_v2.X[:4], "FP64", True)],
        model_version="2",
        headers=dict(headers),
    )
    np.testing.assert_allclose(
        pinned.as_numpy("predict_proba"), iris_v2.estimator.predict_proba(iris_v2.X[:4])
    )
    assert pinned.get_response()["model_version"] == "2"


def test_errors_reach_the_client_in_the_protocol_shape(triton_client, iris):
    client, headers = triton_client
    cases = [
        ("nope", tensor("input", iris.X[:1], "FP64", True), "404", "nope"),
        (
            "iris",
            tensor("input", iris.X[:1, :3], "FP64", True),
            "400",
            "expected 4 features",
        ),
        (
            "iris",
            tensor("input", np.array([[1.0, np.inf, 1.0, 1.0]]), "FP64", True),
            "400",
            "not allowed",
        ),
    ]
    for model, item, status, words in cases:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, [item], headers=dict(headers))
        assert caught.value.status() == status
        assert words in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris", [tensor("input", iris.X[:1], "FP64", True)])
    assert caught.value.status() == "401"
    assert not client.is_server_live()  # without a key nothing is told


def test_readiness_tells_whether_this_worker_loaded_the_stable_version(
    live, iris, triton_client
):
    app, _, _ = live
    client, headers = triton_client
    assert client.is_server_live(headers=dict(headers))  # routing snapshot is current
    app.extensions["modeldock"].models.clear()  # as if evicted: nothing loaded here
    assert not client.is_model_ready("iris", headers=dict(headers))
    client.infer(
        "iris", [tensor("input", iris.X[:1], "FP64", True)], headers=dict(headers)
    )
    assert client.is_model_ready("iris", headers=dict(headers))
    assert not client.is_model_ready("iris", "2", headers=dict(headers))
    with app.app_context():  # version 2 becomes stable in the registry
        service.activate_version("iris", 2)
        db.session.commit()
    try:
        # The worker picks up the change and loads the new stable version before
        # routing to it, so it is ready without a prediction having loaded it.
        assert client.is_model_ready("iris", headers=dict(headers))
        assert client.is_model_ready("iris", "2", headers=dict(headers))
        response = client.get_model_metadata("iris", headers=dict(headers))
        assert response["versions"] == ["1", "2"]
    finally:
        with app.app_context():
            service.activate_version("iris", 1)
            db.session.commit()
            serving_state().routing.invalidate()


def test_infer_is_logged_as_v2(live, triton_client, iris):
    app, _, _ = live
    client, headers = triton_client
    result = client.infer(
        "iris",
        [tensor("input", iris.X[:2], "FP64", True)],
        headers=dict(headers),
        request_id="logged-1",
    )
    assert result.get_response()["id"] == "logged-1"
    app.extensions["modeldock.request_log"].flush()
    with app.app_context():
        rows = db.session.scalars(
            db.select(RequestLog).where(RequestLog.protocol == "v2")
        ).all()
    assert rows and all(
        r.model_name in ("iris", "diabetes", "nope", None) for r in rows
    )
    assert any(r.rows == 2 and r.status_code == 200 for r in rows)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_server_is_not_ready_when_the_database_is_unreachable(tmp_path):
    """Nothing listens on the database port: live, but not ready."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    from app import create_app

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x",
            "DATABASE_URL": url,
            "RATELIMIT_ENABLED": False,
            "MODELDOCK_ALLOW_ANONYMOUS_PREDICT": True,
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"connect_timeout": 2}},
        }
    )
    with serve(app) as address:
        client = triton.InferenceServerClient(address)
        try:
            assert client.is_server_live()
            assert not client.is_server_ready()
        finally:
            client.close()
    with app.app_context():
        db.engine.dispose()


def test_raw_json_bodies_with_nested_data_and_plain_errors(live, iris):
    app, _, keys = live
    client = app.test_client()
    rows = iris.X[[1, 2]]
    nested = client.post(
        "/v2/models/iris/infer",
        headers=auth(keys.predict),
        data=json.dumps(
            {
                "inputs": [
                    {
                        "name": "anything",
                        "shape": [2, 4],
                        "datatype": "FP64",
                        "data": rows.tolist(),
                    }
                ],
                "outputs": [{"name": "predict"}],
            }
        ),
    )
    assert nested.status_code == 200, nested.data
    assert nested.get_json()["outputs"] == [
        {
            "name": "predict",
            "datatype": "INT64",
            "shape": [2],
            "data": iris.estimator.predict(rows).tolist(),
        }
    ]
    for body, words in (
        (
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 4],
                        "datatype": "FP64",
                        "data": [1, 2, 3],
                    }
                ]
            },
            "shape holds 4 elements",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 4],
                        "datatype": "INT64",
                        "data": [1, 2, 3, 4.5],
                    }
                ]
            },
            "must be integers",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 4],
                        "datatype": "BF16",
                        "data": [1, 2, 3, 4],
                    }
                ]
            },
            "datatype must be one of",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, 4],
                        "datatype": "FP64",
                        "data": [1, 2, 3, 4],
                    }
                ],
                "outputs": [{"name": "proba"}],
            },
            "answers the outputs",
        ),
        ({"inputs": []}, "non-empty list"),
    ):
        response = client.post(
            "/v2/models/iris/infer", headers=auth(keys.predict), data=json.dumps(body)
        )
        assert response.status_code == 400, response.data
        assert (
            list(response.get_json()) == ["error"]
            and words in response.get_json()["error"]
        ), response.get_json()
    too_many = client.post(
        "/v2/models/iris/infer",
        headers=auth(keys.predict),
        data=json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [20000, 4],
                        "datatype": "FP64",
                        "data": [],
                    }
                ]
            }
        ),
    )
    assert too_many.status_code == 413 and "limit" in too_many.get_json()["error"]
    lost = client.get("/v2/nothing", headers=auth(keys.predict))
    assert lost.status_code == 404 and list(lost.get_json()) == ["error"]
