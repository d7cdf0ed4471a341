"""Failed sign-ins are counted per account in the database: after a few in a row the
account waits (doubling), in every worker; its owner's own browser is not locked out."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.auth.credentials import FREE_LOGIN_FAILURES, LOGIN_BACKOFF_SECONDS
from app.extensions import db
from app.models import AuditEvent, User
from app.models._time import utcnow
from tests.conftest import BACKENDS, build_app, database


def attempt(client, password: str, username: str = "alice"):
    page = client.get("/auth/login")
    token = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', page.text
    ).group(1)
    return client.post(
        "/auth/login",
        data={"username": username, "password": password, "csrf_token": token},
    )


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def account(app, username: str = "alice") -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        db.session.expunge(user)
        return user


def test_account_waits_after_repeated_failures_then_success_resets(app, keys):
    client = from_address(app, "192.0.2.1")
    for _ in range(FREE_LOGIN_FAILURES - 1):
        assert attempt(client, "wrong").status_code == 401
    assert account(app).login_locked_until is None
    assert attempt(client, "wrong").status_code == 401  # the one that starts the wait
    assert account(app).failed_logins == FREE_LOGIN_FAILURES

    refused = attempt(client, "alice password 1")  # even the right password waits
    assert refused.status_code == 429
    assert "Too many failed sign-ins for this account" in refused.text
    assert 0 < int(refused.headers["Retry-After"]) <= LOGIN_BACKOFF_SECONDS
    # An account nobody guesses at is not affected.
    assert attempt(client, "alice password 1", "bob").status_code == 401
    with app.app_context():
        [event] = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.login_backoff")
        ).all()
        assert event.target == "user:alice" and event.remote_addr == "192.0.2.1"
        assert event.details == {
            "failed_sign_ins": FREE_LOGIN_FAILURES,
            "wait_seconds": LOGIN_BACKOFF_SECONDS,
        }

    # Once the wait is over, the next failure waits twice as long ...
    expire(app)
    assert attempt(client, "wrong").status_code == 401
    assert int(attempt(client, "wrong").headers["Retry-After"]) > LOGIN_BACKOFF_SECONDS
    # ... and the right password, after the wait, signs in and clears the count.
    expire(app)
    assert attempt(client, "alice password 1").status_code == 302
    user = account(app)
    assert (user.failed_logins, user.login_locked_until) == (0, None)


def expire(app) -> None:
    with app.app_context():
        db.session.execute(
            update(User).values(login_locked_until=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_workers_share_one_count(backend, tmp_path):
    """Two app instances on one database stand for two gunicorn workers."""
    with database(backend, tmp_path) as (url, options):
        first, second = build_app(url, options), build_app(url, options)
        try:
            from tests.conftest import make_keys

            make_keys(first)
            one, two = first.test_client(), second.test_client()
            statuses = [
                attempt(one if i % 2 else two, "wrong").status_code
                for i in range(FREE_LOGIN_FAILURES)
            ]
            assert statuses == [401] * FREE_LOGIN_FAILURES
            # Neither worker saw more than 3 failures itself, yet both make it wait.
            assert attempt(one, "alice password 1").status_code == 429
            assert attempt(two, "alice password 1").status_code == 429
            assert account(second).failed_logins == FREE_LOGIN_FAILURES
        finally:
            for application in (first, second):
                application.extensions["modeldock"].close()
                with application.app_context():
                    db.session.remove()
                    db.engine.dispose()


@pytest.mark.config(RATELIMIT_ENABLED=True, MODELDOCK_RATELIMIT_LOGIN="3 per minute")
def test_owner_signs_in_while_others_hammer_the_account(app, keys):
    owner = from_address(app, "198.51.100.7")
    assert attempt(owner, "alice password 1").status_code == 302  # a known browser
    owner.post(
        "/auth/logout",
        data={
            "csrf_token": re.search(
                r'name="csrf_token" value="([^"]+)"', owner.get("/").text
            ).group(1)
        },
    )

    attacker = from_address(app, "203.0.113.1")
    assert [attempt(attacker, "guess").status_code for _ in range(4)] == [
        401,
        401,
        401,
        429,
    ]  # the per-address limit stops this address ...
    neighbour = from_address(app, "203.0.113.2")
    assert attempt(neighbour, "alice password 1").status_code == 302  # ... only it
    # Guesses from more addresses reach the account's limit: new browsers now wait,
    # wherever they are, with or without the right password.
    for address in ("203.0.113.3", "203.0.113.4"):
        for _ in range(3):
            attempt(from_address(app, address), "guess")
    assert account(app).login_locked_until is not None
    stranger = from_address(app, "203.0.113.5")
    assert attempt(stranger, "alice password 1").status_code == 429
    # The owner's browser signed in before: its device cookie lets it in.
    signed_in = attempt(owner, "alice password 1")
    assert signed_in.status_code == 302, signed_in.text[-400:]
    assert "alice" in owner.get("/").text
    assert account(app).login_locked_until is not None  # still waiting for the others
    # A forged or foreign device cookie does not.
    stranger.set_cookie("modeldock_device", "1.forged.signature", path="/auth/login")
    assert attempt(stranger, "alice password 1").status_code == 429


def test_a_name_no_account_has_waits_like_an_account(app, keys):
    """A 429 must not tell which usernames exist: unknown names wait the same way."""
    client = from_address(app, "192.0.2.9")
    answers = {}
    for name in ("alice", "nobody-has-this-name"):
        statuses = [
            attempt(client, "wrong", name).status_code
            for _ in range(FREE_LOGIN_FAILURES + 1)
        ]
        answers[name] = statuses
    assert (
        answers["alice"]
        == answers["nobody-has-this-name"]
        == [401] * FREE_LOGIN_FAILURES + [429]
    )
    waited = attempt(client, "wrong", "nobody-has-this-name")
    assert waited.status_code == 429
    assert "Too many failed sign-ins for this account" in waited.text
    assert 0 < int(waited.headers["Retry-After"]) <= LOGIN_BACKOFF_SECONDS
