"""Feedback and live quality: idempotent feedback, figures equal to scikit-learn's
on the same rows, intervals against independent formulas, the canary verdict, the
Prometheus gauges and the admin page."""

from __future__ import annotations

import io
import math
from datetime import timedelta

import numpy as np
import pytest
from scipy import optimize, stats
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
)
from sqlalchemy import func, select

from app.auth.credentials import create_api_key
from app.extensions import db
from app.models import Feedback, RequestLog, User
from app.models._time import utcnow
from app.monitoring import intervals, quality
from app.observability.request_log import writer
from tests.conftest import Trained, auth, sign_in, upload

Z = stats.norm.ppf(0.975)


@pytest.fixture
def feedback_key(app, keys) -> str:
    with app.app_context():
        user = db.session.get(User, keys.user_id)
        _, plaintext = create_api_key(user, "labels", ["feedback"])
        db.session.commit()
        return plaintext


def flush(app) -> None:
    with app.app_context():
        writer().flush()


def predict(client, key, rows, request_id, path="/api/v1/models/iris/predict"):
    response = client.post(
        path,
        headers={**auth(key), "X-Request-ID": request_id},
        json={"instances": np.asarray(rows).tolist()},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def send(client, key, body, name="iris"):
    return client.post(f"/api/v1/models/{name}/feedback", headers=auth(key), json=body)


def test_feedback_is_idempotent_and_checked(app, client, keys, iris, feedback_key):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    answered = predict(client, keys.predict, iris.X[:5], "batch-1")
    flush(app)
    body = {
        "feedback": [
            {"request_id": "batch-1", "row": i, "label": label}
            for i, label in enumerate(answered["predictions"])
        ]
    }
    first = send(client, feedback_key, body)
    assert first.status_code == 200, first.get_json()
    again = send(client, feedback_key, body)
    assert (again.status_code, again.get_json()) == (200, first.get_json())
    assert first.get_json() == {"model": "iris", "accepted": 5}
    one = {"request_id": "batch-1", "row": 2, "label": answered["predictions"][2]}
    assert send(client, feedback_key, one).get_json() == {
        "model": "iris",
        "accepted": 1,
    }
    with app.app_context():
        assert db.session.scalar(select(func.count(Feedback.id))) == 5
    # A different truth for a reported row changes nothing.
    changed = send(client, feedback_key, {**one, "label": 1 - one["label"] % 2})
    assert changed.status_code == 409
    assert changed.get_json()["error"]["code"] == "feedback_conflict"

    def error(body):
        response = send(client, feedback_key, body)
        return response.status_code, response.get_json()["error"]

    status, err = error({"request_id": "never-seen", "label": 0})
    assert (status, err["code"], err["field"]) == (404, "unknown_request", "request_id")
    status, err = error({"request_id": "batch-1", "row": 5, "label": 0})
    assert (status, err["code"], err["field"]) == (404, "unknown_row", "row")
    status, err = error({"request_id": "batch-1", "row": 0, "label": "setosa"})
    assert (status, err["code"], err["field"]) == (422, "invalid_feedback", "label")
    status, err = error({"request_id": "batch-1", "row": "0", "label": 0})
    assert (status, err["field"]) == (422, "row")
    status, err = error({"request_id": "batch-1", "value": 1.5})
    assert (status, err["field"]) == (422, "label")
    # The scope: a predict key may not send feedback; nobody anonymous either.
    assert send(client, keys.predict, one).status_code == 403
    assert client.post("/api/v1/models/iris/feedback", json=one).status_code == 401
    with app.app_context():
        assert db.session.scalar(select(func.count(Feedback.id))) == 5


def test_labelled_rows_are_predicted_once_and_idempotent(
    app, client, keys, iris, feedback_key
):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    _, y = load_iris(return_X_y=True)
    body = {"instances": iris.X[:20].tolist(), "labels": y[:20].tolist()}
    headers = {**auth(feedback_key), "X-Request-ID": "labelled-1"}
    first = client.post("/api/v1/models/iris/feedback", headers=headers, json=body)
    again = client.post("/api/v1/models/iris/feedback", headers=headers, json=body)
    assert first.status_code == again.status_code == 200, first.get_json()
    assert first.get_json() == again.get_json()
    assert first.get_json()["request_id"] == "labelled-1"
    with app.app_context():
        assert db.session.scalar(select(func.count(Feedback.id))) == 20
        assert db.session.scalar(select(func.count(RequestLog.id))) == 1
        total = quality.report("iris")["versions"][0]["total"]
    assert total["n"] == 20
    bad = client.post(
        "/api/v1/models/iris/feedback",
        headers=auth(feedback_key),
        json={"instances": iris.X[:2].tolist(), "labels": [0]},
    )
    assert (bad.status_code, bad.get_json()["error"]["field"]) == (422, "labels")


def _classifier_session(app, client, keys, feedback_key, iris):
    """150 iris rows predicted through three protocols; the truths include some
    deliberately wrong labels, so that every figure is away from 1."""
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    _, y = load_iris(return_X_y=True)
    truth = y.copy()
    truth[::7] = (truth[::7] + 1) % 3
    items = []
    for start in range(0, 150, 30):
        rows, request_id = iris.X[start : start + 30], f"iris-{start}"
        kind = start // 30 % 3
        if kind == 0:
            predict(client, keys.predict, rows, request_id)
        elif kind == 1:
            predict(client, keys.predict, rows, request_id, "/v1/models/iris:predict")
        else:
            response = client.post(
                "/v2/models/iris/infer",
                headers={**auth(keys.predict), "X-Request-ID": request_id},
                json={
                    "inputs": [
                        {
                            "name": "x",
                            "shape": [len(rows), 4],
                            "datatype": "FP64",
                            "data": rows.ravel().tolist(),
                        }
                    ]
                },
            )
            assert response.status_code == 200, response.get_data(as_text=True)
        items += [
            {"request_id": request_id, "row": i, "label": int(truth[start + i])}
            for i in range(len(rows))
        ]
    flush(app)
    assert send(client, feedback_key, {"feedback": items}).status_code == 200
    return truth


def test_a_reused_request_id_is_judged_by_its_latest_prediction(
    app, client, keys, iris, feedback_key
):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    setosa, virginica = iris.X[0], iris.X[-1]
    first = predict(client, keys.predict, [setosa], "reused")["predictions"][0]
    flush(app)
    latest = predict(client, keys.predict, [virginica], "reused")["predictions"][0]
    flush(app)
    assert first != latest
    body = {"request_id": "reused", "row": 0, "label": latest}
    assert send(client, feedback_key, body).status_code == 200
    with app.app_context():
        (outcome,) = quality.outcomes(utcnow() - timedelta(hours=1))
        total = quality.report("iris", "hour")["versions"][0]["total"]
    assert (outcome.predicted, outcome.truth) == (latest, latest)
    assert total["n"] == 1 and total["accuracy"]["value"] == 1.0


def test_live_figures_equal_scikit_learn(app, client, keys, iris, feedback_key):
    truth = _classifier_session(app, client, keys, feedback_key, iris)
    with app.app_context():
        stored = db.session.scalars(select(RequestLog).order_by(RequestLog.id)).all()
        assert {log.protocol for log in stored} == {"native", "tfserving", "v2"}
        report = quality.report("iris", "day")
    # The oracle is the estimator itself, not what the request log kept; the log
    # keeps probabilities to 6 decimals, which the figures are computed from.
    y_pred = iris.estimator.predict(iris.X)
    proba = np.round(iris.estimator.predict_proba(iris.X), 6)
    total = report["versions"][0]["total"]
    assert total["n"] == 150
    assert total["accuracy"]["value"] == pytest.approx(accuracy_score(truth, y_pred))
    precision = precision_score(truth, y_pred, average=None, labels=[0, 1, 2])
    recall = recall_score(truth, y_pred, average=None, labels=[0, 1, 2])
    for entry in total["classes"]:
        assert entry["precision"]["value"] == pytest.approx(precision[entry["class"]])
        assert entry["recall"]["value"] == pytest.approx(recall[entry["class"]])
    normalised = proba / proba.sum(axis=1, keepdims=True)  # rounding to 6 digits
    assert total["log_loss"]["value"] == pytest.approx(
        log_loss(truth, normalised, labels=[0, 1, 2]), rel=1e-5
    )
    losses = -np.log(proba[np.arange(150), truth])
    half = Z * losses.std(ddof=1) / math.sqrt(150)
    assert total["log_loss"]["low"] == pytest.approx(losses.mean() - half, rel=1e-6)
    hits = int((y_pred == truth).sum())
    assert total["accuracy"]["low"] == pytest.approx(wilson_by_root(hits, 150)[0])
    assert sum(p["n"] for p in report["versions"][0]["periods"]) == 150


def test_regression_figures_equal_scikit_learn(app, client, keys, diabetes):
    assert upload(client, keys.admin, "dia", diabetes.as_skops()).status_code == 201
    with app.app_context():
        user = db.session.get(User, keys.user_id)
        _, key = create_api_key(user, "labels", ["feedback", "predict"])
        db.session.commit()
    _, y = load_diabetes(return_X_y=True)
    answer = predict(
        client, key, diabetes.X[:100], "dia-1", "/api/v1/models/dia/predict"
    )
    flush(app)
    items = [
        {"request_id": "dia-1", "row": i, "value": float(y[i])} for i in range(100)
    ]
    assert send(client, key, {"feedback": items}, "dia").status_code == 200
    bad = send(client, key, {"request_id": "dia-1", "value": "high"}, "dia")
    assert (bad.status_code, bad.get_json()["error"]["field"]) == (422, "value")
    response = client.get(
        "/api/v1/models/dia/quality?window=hour", headers=auth(keys.admin)
    )
    assert response.status_code == 200
    total = response.get_json()["versions"][0]["total"]
    predicted = np.asarray(answer["predictions"])
    assert total["mae"]["value"] == pytest.approx(
        mean_absolute_error(y[:100], predicted)
    )
    assert total["rmse"]["value"] == pytest.approx(
        math.sqrt(mean_squared_error(y[:100], predicted))
    )
    errors = np.abs(predicted - y[:100])
    low, high = stats.norm.interval(0.95, loc=errors.mean(), scale=stats.sem(errors))
    assert (total["mae"]["low"], total["mae"]["high"]) == pytest.approx((low, high))
    assert (
        client.get("/api/v1/models/dia/quality", headers=auth(key)).status_code == 403
    )
    wrong = client.get(
        "/api/v1/models/dia/quality?window=week", headers=auth(keys.admin)
    )
    assert wrong.get_json()["error"]["field"] == "window"


# --- intervals against independent formulas


def wilson_by_root(successes: int, n: int) -> tuple[float, float]:
    """The Wilson interval as the two roots of the score test |p̂ - p| = z·se(p)."""
    p_hat = successes / n

    def score(p):
        return (p_hat - p) ** 2 - Z**2 * p * (1 - p) / n

    low = 0.0 if successes == 0 else optimize.brentq(score, 1e-12, p_hat - 1e-12)
    high = 1.0 if successes == n else optimize.brentq(score, p_hat + 1e-12, 1 - 1e-12)
    return low, high


@pytest.mark.parametrize(("x", "n"), [(81, 263), (0, 10), (10, 10), (7, 40), (1, 2)])
def test_wilson_is_the_inverted_score_test(x, n):
    result = intervals.wilson(x, n)
    assert (result["low"], result["high"]) == pytest.approx(
        wilson_by_root(x, n), abs=1e-9
    )
    assert result["n"] == n


def test_newcombe_matches_the_published_example_and_its_formula():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 − 48/80.
    first, second = intervals.wilson(56, 70), intervals.wilson(48, 80)
    result = intervals.newcombe(first, second)
    assert result["value"] == pytest.approx(0.2)
    assert (result["low"], result["high"]) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    l1, u1 = wilson_by_root(56, 70)
    l2, u2 = wilson_by_root(48, 80)
    p1, p2 = 56 / 70, 48 / 80
    assert result["low"] == pytest.approx(
        p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    )
    assert result["high"] == pytest.approx(
        p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    )


def test_mean_intervals_are_normal_approximations():
    values = np.random.default_rng(0).exponential(size=57)
    result = intervals.mean(values.tolist())
    low, high = stats.norm.interval(0.95, loc=values.mean(), scale=stats.sem(values))
    assert (result["low"], result["high"]) == pytest.approx((low, high))
    other = np.random.default_rng(1).exponential(size=31) * 2
    diff = intervals.difference_of_means(values.tolist(), other.tolist())
    se = math.sqrt(values.var(ddof=1) / 57 + other.var(ddof=1) / 31)
    centre = values.mean() - other.mean()
    assert (diff["low"], diff["high"]) == pytest.approx(
        (centre - Z * se, centre + Z * se)
    )
    rmse = intervals.root_mean((values**2).tolist())
    inner = stats.norm.interval(
        0.95, loc=(values**2).mean(), scale=stats.sem(values**2)
    )
    assert rmse["high"] == pytest.approx(math.sqrt(inner[1]))


# --- the canary verdict, the gauges and the admin page


@pytest.fixture(scope="session")
def iris_bad() -> Trained:
    """A deliberately worse iris model: trained on shuffled labels."""
    X, y = load_iris(return_X_y=True)
    shuffled = np.random.default_rng(3).permutation(y)
    return Trained(LogisticRegression(max_iter=500).fit(X, shuffled), X)


@pytest.fixture
def canary_session(app, client, keys, iris, iris_bad, feedback_key):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    assert upload(client, keys.admin, "iris", iris_bad.as_skops()).status_code == 201
    response = client.put(
        "/api/v1/models/iris/canary",
        headers=auth(keys.admin),
        json={"version": 2, "weight": 20, "reason": "try the new one"},
    )
    assert response.status_code == 200, response.get_json()
    _, y = load_iris(return_X_y=True)
    items = []
    for number in (1, 2):
        request_id = f"v{number}"
        predict(
            client,
            keys.predict,
            iris.X,
            request_id,
            f"/api/v1/models/iris/versions/{number}/predict",
        )
        items += [
            {"request_id": request_id, "row": i, "label": int(y[i])} for i in range(150)
        ]
    flush(app)
    assert send(client, feedback_key, {"feedback": items}).status_code == 200


def test_a_worse_canary_is_called_worse(app, client, keys, canary_session):
    response = client.get("/api/v1/models/iris/quality", headers=auth(keys.admin))
    report = response.get_json()
    canary = report["canary"]
    assert (canary["stable_version"], canary["canary_version"]) == (1, 2)
    assert (canary["n_stable"], canary["n_canary"]) == (150, 150)
    assert canary["verdict"] == "worse"
    difference = canary["difference"]
    assert difference["value"] == pytest.approx(
        canary["canary"]["value"] - canary["stable"]["value"]
    )
    assert difference["low"] < difference["value"] < difference["high"] < 0
    by_version = {v["version"]: v for v in report["versions"]}
    assert by_version[1]["alias"] == "stable" and by_version[2]["alias"] == "canary"


@pytest.mark.config(MODELDOCK_METRICS_ALLOW=["127.0.0.1/32"])
def test_gauges_follow_the_feedback(app, client, canary_session):
    text = client.get("/metrics").get_data(as_text=True)
    with app.app_context():
        compared = quality.report("iris")["canary"]
        accuracy = quality.report("iris")["versions"]
    stable = next(v for v in accuracy if v["version"] == 1)["total"]["accuracy"]
    line = 'modeldock_live_accuracy{model="iris",version="1",window="day"}'
    assert line in text
    value = float(text.split(line, 1)[1].split()[0])
    assert value == pytest.approx(stable["value"])
    delta = float(
        text.split('modeldock_canary_accuracy_delta{model="iris"}', 1)[1].split()[0]
    )
    assert delta == pytest.approx(compared["difference"]["value"])
    assert (
        'modeldock_live_feedback_rows{model="iris",version="2",window="hour"} 150.0'
        in text
    )
    # what the alert rules of deploy/prometheus/ read besides the delta
    assert compared["verdict"] == "worse"
    assert 'modeldock_canary_verdict{model="iris"} -1.0' in text
    for side in ("canary", "stable"):
        line = f'modeldock_canary_feedback_rows{{model="iris",side="{side}"}} 150.0'
        assert line in text


def test_admin_page_shows_quality_and_takes_a_csv(
    app, client, keys, canary_session, iris, tmp_path
):
    token = sign_in(client, "root", "correct horse battery")
    page = client.get("/admin/models/iris")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="quality"' in html and 'id="quality-classes"' in html
    assert 'id="canary-verdict"' in html and "No, worse" in html
    daily = client.get("/admin/models/iris?window=day").get_data(as_text=True)
    assert "per hour" in daily
    # A CSV of feedback for a new prediction, uploaded on the page.
    answer = predict(client, keys.predict, iris.X[:3], "csv-1")
    flush(app)
    csv = "request_id,row,label\n" + "".join(
        f"csv-1,{i},{label}\n" for i, label in enumerate(answer["predictions"])
    )
    response = client.post(
        "/admin/models/iris/feedback",
        data={"csrf_token": token, "file": (io.BytesIO(csv.encode()), "fb.csv")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "Feedback for 3 row(s) accepted" in response.get_data(as_text=True)
    bad = client.post(
        "/admin/models/iris/feedback",
        data={
            "csrf_token": token,
            "file": (io.BytesIO(b"request_id,label\nnope,0\n"), "x.csv"),
        },
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "unknown_request" in bad.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count(Feedback.id))) == 303
