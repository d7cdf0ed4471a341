"""Admin pages through the Flask test client: the guard, CSRF, people and the audit."""

from __future__ import annotations

import io
import re

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, User
from tests.conftest import auth, concrete_rule, sign_in

ALICE = ("alice", "alice password 1")
ROOT = ("root", "correct horse battery")


def admin_rules(app):
    return sorted(
        {
            (r.rule, m)
            for r in app.url_map.iter_rules()
            if r.rule.startswith("/admin")
            for m in r.methods
            if m in {"GET", "POST"}
        }
    )


def test_users_get_403_on_every_admin_page_and_visitors_go_to_login(app, keys):
    rules = admin_rules(app)
    assert len(rules) >= 20
    visitor = app.test_client()
    user = app.test_client()
    token = sign_in(user, *ALICE)
    for rule, method in rules:
        url = concrete_rule(rule)
        with visitor.open(url, method=method) as response:
            if method == "GET":
                assert response.status_code == 302, (rule, method)
                assert "/auth/login?next=" in response.headers["Location"]
            else:  # a post without a session has no valid CSRF token either
                assert response.status_code in {302, 403}, (rule, method)
        # With a valid token, so that it is the admin guard that refuses.
        data = {"csrf_token": token} if method == "POST" else None
        with user.open(url, method=method, data=data) as response:
            assert response.status_code == 403, (rule, method)
            assert "This page is for administrators." in response.text


def test_admin_post_without_csrf_token_is_refused(app, keys):
    client = app.test_client()
    sign_in(client, *ROOT)
    form = {"username": "mallory", "password": "long enough pw", "role": "admin"}
    with client.post("/admin/users", data=form) as refused:
        assert refused.status_code == 403
        assert "The form was refused" in refused.text
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "mallory")) is None


def test_user_and_key_actions_take_effect_and_are_audited(app, keys):
    admin = app.test_client()
    token = sign_in(admin, *ROOT)
    alice = app.test_client()
    sign_in(alice, *ALICE)
    with admin.post(
        "/admin/users",
        data={
            "csrf_token": token,
            "username": "bob",
            "password": "short",
            "role": "user",
        },
    ) as bad:
        assert bad.status_code == 400
        assert "password must have 8 characters or more" in bad.text
    with admin.post(
        "/admin/users",
        data={
            "csrf_token": token,
            "username": "bob",
            "password": "bob password",
            "role": "user",
        },
    ):
        pass
    with app.app_context():
        bob = db.session.scalar(select(User).where(User.username == "bob"))
        assert bob.role == "user"
    with admin.post(
        f"/admin/users/{bob.id}/role", data={"csrf_token": token, "role": "admin"}
    ):
        pass
    with admin.get(f"/admin/users/{keys.user_id}/disable") as confirm:
        assert "Disable &#39;alice&#39;?" in confirm.text  # a confirmation step first
    assert (
        app.test_client().get("/api/v1/models", headers=auth(keys.predict)).status_code
        == 200
    )
    with admin.post(
        f"/admin/users/{keys.user_id}/disable", data={"csrf_token": token}
    ) as done:
        assert done.status_code == 302
    # Her key stops in every worker (change counter) and her session ends.
    assert (
        app.test_client().get("/api/v1/models", headers=auth(keys.predict)).status_code
        == 401
    )
    with alice.get("/account") as signed_out:
        assert signed_out.status_code == 302 and "/auth/login" in signed_out.location
    with admin.post(
        f"/admin/users/{keys.admin_user_id}/disable",
        data={"csrf_token": token},
        follow_redirects=True,
    ) as own:
        assert "you cannot disable your own account" in own.text
    with app.app_context():
        admin_key = db.session.get(User, keys.admin_user_id).api_keys[0]
    with admin.post(f"/admin/keys/{admin_key.id}/revoke", data={"csrf_token": token}):
        pass
    assert (
        app.test_client().get("/api/v1/models", headers=auth(keys.admin)).status_code
        == 401
    )
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert [(e.action, e.target) for e in events] == [
            ("user.create", "user:bob"),
            ("user.role", "user:bob"),
            ("user.disable", "user:alice"),
            ("key.revoke", f"key:{admin_key.prefix}"),
        ]
        assert {e.actor for e in events} == {"root"}
        assert {e.remote_addr for e in events} == {"127.0.0.1"}
    with admin.get("/admin/audit?action=user.") as page:
        assert page.text.count("<td>root</td>") == 3


def test_model_upload_errors_are_shown_next_to_the_field(app, keys):
    client = app.test_client()
    token = sign_in(client, *ROOT)
    with client.post(
        "/admin/upload",
        data={
            "csrf_token": token,
            "name": "iris",
            "metrics": "[1, 2]",
            "file": (io.BytesIO(b"x"), "model.pkl"),
        },
    ) as bad_metrics:
        assert bad_metrics.status_code == 400
        assert re.search(
            r'id="metrics-error" class="error">Metrics must be a JSON', bad_metrics.text
        )
    with client.post(
        "/admin/upload",
        data={
            "csrf_token": token,
            "name": "Not A Name",
            "file": (io.BytesIO(b"x"), "model.pkl"),
        },
    ) as bad_name:
        assert bad_name.status_code == 400
        assert 'id="name-error"' in bad_name.text
    with client.post(
        "/admin/upload",
        data={
            "csrf_token": token,
            "name": "iris",
            "file": (io.BytesIO(b"x"), "model.txt"),
        },
    ) as bad_type:
        assert bad_type.status_code == 422
        assert re.search(
            r'id="file-error" class="error">unsupported file type', bad_type.text
        )
    with client.get("/admin/models") as page:
        assert "No models yet." in page.text


def test_unknown_models_are_404_pages(app, keys):
    client = app.test_client()
    sign_in(client, *ROOT)
    for path in (
        "/admin/models/nope",
        "/admin/models/nope/rollback",
        "/admin/models/nope/versions/1/activate",
    ):
        with client.get(path) as page:
            assert page.status_code == 404 and "no model named" in page.text, path
