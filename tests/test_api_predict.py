"""The native JSON prediction API, against real uploaded models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.conftest import BACKENDS, auth, make_keys, running_app, upload


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory, iris, diabetes, iris_nan):
    """One app per backend with three models uploaded through the API."""
    with running_app(
        request.param, tmp_path_factory.mktemp("db"), MODELDOCK_MAX_BATCH_ROWS=50
    ) as app:
        keys = make_keys(app)
        client = app.test_client()
        for name, data, filename in (
            ("iris", iris.as_skops(), "iris.skops"),
            ("diabetes", diabetes.as_joblib(compress=3), "diabetes.joblib"),
            ("hgb", iris_nan.as_pickle(), "hgb.pkl"),
        ):
            response = upload(client, keys.admin, name, data, filename)
            assert response.status_code == 201, response.get_json()
        yield app, client, keys


def post(client, key, path, body):
    return client.post(
        path, data=json.dumps(body), headers=auth(key), content_type="application/json"
    )


def test_rows_give_labels_and_probabilities_equal_to_sklearn(served, iris):
    _, client, keys = served
    rows = iris.X[[0, 60, 120]]
    response = post(
        client,
        keys.predict,
        "/api/v1/models/iris/predict",
        {"instances": rows.tolist()},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["model"] == "iris" and body["version"] == 1
    assert body["predictions"] == iris.estimator.predict(rows).tolist()
    assert body["classes"] == [0, 1, 2]
    np.testing.assert_allclose(
        body["probabilities"], iris.estimator.predict_proba(rows), rtol=1e-12
    )
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["X-Model-Version"] == "1"


def test_named_rows_and_columns_match_positional_rows(served, iris):
    _, client, keys = served
    rows = iris.X[[5, 75]]
    names = ["x0", "x1", "x2", "x3"]
    named = [
        dict(zip(reversed(names), reversed(r.tolist()), strict=True)) for r in rows
    ]
    columns = {n: rows[:, i].tolist() for i, n in enumerate(names)}
    expected = iris.estimator.predict(rows).tolist()
    for body in ({"instances": named}, {"inputs": columns}):
        response = post(client, keys.predict, "/api/v1/models/iris/predict", body)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["predictions"] == expected


def test_regressor_from_compressed_joblib(served, diabetes):
    _, client, keys = served
    rows = diabetes.X[:4]
    body = post(
        client,
        keys.predict,
        "/api/v1/models/diabetes/predict",
        {"instances": rows.tolist()},
    ).get_json()
    np.testing.assert_allclose(body["predictions"], diabetes.estimator.predict(rows))
    assert "classes" not in body and "probabilities" not in body


def test_pinned_version_route(served, iris):
    _, client, keys = served
    response = post(
        client,
        keys.predict,
        "/api/v1/models/iris/versions/1/predict",
        {"instances": iris.X[:1].tolist()},
    )
    assert response.status_code == 200
    assert response.get_json()["version"] == 1
    missing = post(
        client,
        keys.predict,
        "/api/v1/models/iris/versions/9/predict",
        {"instances": iris.X[:1].tolist()},
    )
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "version_not_found"


def test_tutorial_route_uses_the_default_model(served, iris):
    app, client, keys = served
    app.config["MODELDOCK_DEFAULT_MODEL"] = "iris"
    response = post(
        client, keys.predict, "/predict", {"features": iris.X[100].tolist()}
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "prediction": iris.estimator.predict(iris.X[100:101]).tolist()
    }


def test_nan_allowed_only_for_models_that_handle_it(served, iris_nan):
    _, client, keys = served
    row = iris_nan.X[0].tolist()
    row[2] = math.nan
    body = json.dumps({"instances": [row]})  # Python's json writes NaN
    response = client.post(
        "/api/v1/models/hgb/predict",
        data=body,
        headers=auth(keys.predict),
        content_type="application/json",
    )
    assert response.status_code == 200, response.get_json()
    assert (
        response.get_json()["predictions"]
        == iris_nan.estimator.predict(np.array([row])).tolist()
    )
    refused = client.post(
        "/api/v1/models/iris/predict",
        data=body,
        headers=auth(keys.predict),
        content_type="application/json",
    )
    assert refused.status_code == 400
    assert refused.get_json()["error"] == {
        "code": "non_finite_value",
        "field": "instances[0][2]",
        "message": "value nan is not allowed for this model",
    }


ROW = [5.1, 3.5, 1.4, 0.2]
BAD_BODIES = [
    # (body, status, code, field)
    ({"instances": [[1.0, 2.0, 3.0]]}, 400, "wrong_feature_count", "instances[0]"),
    ({"instances": [ROW, [1.0, 2.0]]}, 400, "wrong_feature_count", "instances[1]"),
    (
        {"instances": [[1.0, "x", 3.0, 4.0]]},
        400,
        "non_numeric_value",
        "instances[0][1]",
    ),
    (
        {"instances": [[1.0, None, 3.0, 4.0]]},
        400,
        "non_numeric_value",
        "instances[0][1]",
    ),
    (
        {"instances": [[True, False, True, False]]},
        400,
        "non_numeric_value",
        "instances[0][0]",
    ),
    ({"instances": []}, 400, "empty_batch", "instances"),
    ({"instances": [ROW] * 51}, 413, "batch_too_large", "instances"),
    (
        {"instances": [{"x0": 1, "x1": 2, "x2": 3, "petal": 4}]},
        400,
        "unknown_feature",
        "instances[0].petal",
    ),
    (
        {"instances": [{"x0": 1, "x1": 2, "x2": 3}]},
        400,
        "missing_feature",
        "instances[0].x3",
    ),
    (
        {"inputs": {"x0": [1], "x1": [2], "x2": [3]}},
        400,
        "missing_feature",
        "inputs.x3",
    ),
    (
        {"inputs": {"x0": [1, 2], "x1": [2], "x2": [3], "x3": [4]}},
        400,
        "ragged_columns",
        "inputs",
    ),
    ({"instances": [ROW], "inputs": {}}, 400, "invalid_body", "instances"),
    ({"rows": [ROW]}, 400, "invalid_body", "instances"),
    ([ROW], 400, "invalid_body", "body"),
    ({"instances": "abc"}, 400, "invalid_instances", "instances"),
    ({"instances": [[1e400, 1, 1, 1]]}, 400, "non_finite_value", "instances[0][0]"),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), BAD_BODIES)
def test_bad_input_gets_a_json_error_naming_the_field(
    served, body, status, code, field
):
    _, client, keys = served
    raw = json.dumps(body).replace("1e+400", "Infinity")
    response = client.post(
        "/api/v1/models/iris/predict",
        data=raw,
        headers=auth(keys.predict),
        content_type="application/json",
    )
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"]


def test_malformed_json_and_wrong_content_type(served):
    _, client, keys = served
    broken = client.post(
        "/api/v1/models/iris/predict",
        data='{"instances": [[1,2',
        headers=auth(keys.predict),
        content_type="application/json",
    )
    assert broken.status_code == 400
    assert broken.get_json()["error"]["code"] == "malformed_json"
    form = client.post(
        "/api/v1/models/iris/predict",
        data={"instances": "1"},
        headers=auth(keys.predict),
    )
    assert form.status_code == 415
    assert form.get_json()["error"]["code"] == "unsupported_media_type"


def test_unknown_model_and_unknown_api_path_answer_json(served):
    _, client, keys = served
    response = post(
        client, keys.predict, "/api/v1/models/nope/predict", {"instances": [ROW]}
    )
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "model_not_found"
    lost = client.get("/api/v1/nothing-here", headers=auth(keys.predict))
    assert lost.status_code == 404 and lost.get_json()["error"]["code"] == "not_found"
    wrong = client.delete("/api/v1/models/iris/predict", headers=auth(keys.predict))
    assert wrong.status_code == 405
    assert wrong.get_json()["error"]["code"] == "method_not_allowed"
    page = client.get("/no-such-page")
    assert page.status_code == 404 and b"<html" in page.data


def test_metadata_routes(served):
    _, client, keys = served
    models = client.get("/api/v1/models", headers=auth(keys.predict)).get_json()
    assert [m["name"] for m in models["models"]] == ["diabetes", "hgb", "iris"]
    model = client.get("/api/v1/models/iris", headers=auth(keys.predict)).get_json()
    assert model["active_version"] == 1 and model["task"] == "classification"
    versions = client.get(
        "/api/v1/models/iris/versions", headers=auth(keys.predict)
    ).get_json()["versions"]
    assert versions[0]["status"] == "active"
    assert versions[0]["feature_names"] == ["x0", "x1", "x2", "x3"]
    one = client.get(
        "/api/v1/models/diabetes/versions/1", headers=auth(keys.predict)
    ).get_json()
    assert one["format"] == "joblib" and one["n_features"] == 10
    assert one["classes"] is None and len(one["sha256"]) == 64


def test_unexpected_failure_is_a_json_500_without_traceback(served, monkeypatch, iris):
    _, client, keys = served
    from app.serving import predict as predict_module

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(predict_module, "native_matrix", explode, raising=False)
    monkeypatch.setattr("app.protocols.native.routes.native_matrix", explode)
    response = post(
        client,
        keys.predict,
        "/api/v1/models/iris/predict",
        {"instances": iris.X[:1].tolist()},
    )
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert b"secret internal detail" not in response.data
    assert b"Traceback" not in response.data
