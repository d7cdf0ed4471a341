"""Every route needs credentials unless it is on the public list; scopes are
enforced."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.auth.credentials import create_api_key, revoke_api_key
from app.extensions import db
from app.models import ApiKey, User
from app.models._time import utcnow
from tests.conftest import auth

# The explicit public list: health, login, static assets, API docs.
PUBLIC = {
    "/healthz",
    "/readyz",
    "/auth/login",
    "/static/<path:filename>",
    "/favicon.ico",
    "/api/openapi.json",
    "/api/docs",
}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def concrete(rule: str) -> str:
    """Fill a URL rule's variables with plausible values."""
    return re.sub(
        r"<(?:(\w+):)?(\w+)>", lambda m: "1" if m.group(1) == "int" else "demo", rule
    )


def rules(app):
    return sorted({r.rule for r in app.url_map.iter_rules()} - PUBLIC)


def test_every_route_refuses_anonymous_callers(app, client):
    assert len(rules(app)) >= 10
    for rule in rules(app):
        for method in METHODS:
            response = client.open(concrete(rule), method=method)
            if response.status_code == 302:  # browser pages send people to login
                assert "/auth/login" in response.headers["Location"], (rule, method)
                continue
            assert response.status_code in {401, 403, 404, 405}, (
                rule,
                method,
                response.status_code,
            )


PREDICT_SCOPE = {
    "/api/v1/models",
    "/api/v1/models/<name>",
    "/api/v1/models/<name>/versions/<int:number>",
    "/predict",
    "/api/v1/models/<name>/predict",
    "/api/v1/models/<name>/versions/<int:number>/predict",
}
# TensorFlow Serving, Open Inference and MLflow routes: all predict scope.
PROTOCOLS = ("/v1/", "/v2", "/mlflow/", "/invocations", "/ping", "/version")


def test_predict_only_key_reaches_nothing_beyond_prediction(app, client, keys):
    for rule in rules(app):
        for method in METHODS:
            response = client.open(
                concrete(rule), method=method, headers=auth(keys.predict)
            )
            status = response.status_code
            if (
                rule in PREDICT_SCOPE
                or rule.startswith(PROTOCOLS)
                or (rule == "/api/v1/models/<name>/versions" and method == "GET")
            ):
                assert status != 403, (rule, method)
            elif status == 302:  # a key never signs a browser in
                assert "/auth/login" in response.headers["Location"], (rule, method)
            else:
                assert status in {401, 403, 404, 405}, (rule, method, status)


def test_predict_key_cannot_reach_admin_routes(app, client, keys):
    admin_rules = [
        r
        for r in rules(app)
        if r.startswith("/api/")
        and (
            r.endswith(("/activate", "/archive", "/rollback"))
            or r.endswith("/versions")
        )
    ]
    assert admin_rules
    for rule in admin_rules:
        response = client.post(concrete(rule), headers=auth(keys.predict))
        assert response.status_code == 403, rule
        assert response.get_json()["error"]["code"] == "insufficient_scope"


def test_public_routes_answer_without_credentials(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/api/openapi.json").get_json()["openapi"] == "3.1.0"
    with client.get("/api/docs") as docs:
        assert docs.status_code == 200 and b"swagger-ui" in docs.data
    assert client.get("/readyz").get_json()["database"] == "ok"
    assert client.get("/auth/login").status_code == 200
    with client.get("/static/css/app.css") as static:
        assert static.status_code == 200 and b"font-family" in static.data


def test_unknown_revoked_and_expired_keys_are_refused(app, client, keys):
    assert client.get("/api/v1/models", headers=auth(keys.predict)).status_code == 200
    bad = client.get("/api/v1/models", headers=auth(keys.predict[:-2] + "xx"))
    assert bad.status_code == 401
    assert bad.get_json()["error"]["code"] == "invalid_api_key"
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "alice"))
        _, expired = create_api_key(
            user, "old", ["predict"], utcnow() - timedelta(seconds=1)
        )
        key = db.session.scalar(
            select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.name == "predict")
        )
        revoke_api_key(key)
        db.session.commit()
    assert client.get("/api/v1/models", headers=auth(keys.predict)).status_code == 401
    assert client.get("/api/v1/models", headers=auth(expired)).status_code == 401


def test_x_api_key_header_works_and_query_string_keys_are_refused(client, keys):
    assert (
        client.get("/api/v1/models", headers={"X-API-Key": keys.predict}).status_code
        == 200
    )
    response = client.get(f"/api/v1/models?api_key={keys.predict}")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "key_in_query_string"


def test_disabled_user_keys_stop_working(app, client, keys):
    with app.app_context():
        user = db.session.get(User, keys.user_id)
        user.enabled = False
        from app.registry import changes

        changes.bump()
        db.session.commit()
    assert client.get("/api/v1/models", headers=auth(keys.predict)).status_code == 401


def test_keys_are_stored_only_as_hashes(app, keys):
    with app.app_context():
        stored = db.session.scalars(select(ApiKey)).all()
    for key in stored:
        assert keys.predict not in (key.key_hash, key.prefix)
        assert keys.predict.startswith(key.prefix) or keys.admin.startswith(key.prefix)
        assert len(key.key_hash) == 64


def test_passwords_are_stored_hashed(app, keys):
    with app.app_context():
        user = db.session.get(User, keys.user_id)
        assert "alice password 1" not in user.password_hash
        assert user.check_password("alice password 1")


@pytest.mark.config(MODELDOCK_ALLOW_ANONYMOUS_PREDICT=True)
def test_anonymous_prediction_when_switched_on(client, keys, iris):
    from tests.conftest import upload

    upload(client, keys.admin, "demo", iris.as_skops())
    response = client.post(
        "/api/v1/models/demo/predict", json={"instances": iris.X[:2].tolist()}
    )
    assert response.status_code == 200
    # Reading models is part of predicting (clients fetch metadata); admin is not.
    assert client.get("/api/v1/models").status_code == 200
    assert client.post("/api/v1/models/demo/versions/1/archive").status_code == 401


def test_login_logout_and_csrf(app, client, keys):
    page = client.get("/auth/login")
    token = (
        re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data)
        .group(1)
        .decode()
    )
    refused = client.post(
        "/auth/login", data={"username": "alice", "password": "alice password 1"}
    )
    assert refused.status_code == 403 and b"CSRF" in refused.data
    wrong = client.post(
        "/auth/login",
        data={"username": "alice", "password": "nope", "csrf_token": token},
    )
    assert wrong.status_code == 401 and b"Wrong username or password" in wrong.data
    ok = client.post(
        "/auth/login",
        data={"username": "alice", "password": "alice password 1", "csrf_token": token},
    )
    assert ok.status_code == 302
    home = client.get("/")
    assert home.status_code == 200 and b"alice" in home.data
    cookie = client.get_cookie("session")
    assert cookie.http_only and cookie.same_site == "Lax"
    # The JSON API never reads or writes the browser's session: a signed-in
    # browser without an API key is refused, and API answers set no cookie.
    api = client.get("/api/v1/models")
    assert api.status_code == 401 and api.get_json()["error"]["code"] == "unauthorized"
    with_key = client.get("/api/v1/models", headers=auth(keys.predict))
    assert with_key.status_code == 200
    assert "Set-Cookie" not in with_key.headers
    assert "Cookie" not in with_key.headers.get("Vary", "")
    assert client.get_cookie("session").value == cookie.value  # still signed in
    assert b"alice" in client.get("/").data


@pytest.mark.config(RATELIMIT_ENABLED=True, MODELDOCK_RATELIMIT_LOGIN="3 per minute")
def test_failed_logins_are_throttled(client, keys):
    def attempt(password):
        page = client.get("/auth/login")
        token = (
            re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data)
            .group(1)
            .decode()
        )
        return client.post(
            "/auth/login",
            data={"username": "alice", "password": password, "csrf_token": token},
        )

    assert [attempt("wrong").status_code for _ in range(3)] == [401, 401, 401]
    throttled = attempt("alice password 1")  # even the right password waits now
    assert throttled.status_code == 429, throttled.data.decode()[-600:]
    assert b"429" in throttled.data


@pytest.mark.config(RATELIMIT_ENABLED=True, MODELDOCK_RATELIMIT_DEFAULT="3 per minute")
def test_api_rate_limit_answers_json_with_retry_after(client, keys):
    for _ in range(3):
        assert (
            client.get("/api/v1/models", headers=auth(keys.predict)).status_code == 200
        )
    response = client.get("/api/v1/models", headers=auth(keys.predict))
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0
    # Limits count per key: another key still has its own budget.
    assert client.get("/api/v1/models", headers=auth(keys.admin)).status_code == 200
