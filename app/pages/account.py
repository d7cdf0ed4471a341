"""The account page: a user's own API keys (created, listed by prefix, revoked)."""

from __future__ import annotations

from datetime import timedelta

from flask import flash, render_template, url_for
from flask_login import current_user, login_required

from app.auth import accounts
from app.extensions import db
from app.models._time import utcnow
from app.pages.blueprint import bp
from app.pages.forms import ApiKeyForm
from app.serving.commit import commit
from app.ui.confirm import confirm_action
from app.web.errors import APIError


def _account(
    form: ApiKeyForm | None = None, new_key: str | None = None, status: int = 200
):
    keys = sorted(current_user.api_keys, key=lambda k: k.id, reverse=True)
    response = render_template(
        "pages/account.html", form=form or ApiKeyForm(), keys=keys, new_key=new_key
    )
    # The page may hold a new key in clear: never cache it anywhere.
    return response, status, {"Cache-Control": "no-store"}


@bp.get("/account")
@login_required
def account():
    return _account()


@bp.post("/account/keys")
@login_required
def create_key():
    """Create a key and show it once, in this response only (never in the session)."""
    form = ApiKeyForm()
    if not form.validate_on_submit():
        return _account(form, status=400)
    scopes = [
        s
        for s, on in (
            ("predict", form.scope_predict.data),
            ("admin", form.scope_admin.data),
            ("feedback", form.scope_feedback.data),
        )
        if on
    ]
    expires = (
        utcnow() + timedelta(days=form.expires_days.data)
        if form.expires_days.data
        else None
    )
    try:
        key, plaintext = accounts.create_key(
            current_user, form.name.data, scopes, expires
        )
    except APIError as error:
        db.session.rollback()
        form.scope_predict.errors = [error.message]
        return _account(form, status=error.status)
    commit()
    flash(f"Key {key.prefix} created. Copy it now: it is shown only once.", "success")
    return _account(ApiKeyForm(formdata=None), new_key=plaintext)


@bp.route("/account/keys/<int:key_id>/revoke", methods=["GET", "POST"])
@login_required
def revoke_key(key_id: int):
    """Confirm, then revoke one of your own keys."""
    key = accounts.get_key(key_id, owner_id=current_user.id)
    return confirm_action(
        lambda _: accounts.revoke_key(key),
        lambda _: f"Key {key.prefix} revoked.",
        title=f"Revoke key {key.prefix}?",
        details=[
            f"Name: {key.name}",
            f"Scopes: {key.scopes}",
            "Scripts using this key stop working at once.",
        ],
        button="Revoke key",
        back=url_for("pages.account"),
        danger=True,
        reason=False,
    )
