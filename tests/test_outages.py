"""PostgreSQL or Redis going away: clear 503s where the app cannot serve, predictions
from what a worker already holds, and recovery without a restart."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
from sqlalchemy import select

from app.auth.credentials import create_api_key
from app.extensions import db
from app.models import RequestLog, User
from app.observability.request_log import DatabaseAway
from tests.conftest import auth, build_app, database, make_keys, upload
from tests.tcp_proxy import TCPProxy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def postgres_behind_a_switch(tmp_path):
    """A fresh PostgreSQL schema reached through a proxy the test can cut."""
    proxy = TCPProxy(("127.0.0.1", 5432))
    proxy.start()
    try:
        with database("postgresql", tmp_path) as (url, options):
            assert ":5432/" in url
            yield url.replace(":5432/", f":{proxy.port}/"), options, proxy
    finally:
        proxy.stop()


def predict(client, key, rows):
    return client.post(
        "/api/v1/models/iris/predict", headers=auth(key), json={"instances": rows}
    )


def test_database_outage_keeps_loaded_models_serving_and_recovers(
    postgres_behind_a_switch, iris
):
    url, options, proxy = postgres_behind_a_switch
    app = build_app(url, options, MODELDOCK_ROUTING_REFRESH_SECONDS=0.2)
    try:
        keys = make_keys(app)
        with app.app_context():
            _, fresh = create_api_key(db.session.get(User, keys.user_id), "fresh")
            db.session.commit()
        client = app.test_client()
        assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
        assert predict(client, keys.predict, iris.X[:1].tolist()).status_code == 200

        proxy.stop()  # PostgreSQL is gone for this app
        time.sleep(0.3)  # past the routing refresh interval: it will try the database
        rows = iris.X[[50, 100]].tolist()  # new rows: the model predicts, not a cache
        during = predict(client, keys.predict, rows)
        assert during.status_code == 200, during.get_json()
        assert (
            during.get_json()["predictions"]
            == iris.estimator.predict(iris.X[[50, 100]]).tolist()
        )
        # A key this worker never verified needs the database.
        refused = client.get("/api/v1/models", headers=auth(fresh))
        assert refused.status_code == 503
        assert refused.get_json()["error"]["code"] == "database_unavailable"
        assert int(refused.headers["Retry-After"]) > 0
        with client.get("/readyz") as ready:
            assert ready.status_code == 503 and "Retry-After" in ready.headers
        writer = app.extensions["modeldock.request_log"]
        with pytest.raises(DatabaseAway):
            writer.flush()
        assert writer.depth() == 2  # both predictions stay queued, not lost

        proxy.start()  # back: no restart, the pool reconnects on its own
        assert client.get("/api/v1/models", headers=auth(fresh)).status_code == 200
        with client.get("/readyz") as ready:
            assert ready.status_code == 200
        assert writer.flush() == 2
        with app.app_context():
            statuses = db.session.scalars(select(RequestLog.status_code)).all()
            assert statuses == [200, 200]
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        # A connection the cut proxy broke while a background thread held it is
        # gone from the pool without being closed; collected here, not inside the
        # next test (where its ResourceWarning would fail that one).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def test_redis_outage_policy_refuse_answers_503(tmp_path):
    """`MODELDOCK_REDIS_OUTAGE=refuse`, in a process of its own (one limiter each)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()  # nothing listens there: Redis is "down"
    script = textwrap.dedent(f"""
        import json
        from app import create_app
        from app.auth.credentials import create_api_key, create_user
        from app.extensions import db

        outcome = {{}}
        for policy in ("refuse", "degrade"):
            app = create_app({{
                "SECRET_KEY": "x", "DATABASE_URL": "sqlite:///{tmp_path}/" + policy,
                "REDIS_URL": "redis://127.0.0.1:{dead_port}/0",
                "MODELDOCK_REDIS_OUTAGE": policy, "RATELIMIT_ENABLED": True}})
            with app.app_context():
                db.create_all()
                _, key = create_api_key(create_user("u", "password1"), "k", ["predict"])
                db.session.commit()
            response = app.test_client().get(
                "/api/v1/models", headers={{"X-API-Key": key}})
            outcome[policy] = [response.status_code, response.get_json(),
                               response.headers.get("Retry-After")]
        print(json.dumps(outcome))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        timeout=120,
        capture_output=True,
        text=True,
        env={**os.environ, "MODELDOCK_LOG_FORMAT": "text"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    status, body, retry_after = outcome["refuse"]
    assert status == 503 and body["error"]["code"] == "redis_unavailable"
    assert int(retry_after) > 0
    assert outcome["degrade"][0] == 200  # the default keeps serving
