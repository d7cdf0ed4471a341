"""Canary and shadow versions, sticky routing, promotion, rollback, smoke tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import AuditEvent, ModelArtifact, ModelVersion
from tests.conftest import auth, upload

ROW = [[5.1, 3.5, 1.4, 0.2]]


@pytest.fixture
def two_versions(client, keys, iris, iris_v2):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    assert upload(client, keys.admin, "iris", iris_v2.as_skops()).status_code == 201


def predict(client, headers, rows=ROW, path="/api/v1/models/iris/predict"):
    return client.post(
        path,
        data=json.dumps({"instances": rows}),
        content_type="application/json",
        headers=headers,
    )


def set_canary(client, keys, version, weight, reason="try it"):
    return client.put(
        "/api/v1/models/iris/canary",
        headers=auth(keys.admin),
        json={"version": version, "weight": weight, "reason": reason},
    )


@pytest.mark.config(MODELDOCK_ALLOW_ANONYMOUS_PREDICT=True)
def test_canary_share_is_close_to_its_weight_and_sticky(client, keys, two_versions):
    assert set_canary(client, keys, 2, 30).status_code == 200
    sides = {}
    for i in range(600):
        response = predict(client, {"X-Client-Id": f"user-{i}"})
        assert response.status_code == 200
        sides[i] = response.get_json()["version"]
        assert response.headers["X-Model-Version"] == str(sides[i])
    share = sum(v == 2 for v in sides.values()) / len(sides)
    assert abs(share - 0.30) < 0.05, share
    for i in range(0, 600, 12):  # the same client lands on the same side every time
        assert (
            predict(client, {"X-Client-Id": f"user-{i}"}).get_json()["version"]
            == sides[i]
        )
    # Raising the weight only adds clients: nobody on the canary goes back.
    set_canary(client, keys, 2, 60)
    after = {
        i: predict(client, {"X-Client-Id": f"user-{i}"}).get_json()["version"]
        for i in range(0, 600, 6)
    }
    assert all(after[i] == 2 for i in after if sides[i] == 2)
    assert sum(v == 2 for v in after.values()) > sum(sides[i] == 2 for i in after)
    set_canary(client, keys, 2, 0)
    assert {
        predict(client, {"X-Client-Id": f"user-{i}"}).get_json()["version"]
        for i in range(0, 600, 20)
    } == {1}


def test_an_api_key_is_one_client_whatever_client_id_it_sends(
    client, keys, two_versions
):
    set_canary(client, keys, 2, 50)
    versions = {
        predict(client, {**auth(keys.predict), "X-Client-Id": f"c{i}"}).get_json()[
            "version"
        ]
        for i in range(40)
    }
    assert len(versions) == 1


def test_pinned_version_always_wins(client, keys, two_versions):
    set_canary(client, keys, 2, 100)
    assert predict(client, auth(keys.predict)).get_json()["version"] == 2
    pinned = predict(
        client, auth(keys.predict), path="/api/v1/models/iris/versions/1/predict"
    )
    assert pinned.get_json()["version"] == 1
    assert pinned.headers["X-Model-Version"] == "1"


def test_promote_and_roll_back_are_one_action_each(app, client, keys, two_versions):
    set_canary(client, keys, 2, 10, reason="new calibration")
    promoted = client.post(
        "/api/v1/models/iris/canary/promote",
        headers=auth(keys.admin),
        json={"reason": "looks good"},
    )
    assert promoted.status_code == 200
    assert promoted.get_json()["aliases"] == {"stable": {"version": 2, "weight": 100}}
    assert predict(client, auth(keys.predict)).get_json()["version"] == 2
    back = client.post(
        "/api/v1/models/iris/rollback",
        headers=auth(keys.admin),
        json={"reason": "errors went up"},
    )
    assert back.get_json()["active_version"] == 1
    assert predict(client, auth(keys.predict)).get_json()["version"] == 1
    history = client.get(
        "/api/v1/models/iris/history", headers=auth(keys.admin)
    ).get_json()["history"]
    assert [
        (h["alias"], h["from_version"], h["to_version"], h["reason"]) for h in history
    ] == [
        ("stable", 2, 1, "errors went up"),
        ("stable", 1, 2, "looks good"),
        ("canary", 2, None, "looks good"),
        ("canary", None, 2, "new calibration"),
        ("stable", None, 1, "first version"),
    ]
    assert all(h["actor"] == "root (key #1)" for h in history[:4])
    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.action)).all()
    assert {"alias.canary", "alias.canary.clear", "alias.stable"} <= set(actions)


def test_canary_validation(client, keys, two_versions):
    assert (
        set_canary(client, keys, 1, 10).get_json()["error"]["code"]
        == "canary_is_stable"
    )
    assert (
        set_canary(client, keys, 2, 101).get_json()["error"]["code"] == "invalid_weight"
    )
    assert set_canary(client, keys, 9, 10).status_code == 404


def test_a_shadow_of_the_stable_version_is_refused(client, keys, two_versions):
    response = client.put(
        "/api/v1/models/iris/shadow", headers=auth(keys.admin), json={"version": 1}
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "shadow_is_stable"
    assert client.get("/api/v1/models/iris", headers=auth(keys.admin)).get_json()[
        "aliases"
    ].keys() == {"stable"}
    assert (
        client.post(
            "/api/v1/models/iris/canary/promote", headers=auth(keys.admin)
        ).get_json()["error"]["code"]
        == "no_canary"
    )
    assert (
        client.put(
            "/api/v1/models/iris/canary",
            headers=auth(keys.predict),
            json={"version": 2, "weight": 5},
        ).status_code
        == 403
    )


def test_a_version_that_fails_its_smoke_test_cannot_be_activated(
    app, client, keys, two_versions
):
    with app.app_context():
        v2 = db.session.scalar(select(ModelVersion).where(ModelVersion.number == 2))
        sample = dict(v2.sample)
        sample["predictions"] = [9, 9, 9]  # what it answered at upload, supposedly
        v2.sample = sample
        db.session.commit()
    refused = client.post(
        "/api/v1/models/iris/versions/2/activate", headers=auth(keys.admin)
    )
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert error["code"] == "smoke_test_failed" and "reproduce" in error["message"]
    assert set_canary(client, keys, 2, 10).status_code == 409
    assert predict(client, auth(keys.predict)).get_json()["version"] == 1


def test_a_version_that_cannot_load_cannot_be_activated(
    app, client, keys, two_versions
):
    with app.app_context():
        v2 = db.session.scalar(select(ModelVersion).where(ModelVersion.number == 2))
        data, graph = db.session.execute(
            select(ModelArtifact.data, ModelArtifact.onnx).where(
                ModelArtifact.version_id == v2.id
            )
        ).one()
        # Both the artifact and the ONNX graph converted from it (what serves).
        db.session.execute(
            update(ModelArtifact)
            .where(ModelArtifact.version_id == v2.id)
            .values(
                data=data[:50] + b"xx" + data[52:], onnx=graph[:50] + b"xx" + graph[52:]
            )
        )
        db.session.commit()
    refused = client.post(
        "/api/v1/models/iris/versions/2/activate", headers=auth(keys.admin)
    )
    assert refused.status_code == 409
    assert "cannot be loaded" in refused.get_json()["error"]["message"]


def test_shadow_copies_stable_traffic_and_reports_agreement(
    app, client, keys, iris, iris_v2, two_versions
):
    assert (
        client.put(
            "/api/v1/models/iris/shadow", headers=auth(keys.admin), json={"version": 2}
        ).status_code
        == 200
    )
    rows = iris.X[::5].tolist()  # 30 rows
    for start in range(0, 30, 10):
        response = predict(client, auth(keys.predict), rows[start : start + 10])
        assert response.get_json()["version"] == 1
    # Pinned requests are not stable traffic: no copy.
    predict(client, auth(keys.predict), rows, "/api/v1/models/iris/versions/1/predict")
    assert app.extensions["modeldock"].shadow.drain() == 3
    report = client.get("/api/v1/models/iris/shadow", headers=auth(keys.admin))
    hours = report.get_json()["hours"]
    expected = float(
        np.mean(
            iris.estimator.predict(np.array(rows))
            == iris_v2.estimator.predict(np.array(rows))
        )
    )
    assert len(hours) == 1
    assert hours[0]["requests"] == 3 and hours[0]["rows"] == 30
    assert hours[0]["agreement_rate"] == pytest.approx(expected)
    assert (hours[0]["stable_version"], hours[0]["shadow_version"]) == (1, 2)


def test_shadow_regression_error_and_shadow_failures_never_reach_the_caller(
    app, client, keys, diabetes
):
    from sklearn.linear_model import Ridge

    other = Ridge(alpha=50.0).fit(diabetes.X, diabetes.estimator.predict(diabetes.X))
    import skops.io

    upload(client, keys.admin, "reg", diabetes.as_skops())
    upload(client, keys.admin, "reg", skops.io.dumps(other))
    client.put(
        "/api/v1/models/reg/shadow", headers=auth(keys.admin), json={"version": 2}
    )
    rows = diabetes.X[:20]
    body = predict(
        client, auth(keys.predict), rows.tolist(), "/api/v1/models/reg/predict"
    ).get_json()
    app.extensions["modeldock"].shadow.drain()
    hours = client.get(
        "/api/v1/models/reg/shadow", headers=auth(keys.admin)
    ).get_json()["hours"]
    diff = other.predict(rows) - diabetes.estimator.predict(rows)
    assert hours[0]["mae"] == pytest.approx(float(np.abs(diff).mean()))
    assert hours[0]["rmse"] == pytest.approx(float(np.sqrt((diff**2).mean())))
    # Break the shadow: the caller's answer does not change.
    app.extensions["modeldock"].models.clear()
    with app.app_context():
        db.session.execute(
            update(ModelArtifact)
            .where(ModelArtifact.version_id == 2)
            .values(data=b"broken", onnx=b"broken")
        )
        db.session.commit()
    again = predict(
        client, auth(keys.predict), rows.tolist(), "/api/v1/models/reg/predict"
    )
    assert (
        again.status_code == 200
        and again.get_json()["predictions"] == body["predictions"]
    )
    app.extensions["modeldock"].shadow.drain()
    from app.models import ShadowResult

    with app.app_context():
        failed = db.session.scalars(
            select(ShadowResult).where(ShadowResult.error.is_not(None))
        ).all()
    assert len(failed) == 1 and failed[0].error == "artifact_corrupt"
