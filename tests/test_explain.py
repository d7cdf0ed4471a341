"""Explanations: per-feature contributions that add up to the model's own output,
computed in the inference process that holds the estimator, through the API and the
predict page's "why?" link."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from app.auth.credentials import create_api_key
from app.extensions import db
from app.models import User
from app.serving.runtimes import explainer
from app.serving.runtimes.base import PredictionTimeout
from app.serving.runtimes.isolated import IsolatedRuntime
from app.serving.runtimes.predictor import Predictor
from tests import hostile_state as hostile
from tests.conftest import auth, sign_in, upload
from tests.test_isolation import IRIS_SCHEMA, SECRET, register_unchecked

X, Y = load_iris(return_X_y=True)
XD, YD = load_diabetes(return_X_y=True)
IRIS_NAMES = ["x0", "x1", "x2", "x3"]
DIABETES_NAMES = [f"x{i}" for i in range(10)]


def model_output(model, rows) -> np.ndarray:
    """What each kind of model's explanation adds up to, asked of scikit-learn."""
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    if isinstance(final, RandomForestClassifier | ExtraTreesClassifier) or isinstance(
        final, DecisionTreeClassifier
    ):
        return model.predict_proba(rows)
    if hasattr(final, "classes_"):
        return model.decision_function(rows).reshape(len(rows), -1)
    return model.predict(rows).reshape(len(rows), -1)


def assert_adds_up(explanation, model, rows):
    expected = model_output(model, rows)
    assert explanation.output.shape == expected.shape
    np.testing.assert_allclose(explanation.output, expected, rtol=0, atol=1e-9)
    total = explanation.base + explanation.contributions.sum(axis=2)
    assert np.abs(total - expected).max() <= 1e-6


CASES = [
    # (model, X, y, explained output, number of outputs)
    (LogisticRegression(max_iter=500), X, Y == 2, "log_odds", 1),
    (LogisticRegression(max_iter=500), X, Y, "decision_function", 3),
    (LinearRegression(), XD, YD, "prediction", 1),
    (Ridge(alpha=0.5), XD, YD, "prediction", 1),
    (RandomForestClassifier(25, random_state=0), X, Y, "probability", 3),
    (RandomForestRegressor(15, random_state=0), XD, YD, "prediction", 1),
    (ExtraTreesClassifier(10, random_state=0), X, Y, "probability", 3),
    (DecisionTreeClassifier(random_state=0), X, Y, "probability", 3),
    (DecisionTreeRegressor(max_depth=6, random_state=0), XD, YD, "prediction", 1),
    (GradientBoostingClassifier(n_estimators=20), X, Y == 1, "log_odds", 1),
    (GradientBoostingClassifier(n_estimators=20), X, Y, "decision_function", 3),
    (GradientBoostingRegressor(n_estimators=30), XD, YD, "prediction", 1),
]


@pytest.mark.parametrize(
    "model,x,y,explained,outputs", CASES, ids=[type(c[0]).__name__ for c in CASES]
)
def test_contributions_plus_base_equal_the_models_output(
    model, x, y, explained, outputs
):
    model.fit(x, y)
    names = [f"x{i}" for i in range(x.shape[1])]
    rows = x[::7]
    result = explainer.explain(model, rows, names)
    assert result.explained == explained
    assert result.contributions.shape == (len(rows), outputs, x.shape[1])
    assert result.features == names and result.mapped
    assert_adds_up(result, model, rows)
    # The base does not depend on the row: the intercept, or the trees' mean.
    assert np.allclose(result.base, result.base[0])


def test_linear_contributions_are_coefficient_times_value():
    model = LogisticRegression(max_iter=500).fit(X, Y)
    result = explainer.explain(model, X[:3], IRIS_NAMES)
    assert result.outputs == [0, 1, 2]
    np.testing.assert_allclose(result.contributions[1, 2], model.coef_[2] * X[1])
    np.testing.assert_allclose(result.base[0], model.intercept_)


def test_a_scaled_pipeline_maps_contributions_to_its_input_features():
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y)
    result = explainer.explain(model, X[:10], IRIS_NAMES)
    assert result.mapped and result.features == IRIS_NAMES
    assert_adds_up(result, model, X[:10])
    scaler, linear = model.steps[0][1], model.steps[-1][1]
    expected = linear.coef_[0] * (X[4] - scaler.mean_) / scaler.scale_
    np.testing.assert_allclose(result.contributions[4, 0], expected)

    regressor = make_pipeline(MinMaxScaler(), Ridge()).fit(XD, YD)
    result = explainer.explain(regressor, XD[:5], DIABETES_NAMES)
    assert result.mapped and result.features == DIABETES_NAMES
    assert_adds_up(result, regressor, XD[:5])


def test_one_hot_columns_sum_back_to_their_source_column():
    x = np.column_stack([np.round(X[:, 0]), X[:, 1:]])
    model = make_pipeline(
        ColumnTransformer(
            [
                ("onehot", OneHotEncoder(handle_unknown="ignore"), [0]),
                ("scale", StandardScaler(), [1, 3]),
            ]
        ),
        LogisticRegression(max_iter=500),
    ).fit(x, Y)
    result = explainer.explain(model, x[:6], IRIS_NAMES)
    assert result.mapped and result.features == IRIS_NAMES
    assert_adds_up(result, model, x[:6])
    assert np.all(result.contributions[:, :, 2] == 0)  # x2 is dropped
    linear = model.steps[-1][1]
    onehot = model.steps[0][1].transform(x[:1])[0, :-2]
    np.testing.assert_allclose(
        result.contributions[0, 1, 0], linear.coef_[1][: len(onehot)] @ onehot
    )


def test_an_unmappable_transform_reports_transformed_features():
    model = make_pipeline(StandardScaler(), PCA(3), Ridge()).fit(XD, YD)
    result = explainer.explain(model, XD[:5], DIABETES_NAMES)
    assert not result.mapped
    assert result.features == ["pca0", "pca1", "pca2"]
    assert_adds_up(result, model, XD[:5])


@pytest.mark.parametrize(
    "model,name",
    [
        (KNeighborsClassifier(), "KNeighborsClassifier"),
        (SVC(kernel="rbf"), "SVC"),
        (make_pipeline(StandardScaler(), SVC(kernel="rbf")), "SVC"),
    ],
)
def test_other_models_are_refused_by_name(model, name):
    model.fit(X, Y)
    with pytest.raises(explainer.NotExplainable) as refused:
        explainer.explain(model, X[:2], IRIS_NAMES)
    assert refused.value.estimator == name


def test_explain_runs_in_the_inference_process_under_a_deadline():
    model = RandomForestClassifier(10, random_state=0).fit(X, Y)
    schema = {
        "estimator": "RandomForestClassifier",
        "allow_nan": False,
        "n_features": 4,
        "feature_names": IRIS_NAMES,
        "named_features": False,
        "task": "classification",
        "classes": [0, 1, 2],
        "has_proba": True,
    }
    runtime = IsolatedRuntime("e" * 64, skops.io.dumps(model), "skops", schema)
    try:
        result = runtime.explain(X[:5], time.monotonic() + 10)
        assert_adds_up(result, model, X[:5])
        # The process still predicts after explaining (one protocol, two ops).
        labels, _ = runtime.predict(X[:5], time.monotonic() + 10)
        assert labels.tolist() == model.predict(X[:5]).tolist()
        # Past its deadline, an explanation is given up (the process is replaced).
        with pytest.raises(PredictionTimeout):
            runtime.explain(X[:5], time.monotonic())
        labels, _ = runtime.predict(X[:5], time.monotonic() + 60)
        assert labels.tolist() == model.predict(X[:5]).tolist()
    finally:
        runtime.close()


# --- the API, on SQLite and PostgreSQL


def explain(client, key, name, body, path="explain"):
    return client.post(f"/api/v1/models/{name}/{path}", headers=auth(key), json=body)


@pytest.fixture
def no_model_code_here(monkeypatch):
    """Any attempt to load or explain an estimator in this (web) process fails."""

    def refuse(*args, **kwargs):
        raise AssertionError("model code ran in the web worker")

    monkeypatch.setattr(explainer, "explain", refuse)
    monkeypatch.setattr(Predictor, "__init__", refuse)


def test_route_explains_in_the_isolated_process(client, keys, iris, no_model_code_here):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    rows = iris.X[[0, 60, 120]].tolist()
    response = explain(client, keys.predict, "iris", {"instances": rows})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["explained_output"] == "decision_function"
    assert body["method"] == "linear" and body["per_input_feature"] is True
    assert body["features"] == IRIS_NAMES and body["outputs"] == [0, 1, 2]
    expected = iris.estimator.decision_function(np.array(rows))
    for row, want in zip(body["explanations"], expected, strict=True):
        total = np.array(row["base_value"]) + np.array(row["contributions"]).sum(1)
        assert np.abs(total - want).max() <= 1e-6
        np.testing.assert_allclose(row["output"], want, atol=1e-9)
    assert body["request_id"]


def test_a_hostile_models_explanation_is_contained_like_its_prediction(
    app, client, keys, tmp_path, caplog
):
    """test_isolation's pattern: this pipeline's transform opens a file. Outside an
    inference process, explaining it reads the secret; through the API it cannot."""
    secret = tmp_path / "secret_key"
    secret.write_text(SECRET)
    data, row = hostile.file_reading_stack(str(secret))
    control = Predictor(data, "joblib", {**IRIS_SCHEMA}).explain(np.array([row]))
    assert control.base[0, 0] + control.contributions[0, 0].sum() == len(SECRET)
    with app.app_context():
        register_unchecked("evil", data, "joblib", task="regression")
    with caplog.at_level(logging.WARNING):
        response = explain(client, keys.predict, "evil", {"instances": [row]})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "prediction_failed"
    assert SECRET not in response.get_data(as_text=True)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "PermissionError" in logged and SECRET not in logged


def test_route_takes_named_rows_and_a_pinned_version(client, keys, iris, diabetes):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(iris.X, Y)
    data = skops.io.dumps(tree)
    assert upload(client, keys.admin, "iris", data).status_code == 201
    named = [dict(zip(IRIS_NAMES, iris.X[5].tolist(), strict=True))]
    response = explain(
        client, keys.predict, "iris", {"instances": named}, "versions/2/explain"
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["version"] == 2 and body["explained_output"] == "probability"
    [row] = body["explanations"]
    total = np.array(row["base_value"]) + np.array(row["contributions"]).sum(1)
    np.testing.assert_allclose(total, tree.predict_proba(iris.X[5:6])[0], atol=1e-6)


def test_onnx_served_versions_are_explained_from_their_artifact(client, keys, diabetes):
    assert upload(client, keys.admin, "d", diabetes.as_skops()).status_code == 201
    switched = client.put(
        "/api/v1/models/d/versions/1/runtime",
        headers=auth(keys.admin),
        json={"runtime": "onnx", "reason": "test"},
    )
    assert switched.status_code == 200, switched.get_json()
    response = explain(
        client, keys.predict, "d", {"instances": diabetes.X[:2].tolist()}
    )
    assert response.status_code == 200, response.get_json()
    [first, _] = response.get_json()["explanations"]
    want = diabetes.estimator.predict(diabetes.X[:1])[0]
    assert abs(first["base_value"][0] + sum(first["contributions"][0]) - want) < 1e-6


def test_route_refuses_models_it_cannot_explain(client, keys):
    knn = KNeighborsClassifier().fit(X, Y)
    assert upload(client, keys.admin, "knn", skops.io.dumps(knn)).status_code == 201
    response = explain(client, keys.predict, "knn", {"instances": [X[0].tolist()]})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "not_explainable"
    assert "KNeighborsClassifier" in error["message"]
    # The process that refused still answers predictions.
    ok = client.post(
        "/api/v1/models/knn/predict",
        headers=auth(keys.predict),
        json={"instances": [X[0].tolist()]},
    )
    assert ok.status_code == 200


def test_route_needs_the_predict_scope_and_valid_rows(app, client, keys, iris):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    assert client.post("/api/v1/models/iris/explain", json={}).status_code == 401
    with app.app_context():
        admin = db.session.get(User, keys.admin_user_id)
        _, only_admin = create_api_key(admin, "admin only", ["admin"])
        db.session.commit()
    response = explain(client, only_admin, "iris", {"instances": [[1, 2, 3, 4]]})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "insufficient_scope"
    response = explain(client, keys.predict, "iris", {"instances": [[1, 2]]})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "wrong_feature_count"
    response = explain(client, keys.predict, "nope", {"instances": [[1, 2, 3, 4]]})
    assert response.get_json()["error"]["code"] == "model_not_found"


# --- the predict page's "why?" link


def test_the_form_result_links_why_and_shows_the_contributions(
    client, keys, iris, no_model_code_here
):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    token = sign_in(client, "alice", "alice password 1")
    row = iris.X[120]
    data = {"csrf_token": token, **{f"f{i}": str(v) for i, v in enumerate(row)}}
    with client.post("/models/iris", data=data) as page:
        assert page.status_code == 200
        assert 'action="/models/iris/explain"' in page.text
        assert 'id="why-submit"' in page.text and 'id="explanation"' not in page.text
        hidden = dict(
            re.findall(r'type="hidden" name="(f\d)" value="([^"]*)"', page.text)
        )
    assert hidden == {k: v for k, v in data.items() if k.startswith("f")}
    assert client.post("/models/iris/explain", data=hidden).status_code == 403  # CSRF
    with client.post("/models/iris/explain", data=data) as page:
        assert page.status_code == 200, page.text[-800:]
        assert 'id="explanation"' in page.text
        label = iris.estimator.predict(row.reshape(1, -1))[0]
        assert f"decision function of class {label}" in page.text
        cells = re.findall(r"<td>(x\d)</td><td>[^<]*</td><td>([^<]+)</td>", page.text)
        assert [c[0] for c in cells] == IRIS_NAMES
        assert "<svg" in page.text
    scaler, linear = iris.estimator.steps[0][1], iris.estimator.steps[-1][1]
    want = linear.coef_[label] * (row - scaler.mean_) / scaler.scale_
    np.testing.assert_allclose([float(c[1]) for c in cells], want, atol=1e-4)


def test_the_why_link_says_when_a_model_cannot_be_explained(client, keys):
    knn = KNeighborsClassifier().fit(X, Y)
    assert upload(client, keys.admin, "knn", skops.io.dumps(knn)).status_code == 201
    token = sign_in(client, "alice", "alice password 1")
    data = {"csrf_token": token, **{f"f{i}": str(v) for i, v in enumerate(X[0])}}
    with client.post("/models/knn/explain", data=data) as page:
        assert page.status_code == 200
        assert 'id="prediction"' in page.text
        assert "this model is a KNeighborsClassifier" in page.text
