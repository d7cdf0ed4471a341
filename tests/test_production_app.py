"""Production behaviour inside one app: metrics, prediction cache, request-log privacy
and retention, per-key limits, trusted hosts, JSON logs (real SQLite and Redis)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import uuid
from datetime import timedelta

import pytest
import redis
from flask import g
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from app.extensions import db
from app.models import RequestLog
from app.models._time import utcnow
from app.observability.jsonlog import JSONFormatter
from tests.conftest import auth, build_app, database, make_keys, running_app, upload

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def served(tmp_path_factory, iris):
    """One SQLite app with iris uploaded; rate limits on, generous by default."""
    with database("sqlite", tmp_path_factory.mktemp("prod")) as (url, options):
        app = build_app(
            url,
            options,
            RATELIMIT_ENABLED=True,
            MODELDOCK_RATELIMIT_DEFAULT="1000 per minute",
            MODELDOCK_METRICS_TOKEN="scrape-token",
            MODELDOCK_TRUSTED_HOSTS=["modeldock.test", "localhost"],
            MODELDOCK_REDIS_PREFIX=f"t-{uuid.uuid4().hex[:8]}:",
        )
        keys = make_keys(app)
        client = app.test_client()
        assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
        yield app, client, keys, url, options
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def predict(client, key, rows, **headers):
    return client.post(
        "/api/v1/models/iris/predict",
        headers={**auth(key), **headers},
        json={"instances": rows},
    )


def test_metrics_need_the_token_or_an_allowed_network(served):
    app, client, keys, *_ = served
    with client.get("/metrics") as response:  # loopback is not trusted by default
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"
    with client.get("/metrics", headers={"Authorization": "Bearer wrong"}) as response:
        assert response.status_code == 403
    # An API key is not the metrics token either.
    with client.get("/metrics", headers=auth(keys.admin)) as response:
        assert response.status_code == 403
    with client.get("/metrics", headers={"Authorization": "Bearer scrape-token"}) as r:
        assert r.status_code == 200 and r.mimetype == "text/plain"
        assert b"modeldock_requests_total" in r.data
    app.config["MODELDOCK_METRICS_ALLOW"] = ["10.1.0.0/16"]
    try:
        inside = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
        outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.2.0.1"})
        assert (inside.status_code, outside.status_code) == (200, 403)
    finally:
        app.config["MODELDOCK_METRICS_ALLOW"] = []


def test_metrics_count_requests_classes_and_cache(served, iris):
    _, client, keys, *_ = served
    rows = iris.X[[10, 11, 140]].tolist()  # not predicted elsewhere in this module
    before = {
        "ok": metric(
            "modeldock_requests_total", model="iris", version="1", status="200"
        ),
        "bad": metric(
            "modeldock_requests_total", model="iris", version="1", status="400"
        ),
        "class0": metric("modeldock_predictions_total", model="iris", **{"class": "0"}),
        "class2": metric("modeldock_predictions_total", model="iris", **{"class": "2"}),
        "hits": metric("modeldock_prediction_cache_hits_total"),
        "misses": metric("modeldock_prediction_cache_misses_total"),
        "latency": metric("modeldock_request_duration_seconds_count", model="iris"),
    }
    first = predict(client, keys.predict, rows)
    second = predict(client, keys.predict, rows)
    assert (
        first.get_json()["predictions"] == second.get_json()["predictions"] == [0, 0, 2]
    )
    assert second.get_json()["probabilities"] == first.get_json()["probabilities"]
    assert predict(client, keys.predict, [[1.0]]).status_code == 400
    assert (
        metric("modeldock_requests_total", model="iris", version="1", status="200")
        - before["ok"]
        == 2
    )
    assert (
        metric("modeldock_requests_total", model="iris", version="1", status="400")
        - before["bad"]
        == 1
    )
    assert (
        metric("modeldock_predictions_total", model="iris", **{"class": "0"})
        - before["class0"]
        == 4
    )
    assert (
        metric("modeldock_predictions_total", model="iris", **{"class": "2"})
        - before["class2"]
        == 2
    )
    assert metric("modeldock_prediction_cache_misses_total") - before["misses"] == 1
    assert metric("modeldock_prediction_cache_hits_total") - before["hits"] == 1
    assert (
        metric("modeldock_request_duration_seconds_count", model="iris")
        - before["latency"]
        == 3
    )
    # iris is served by its verified ONNX graph: its load is counted under "onnx".
    assert metric("modeldock_model_load_seconds_count", format="onnx") >= 1


def test_prediction_cache_in_redis_holds_json_and_never_unpickles(
    served, iris, tmp_path
):
    """A second app on the same database and Redis stands for another worker."""
    app, _, keys, url, options = served
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    store = redis.Redis.from_url(REDIS_URL)
    try:
        first = build_app(
            url, options, REDIS_URL=REDIS_URL, MODELDOCK_REDIS_PREFIX=prefix
        ).test_client()
        rows = iris.X[[20, 120]].tolist()
        expected = predict(first, keys.predict, rows).get_json()
        cached = list(store.scan_iter(f"{prefix}pred:*"))
        assert len(cached) == 1
        assert json.loads(store.get(cached[0]))["labels"] == expected["predictions"]

        second = build_app(
            url, options, REDIS_URL=REDIS_URL, MODELDOCK_REDIS_PREFIX=prefix
        ).test_client()
        hits = metric("modeldock_prediction_cache_hits_total")
        assert (
            predict(second, keys.predict, rows).get_json()["probabilities"]
            == expected["probabilities"]
        )
        assert metric("modeldock_prediction_cache_hits_total") - hits == 1

        # Whoever can write to Redis plants a pickle that would run code: it is
        # read as a (broken) JSON value, i.e. a miss, and the model answers.
        marker = tmp_path / "pwned"

        class Exploit:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        store.set(cached[0], pickle.dumps(Exploit()))
        answer = predict(second, keys.predict, rows)
        assert answer.status_code == 200
        assert answer.get_json()["predictions"] == expected["predictions"]
        assert not marker.exists()
        assert json.loads(store.get(cached[0]))["labels"] == expected["predictions"]
    finally:
        for key in store.scan_iter(f"{prefix}*"):
            store.delete(key)
        store.close()


def test_flask_caching_redis_backend_stores_json_not_pickles(served):
    app, _, _, url, options = served
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    other = build_app(url, options, REDIS_URL=REDIS_URL, MODELDOCK_REDIS_PREFIX=prefix)
    store = redis.Redis.from_url(REDIS_URL)
    try:
        from app.extensions import cache

        with other.app_context():
            cache.set("probe", {"answer": 42})
        raw = store.get(f"{prefix}cache:probe")
        assert raw is not None and not raw.startswith(b"\x80")  # no pickle opcode
        assert json.loads(raw) == {"answer": 42}
    finally:
        store.delete(f"{prefix}cache:probe")
        store.close()


def _logged(app) -> list[RequestLog]:
    app.extensions["modeldock.request_log"].flush()
    with app.app_context():
        rows = db.session.scalars(select(RequestLog).order_by(RequestLog.id)).all()
        db.session.expunge_all()
        return rows


def test_payloads_are_not_stored_unless_enabled_then_redacted(served):
    app, client, keys, *_ = served
    predict(client, keys.predict, ROWS, **{"X-Request-ID": "plain-1"})
    app.config.update(
        MODELDOCK_LOG_PAYLOADS=True, MODELDOCK_LOG_REDACT_FIELDS=["x1", "patient"]
    )
    try:
        predict(client, keys.predict, ROWS, **{"X-Request-ID": "rows-1"})
        client.post(
            "/api/v1/models/iris/predict",
            headers={**auth(keys.predict), "X-Request-ID": "named-1"},
            json={
                "instances": [{"x0": 1, "x1": 2, "x2": 3, "x3": 4}],
                "patient": "Ann",
            },
            environ_base={"REMOTE_ADDR": "203.0.113.77"},
        )
    finally:
        app.config.update(MODELDOCK_LOG_PAYLOADS=False, MODELDOCK_LOG_REDACT_FIELDS=[])
    logs = {row.request_id: row for row in _logged(app)}
    assert logs["plain-1"].payload is None
    assert logs["plain-1"].remote_addr == "127.0.0.0"  # never the full address
    assert logs["rows-1"].payload == {
        "instances": [[5.1, "[redacted]", 1.4, 0.2], [6.2, "[redacted]", 5.4, 2.3]]
    }
    named_row = logs["named-1"]
    assert named_row.payload == {
        "instances": [{"x0": 1, "x1": "[redacted]", "x2": 3, "x3": 4}],
        "patient": "[redacted]",
    }
    assert named_row.remote_addr == "203.0.113.0"


def test_logs_prune_deletes_only_old_rows(served):
    app, client, keys, *_ = served
    predict(client, keys.predict, ROWS, **{"X-Request-ID": "old-1"})
    predict(client, keys.predict, ROWS, **{"X-Request-ID": "new-1"})
    _logged(app)
    with app.app_context():
        db.session.execute(
            update(RequestLog)
            .where(RequestLog.request_id == "old-1")
            .values(created_at=utcnow() - timedelta(days=40))
        )
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["logs", "prune", "--days", "30"])
    assert result.exit_code == 0, result.output
    assert "deleted 1 request log rows" in result.output
    remaining = {row.request_id for row in _logged(app)}
    assert "new-1" in remaining and "old-1" not in remaining


@pytest.fixture
def limited(tmp_path):
    """A fresh app with rate limits on (flask-limiter keeps one storage per process,
    so the app under test must be the last one built)."""
    with running_app(
        "sqlite",
        tmp_path,
        RATELIMIT_ENABLED=True,
        MODELDOCK_RATELIMIT_DEFAULT="1000 per minute",
    ) as app:
        yield app, app.test_client(), make_keys(app)


def test_per_key_rate_limit_from_the_cli(limited):
    app, client, keys = limited
    runner = app.test_cli_runner()
    created = runner.invoke(
        args=["keys", "create", "alice", "--rate-limit", "2 per minute"]
    )
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]

    def call(api_key):
        return client.get("/api/v1/models", headers=auth(api_key))

    assert [call(key).status_code for _ in range(3)] == [200, 200, 429]
    refused = call(key)
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["X-RateLimit-Limit"] == "2"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    # Other keys keep the default, and a 200 carries no Retry-After.
    ok = call(keys.predict)
    assert ok.headers["X-RateLimit-Limit"] == "1000" and "Retry-After" not in ok.headers
    prefix = key[:12]
    raised = runner.invoke(args=["keys", "set-limit", prefix, "50 per minute"])
    assert raised.exit_code == 0, raised.output
    assert call(key).headers["X-RateLimit-Limit"] == "50"
    bad = runner.invoke(args=["keys", "set-limit", prefix, "lots"])
    assert bad.exit_code != 0 and "not a rate limit" in bad.output


def test_cors_preflight_is_not_rate_limited(limited):
    _, client, _ = limited
    response = client.options(
        "/api/v1/models",
        headers={
            "Origin": "https://elsewhere.example",
            "Access-Control-Request-Method": "GET",
        },
    )
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response.headers
    counted = client.get("/api/v1/models")  # an anonymous GET is counted (then 401)
    assert counted.headers["X-RateLimit-Limit"] == "1000"


def test_unknown_host_is_refused_by_the_app(served):
    _, client, *_ = served
    assert client.get("/healthz", headers={"Host": "modeldock.test"}).status_code == 200
    refused = client.get("/healthz", headers={"Host": "evil.example"})
    assert refused.status_code == 400
    assert "not trusted" in refused.get_json()["error"]["message"]


def test_json_log_lines_carry_the_request_id(served):
    app, *_ = served
    record = logging.LogRecord(
        "app.test", logging.WARNING, __file__, 1, "model %s slow", ("iris",), None
    )
    record.rows = 3
    with app.test_request_context("/"):
        g.request_id = "req-42"
        line = json.loads(JSONFormatter().format(record))
    assert line["message"] == "model iris slow" and line["level"] == "WARNING"
    assert line["request_id"] == "req-42" and line["rows"] == 3
    outside = json.loads(JSONFormatter().format(record))
    assert "request_id" not in outside
