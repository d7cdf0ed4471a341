"""TensorFlow Serving REST API: the request bodies of TF Serving's own documentation,
shape for shape, against real uploaded models; errors in TF's ``{"error": ...}``."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from app.auth.credentials import create_api_key
from app.extensions import db
from app.models import RequestLog, User
from app.rollout import aliases as rollout
from app.serving.state import serving_state
from tests.conftest import auth, make_keys, running_app, upload


def _linear(
    coef: list[float], intercept: float, names: list[str] | None = None
) -> bytes:
    """A fitted LinearRegression with exact coefficients (feature names optional)."""
    X = np.array(
        [[float(i == j) for j in range(len(coef))] for i in range(len(coef))]
        + [[0.0] * len(coef)]
    )
    y = X @ np.array(coef) + intercept
    model = LinearRegression().fit(X, y)
    if names is not None:  # as if it had been fitted on a DataFrame with these columns
        model.feature_names_in_ = np.array(names, dtype=object)
    return pickle.dumps(model)


@pytest.fixture(scope="module")
def served(tmp_path_factory, iris, iris_v2):
    """iris (v1 stable, v2 uploaded), and the toy models of TF Serving's examples.

    SQLite only: what the protocol adds is database-agnostic, and the database paths it
    uses (routing snapshot, keys, request logs) are the native API's, tested on both.
    """
    with running_app(
        "sqlite", tmp_path_factory.mktemp("db"), MODELDOCK_MAX_BATCH_ROWS=50
    ) as app:
        keys = make_keys(app)
        client = app.test_client()
        for name, data, filename in (
            ("iris", iris.as_skops(), "iris.skops"),
            ("iris", iris_v2.as_skops(), "iris2.skops"),
            # TF Serving's example model: y = 0.5 x + 3 (one input)
            ("half_plus_three", _linear([0.5], 3.0), "h.pkl"),
            # two features: y = x0 + 10 x1, for tensors of shape [1, 2] per instance
            ("pair", _linear([1.0, 10.0], 0.0), "pair.pkl"),
            # named inputs as in the docs' row-format example
            (
                "sensors",
                _linear([1.0, 2.0, 3.0], 0.0, ["tag", "signal", "sensor"]),
                "sensors.pkl",
            ),
        ):
            response = upload(client, keys.admin, name, data, filename)
            assert response.status_code == 201, response.get_json()
        yield app, client, keys


def post(client, key, path, body, content_type="application/json"):
    return client.post(
        path, data=json.dumps(body), headers=auth(key), content_type=content_type
    )


def assert_tf_error(response, status):
    """TF Serving's error shape: exactly one key, ``error``, holding a message."""
    assert response.status_code == status, response.data
    body = response.get_json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"]
    return body["error"]


# --- the documentation's "Example" section, verbatim


def test_doc_example_status_of_half_plus_three(served):
    _, client, keys = served
    response = client.get("/v1/models/half_plus_three", headers=auth(keys.predict))
    assert response.status_code == 200
    assert response.get_json() == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def test_doc_example_predict_with_curl_defaults(served):
    """`curl -d '{"instances": [1.0,2.0,5.0]}'` sends a form type; TF reads JSON."""
    _, client, keys = served
    response = post(
        client,
        keys.predict,
        "/v1/models/half_plus_three:predict",
        {"instances": [1.0, 2.0, 5.0]},
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200, response.data
    assert response.get_json() == {"predictions": pytest.approx([3.5, 4.0, 5.5])}


def test_doc_example_unknown_model_is_404_with_error_key(served):
    _, client, keys = served
    response = post(
        client, keys.predict, "/v1/models/half:predict", {"instances": [1.0, 5.0]}
    )
    assert "half" in assert_tf_error(response, 404)


# --- the request formats, shape for shape


def test_row_format_list_of_scalars(served):
    _, client, keys = served
    ok = post(
        client,
        keys.predict,
        "/v1/models/half_plus_three:predict",
        {"instances": [1.0, 2.0, 5.0]},
    )
    assert ok.get_json()["predictions"] == pytest.approx([3.5, 4.0, 5.5])
    # The docs' string scalars ("foo", "bar", "baz") are not numbers for this model.
    refused = post(
        client,
        keys.predict,
        "/v1/models/half_plus_three:predict",
        {"instances": ["foo", "bar", "baz"]},
    )
    assert "not a number" in assert_tf_error(refused, 400)


def test_row_format_tensors_of_shape_1x2(served):
    _, client, keys = served
    response = post(
        client,
        keys.predict,
        "/v1/models/pair:predict",
        {"instances": [[[1, 2]], [[3, 4]]]},
    )
    assert response.status_code == 200, response.data
    assert response.get_json() == {"predictions": pytest.approx([21.0, 43.0])}


def test_row_format_named_inputs(served):
    _, client, keys = served
    body = {
        "instances": [
            {"tag": 1, "signal": 2, "sensor": [3]},
            {"tag": 4, "signal": [5], "sensor": 6},
        ]
    }
    response = post(client, keys.predict, "/v1/models/sensors:predict", body)
    assert response.status_code == 200, response.data
    assert response.get_json() == {"predictions": pytest.approx([14.0, 32.0])}
    # The docs' own instance has a 5-value "signal": each feature here is one number.
    verbatim = {
        "instances": [
            {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
            {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]},
        ]
    }
    message = assert_tf_error(
        post(client, keys.predict, "/v1/models/sensors:predict", verbatim), 400
    )
    assert "signal" in message


def test_columnar_format_named_and_single_tensor(served, iris):
    _, client, keys = served
    named = post(
        client,
        keys.predict,
        "/v1/models/sensors:predict",
        {"inputs": {"tag": [1, 4], "signal": [2, 5], "sensor": [3, 6]}},
    )
    assert named.get_json() == {"outputs": pytest.approx([14.0, 32.0])}
    rows = iris.X[[0, 70, 140]]
    single = post(
        client, keys.predict, "/v1/models/iris:predict", {"inputs": rows.tolist()}
    )
    assert single.get_json() == {"outputs": iris.estimator.predict(rows).tolist()}
    by_input_name = post(
        client,
        keys.predict,
        "/v1/models/iris:predict",
        {"inputs": {"input": rows.tolist()}},
    )
    assert by_input_name.get_json() == single.get_json()


def test_instances_and_inputs_together_are_refused(served):
    _, client, keys = served
    response = post(
        client,
        keys.predict,
        "/v1/models/half_plus_three:predict",
        {"instances": [1.0], "inputs": [1.0]},
    )
    assert "not both" in assert_tf_error(response, 400)


def test_signatures_labels_and_probabilities(served, iris):
    _, client, keys = served
    rows = iris.X[[10, 90]]
    labels = post(
        client,
        keys.predict,
        "/v1/models/iris:predict",
        {"signature_name": "serving_default", "instances": rows.tolist()},
    )
    assert labels.get_json() == {"predictions": iris.estimator.predict(rows).tolist()}
    proba = post(
        client,
        keys.predict,
        "/v1/models/iris:predict",
        {"signature_name": "predict_proba", "instances": rows.tolist()},
    )
    np.testing.assert_allclose(
        proba.get_json()["predictions"], iris.estimator.predict_proba(rows), rtol=1e-12
    )
    unknown = post(
        client,
        keys.predict,
        "/v1/models/iris:predict",
        {"signature_name": "classify", "instances": rows.tolist()},
    )
    assert "signature_name" in assert_tf_error(unknown, 400)


# --- versions and labels (ModelDock aliases)


def test_versions_and_labels_choose_the_answering_version(served, iris, iris_v2):
    app, client, keys = served
    rows = iris.X[[50, 100, 149]]
    v1 = iris.estimator.predict_proba(rows)
    v2 = iris_v2.estimator.predict_proba(rows)
    assert not np.allclose(v1, v2)  # the two versions are told apart by their answers

    def proba(path):
        response = post(
            client,
            keys.predict,
            path,
            {"signature_name": "predict_proba", "instances": rows.tolist()},
        )
        assert response.status_code == 200, response.data
        return np.array(response.get_json()["predictions"])

    np.testing.assert_allclose(proba("/v1/models/iris:predict"), v1)
    np.testing.assert_allclose(proba("/v1/models/iris/labels/stable:predict"), v1)
    np.testing.assert_allclose(proba("/v1/models/iris/versions/2:predict"), v2)
    missing = post(
        client,
        keys.predict,
        "/v1/models/iris/labels/canary:predict",
        {"instances": rows.tolist()},
    )
    assert "canary" in assert_tf_error(missing, 404)
    with app.app_context():  # a canary: 10 % of clients, sticky
        rollout.set_canary("iris", 2, 10, "tf label test")
        db.session.commit()
        serving_state().routing.invalidate()
    try:
        np.testing.assert_allclose(proba("/v1/models/iris/labels/canary:predict"), v2)
        status = client.get(
            "/v1/models/iris/labels/canary", headers=auth(keys.predict)
        ).get_json()
        assert status["model_version_status"][0]["version"] == "2"
    finally:
        with app.app_context():
            rollout.clear_alias("iris", "canary", "tf label test done")
            db.session.commit()
            serving_state().routing.invalidate()


def test_status_lists_every_version_and_archived_ones_end(served):
    _, client, keys = served
    body = client.get("/v1/models/iris", headers=auth(keys.predict)).get_json()
    assert [(s["version"], s["state"]) for s in body["model_version_status"]] == [
        ("1", "AVAILABLE"),
        ("2", "AVAILABLE"),
    ]
    one = client.get("/v1/models/iris/versions/2", headers=auth(keys.predict))
    assert one.get_json()["model_version_status"][0]["version"] == "2"
    assert_tf_error(
        client.get("/v1/models/iris/versions/7", headers=auth(keys.predict)), 404
    )


def test_metadata_describes_signatures(served):
    _, client, keys = served
    for path in (
        "/v1/models/iris/metadata",
        "/v1/models/iris/labels/stable/metadata",
        "/v1/models/iris/versions/1/metadata",
    ):
        body = client.get(path, headers=auth(keys.predict)).get_json()
        assert body["model_spec"] == {
            "name": "iris",
            "signature_name": "",
            "version": "1",
        }
        defs = body["metadata"]["signature_def"]["signature_def"]
        assert set(defs) == {"serving_default", "predict_proba"}
        dims = defs["serving_default"]["inputs"]["input"]["tensor_shape"]["dim"]
        assert [d["size"] for d in dims] == ["-1", "4"]
        assert defs["predict_proba"]["outputs"]["probabilities"]["dtype"] == "DT_DOUBLE"
    pinned = client.get(
        "/v1/models/iris/versions/2/metadata", headers=auth(keys.predict)
    ).get_json()
    assert pinned["model_spec"]["version"] == "2"
    regressor = client.get(
        "/v1/models/half_plus_three/metadata", headers=auth(keys.predict)
    ).get_json()
    assert set(regressor["metadata"]["signature_def"]["signature_def"]) == {
        "serving_default"
    }


# --- errors: same statuses as the native API, TF's shape


BAD = [
    {"instances": [[1.0, 2.0, 3.0]]},
    {"instances": [[1.0, "x", 3.0, 4.0]]},
    {"instances": []},
    {"instances": [[5.1, 3.5, 1.4, 0.2]] * 51},
    {"instances": [{"x0": 1, "x1": 2, "x2": 3, "petal": 4}]},
    {"inputs": {"x0": [1], "x1": [2], "x2": [3]}},
    {"instances": "abc"},
    {"rows": [[1, 2, 3, 4]]},
]


@pytest.mark.parametrize("body", BAD)
def test_bad_bodies_get_native_statuses_in_tf_shape(served, body):
    _, client, keys = served
    native = post(client, keys.predict, "/api/v1/models/iris/predict", body)
    tf = post(client, keys.predict, "/v1/models/iris:predict", body)
    assert_tf_error(tf, native.status_code)
    # The message names the same offending field as the native error does.
    assert tf.get_json()["error"].startswith(native.get_json()["error"]["field"] + ": ")


def test_broken_json_unknown_paths_and_methods(served):
    _, client, keys = served
    broken = client.post(
        "/v1/models/iris:predict",
        data='{"instances": [[1,',
        headers=auth(keys.predict),
        content_type="application/json",
    )
    assert "not valid JSON" in assert_tf_error(broken, 400)
    assert_tf_error(
        client.get("/v1/models/iris/bogus", headers=auth(keys.predict)), 404
    )
    assert_tf_error(client.delete("/v1/models/iris", headers=auth(keys.predict)), 405)


def test_keys_and_scopes_apply(served):
    app, client, keys = served
    assert_tf_error(client.get("/v1/models/iris"), 401)
    assert_tf_error(client.get("/v1/models/iris", headers=auth("mdk_bad_key")), 401)
    with app.app_context():
        user = db.session.get(User, keys.admin_user_id)
        _, admin_only = create_api_key(user, "admin-only", ["admin"])
        db.session.commit()
    assert "predict" in assert_tf_error(
        post(client, admin_only, "/v1/models/iris:predict", {"instances": [[1] * 4]}),
        403,
    )
    assert (
        client.get("/v1/models/iris", headers={"X-API-Key": keys.predict}).status_code
        == 200
    )


def test_predictions_are_logged_as_tfserving(served, iris):
    app, client, keys = served
    app.extensions["modeldock.request_log"].flush()
    response = post(
        client,
        keys.predict,
        "/v1/models/iris/versions/1:predict",
        {"instances": iris.X[:3].tolist()},
    )
    request_id = response.headers["X-Request-ID"]
    app.extensions["modeldock.request_log"].flush()
    with app.app_context():
        row = db.session.scalar(
            db.select(RequestLog).where(RequestLog.request_id == request_id)
        )
    assert (row.protocol, row.model_name, row.version, row.rows, row.status_code) == (
        "tfserving",
        "iris",
        1,
        3,
        200,
    )


@pytest.mark.config(RATELIMIT_ENABLED=True, MODELDOCK_RATELIMIT_DEFAULT="2 per minute")
def test_rate_limit_answers_429_in_tf_shape(client, keys):
    for _ in range(2):
        assert client.get("/v1/models/x", headers=auth(keys.predict)).status_code == 404
    response = client.get("/v1/models/x", headers=auth(keys.predict))
    assert_tf_error(response, 429)
    assert int(response.headers["Retry-After"]) > 0


# --- :classify and :regress (tf.Example-style bodies)


def test_classify_gives_every_class_and_score_per_example(served, iris):
    _, client, keys = served
    rows = iris.X[[0, 60, 120]]
    names = ["x0", "x1", "x2", "x3"]
    # x3 comes from the context for all but the last example, which sets its own;
    # a feature the model does not take is ignored, as tf.io.parse_example does.
    examples = [
        {n: float(v) for n, v in zip(names[:3], row[:3], strict=True)} for row in rows
    ]
    examples[2]["x3"] = [float(rows[2][3])]
    examples[0]["comment"] = 1.0
    context = {"x3": float(rows[0][3])}
    rows = rows.copy()
    rows[1][3] = rows[0][3]
    response = post(
        client,
        keys.predict,
        "/v1/models/iris/versions/1:classify",
        {"examples": examples, "context": context},
    )
    assert response.status_code == 200, response.data
    results = response.get_json()["results"]
    scores = post(
        client,
        keys.predict,
        "/v1/models/iris/versions/1:predict",
        {"signature_name": "predict_proba", "instances": rows.tolist()},
    ).get_json()
    classes = [str(c) for c in iris.estimator.classes_]
    assert results == [
        [[c, p] for c, p in zip(classes, row, strict=True)]
        for row in scores["predictions"]
    ]
    assert np.allclose(
        [[p for _, p in r] for r in results],
        iris.estimator.predict_proba(rows),
        atol=1e-5,
    )
    by_label = post(
        client,
        keys.predict,
        "/v1/models/iris/labels/stable:classify",
        {"examples": examples[:1], "context": context},
    )
    assert by_label.get_json()["results"] == results[:1]


def test_regress_gives_one_value_per_example(served):
    _, client, keys = served
    response = post(
        client,
        keys.predict,
        "/v1/models/half_plus_three:regress",
        {"examples": [{"x0": 1.0}, {"x0": [2.0]}, {"x0": 5}]},
    )
    assert response.status_code == 200, response.data
    assert np.allclose(response.get_json()["results"], [3.5, 4.0, 5.5], rtol=1e-5)


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        (
            "/v1/models/half_plus_three:classify",
            {"examples": [{"x0": 1.0}]},
            400,
            "needs a classifier",
        ),
        (
            "/v1/models/iris:regress",
            {"examples": [{"x0": 1, "x1": 1, "x2": 1, "x3": 1}]},
            400,
            "needs a single-output regression model",
        ),
        (
            "/v1/models/iris:classify",
            {"examples": [{"x0": 1, "x1": 1, "x2": 1}]},
            400,
            "examples[0].x3: missing feature",
        ),
        ("/v1/models/iris:classify", {"examples": {"x0": 1}}, 400, "examples: send"),
        (
            "/v1/models/iris:classify",
            {"examples": [{"x0": 1, "x1": 1, "x2": 1, "x3": 1}], "context": [1]},
            400,
            "context:",
        ),
        (
            "/v1/models/iris:classify",
            {"examples": [{"x0": "a", "x1": 1, "x2": 1, "x3": 1}]},
            400,
            "not a number",
        ),
        (
            "/v1/models/iris:classify",
            {
                "signature_name": "predict_proba",
                "examples": [{"x0": 1, "x1": 1, "x2": 1, "x3": 1}],
            },
            400,
            "signature_name",
        ),
        ("/v1/models/nope:regress", {"examples": [{"x0": 1}]}, 404, "no model"),
    ],
)
def test_classify_and_regress_errors_are_tf_shaped(served, path, body, status, words):
    _, client, keys = served
    assert words in assert_tf_error(post(client, keys.predict, path, body), status)
