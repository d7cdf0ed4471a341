"""Versions: numbering, activation, rollback, archive, atomic storage, worker cache."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from sqlalchemy import event, select, update

from app.extensions import db
from app.models import Activation, AuditEvent, ModelArtifact, ModelVersion, RequestLog
from tests.conftest import auth, upload


def flip(data: bytes, at: int = 100) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def predict(client, key, rows, path="/api/v1/models/iris/predict"):
    return client.post(
        path,
        data=json.dumps({"instances": rows}),
        headers=auth(key),
        content_type="application/json",
    )


def test_versions_activation_rollback_and_archive(app, client, keys, iris, iris_v2):
    first = upload(
        client,
        keys.admin,
        "iris",
        iris.as_skops(),
        notes="baseline",
        metrics=json.dumps({"accuracy": 0.97}),
    )
    assert first.status_code == 201
    assert first.get_json()["status"] == "active"  # a model's first version serves
    assert first.get_json()["metrics"] == {"accuracy": 0.97}
    second = upload(client, keys.admin, "iris", iris_v2.as_joblib(), "v2.joblib")
    assert second.get_json()["version"] == 2 and second.get_json()["status"] == "ready"

    rows = iris.X[45:55].tolist()
    v1 = iris.estimator.predict(np.array(rows)).tolist()
    v2_proba = iris_v2.estimator.predict_proba(np.array(rows))
    assert predict(client, keys.predict, rows).get_json()["predictions"] == v1

    activated = client.post(
        "/api/v1/models/iris/versions/2/activate",
        json={"reason": "better calibrated"},
        headers=auth(keys.admin),
    )
    assert activated.status_code == 200 and activated.get_json()["active_version"] == 2
    body = predict(client, keys.predict, rows).get_json()
    assert body["version"] == 2
    np.testing.assert_allclose(body["probabilities"], v2_proba)

    refused = client.post(
        "/api/v1/models/iris/versions/2/archive", headers=auth(keys.admin)
    )
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "version_in_use"

    back = client.post("/api/v1/models/iris/rollback", headers=auth(keys.admin))
    assert back.get_json()["active_version"] == 1
    assert predict(client, keys.predict, rows).get_json()["version"] == 1

    archived = client.post(
        "/api/v1/models/iris/versions/2/archive", headers=auth(keys.admin)
    )
    assert archived.get_json()["status"] == "archived"
    pinned = predict(
        client, keys.predict, rows, "/api/v1/models/iris/versions/2/predict"
    )
    assert pinned.status_code == 409
    cannot = client.post(
        "/api/v1/models/iris/versions/2/activate", headers=auth(keys.admin)
    )
    assert cannot.status_code == 409

    with app.app_context():
        history = db.session.scalars(select(Activation).order_by(Activation.id)).all()
        assert [(a.from_version_id, a.to_version_id) for a in history] == [
            (None, 1),
            (1, 2),
            (2, 1),
        ]
        assert history[1].reason == "better calibrated"
        assert history[1].actor == "root (key #1)"
        actions = db.session.scalars(
            select(AuditEvent.action).order_by(AuditEvent.id)
        ).all()
        assert actions == [
            "version.upload",
            "alias.stable",
            "version.upload",
            "alias.stable",
            "alias.stable",
            "version.archive",
        ]


def test_artifact_is_stored_with_its_version_and_verified_on_load(
    app, client, keys, iris
):
    data = iris.as_skops()
    upload(client, keys.admin, "iris", data)
    with app.app_context():
        version = db.session.scalar(select(ModelVersion))
        stored = db.session.scalar(select(ModelArtifact.data))
        assert stored == data and version.sha256 == hashlib.sha256(data).hexdigest()
        assert version.size_bytes == len(data)
        # Tamper with the stored bytes (the artifact and the ONNX graph converted
        # from it, which is what serves): a worker must refuse to load them.
        graph = db.session.scalar(select(ModelArtifact.onnx))
        assert graph is not None and version.runtime_verdict == "verified"
        db.session.execute(
            update(ModelArtifact).values(data=flip(data), onnx=flip(graph))
        )
        db.session.commit()
    app.extensions["modeldock"].models.clear()  # as in a freshly started worker
    response = predict(client, keys.predict, iris.X[:1].tolist())
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "artifact_corrupt"


def test_failed_validation_stores_nothing(app, client, keys):
    response = upload(client, keys.admin, "iris", b"not a model", "x.pkl")
    assert response.status_code == 422
    with app.app_context():
        assert db.session.scalars(select(ModelVersion)).all() == []
        assert db.session.scalars(select(AuditEvent)).all() == []


def test_unfitted_model_is_refused_with_a_reason(client, keys):
    import skops.io
    from sklearn.linear_model import LogisticRegression

    response = upload(client, keys.admin, "raw", skops.io.dumps(LogisticRegression()))
    assert response.status_code == 422
    assert "not fitted" in response.get_json()["error"]["message"]


def test_invalid_model_name(client, keys, iris):
    response = upload(client, keys.admin, "Bad Name!", iris.as_skops())
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "name"


@pytest.mark.config(MODELDOCK_ROUTING_REFRESH_SECONDS=3600)
def test_steady_state_prediction_runs_no_sql(app, client, keys, iris):
    """Once warm, a prediction reads neither the artifact nor anything else."""
    upload(client, keys.admin, "iris", iris.as_skops())
    rows = iris.X[:3].tolist()
    assert predict(client, keys.predict, rows).status_code == 200  # warm up
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def listener(*args):
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", listener)
    try:
        for _ in range(5):
            assert predict(client, keys.predict, rows).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert statements == []


def test_request_logs_are_written_in_batches_and_count_key_use(app, client, keys, iris):
    upload(client, keys.admin, "iris", iris.as_skops())
    predict(client, keys.predict, iris.X[:3].tolist())
    predict(client, keys.predict, [[1, 2]])
    with app.app_context():
        assert db.session.scalars(select(RequestLog)).all() == []  # not on the path
    written = app.extensions["modeldock.request_log"].flush()
    assert written == 2
    with app.app_context():
        logs = db.session.scalars(select(RequestLog).order_by(RequestLog.id)).all()
        assert [(log.status_code, log.rows, log.error_code) for log in logs] == [
            (200, 3, None),
            (400, 0, "wrong_feature_count"),
        ]
        assert all(log.model_name == "iris" and log.version == 1 for log in logs)
        from app.models import ApiKey

        key = db.session.get(ApiKey, logs[0].api_key_id)
        assert key.use_count == 2 and key.last_used_at is not None
