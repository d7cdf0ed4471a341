"""Admin pages for people: users (create, role, disable) and every API key (revoke)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from app.admin.blueprints import pages_bp as bp
from app.admin.forms import RoleForm, UserForm
from app.auth import accounts
from app.extensions import db
from app.serving.commit import commit
from app.ui.confirm import confirm_action, refused
from app.web.errors import APIError


def _users_page(form: UserForm | None = None, status: int = 200):
    users = accounts.all_users()
    role_forms = {u.id: RoleForm(formdata=None, role=u.role) for u in users}
    return render_template(
        "admin/users.html", users=users, form=form or UserForm(), role_forms=role_forms
    ), status


@bp.get("/users")
def users():
    return _users_page()


@bp.post("/users")
def create_user():
    form = UserForm()
    if not form.validate_on_submit():
        return _users_page(form, 400)
    try:
        user = accounts.create_user(
            form.username.data, form.password.data, form.role.data
        )
    except APIError as error:
        db.session.rollback()
        field = getattr(form, error.field, None) if error.field else None
        (field or form.username).errors = [error.message]
        return _users_page(form, error.status)
    commit()
    flash(f"Created {user.role} '{user.username}'.", "success")
    return redirect(url_for("admin_pages.users"))


@bp.post("/users/<int:user_id>/role")
def change_role(user_id: int):
    user = accounts.get_user(user_id)
    form = RoleForm()
    if form.validate_on_submit():
        try:
            accounts.set_role(user, form.role.data, current_user.id)
        except APIError as error:
            return refused(error, url_for("admin_pages.users"))
        commit()
        flash(f"'{user.username}' is now {user.role}.", "success")
    else:
        flash("Choose a valid role.", "error")
    return redirect(url_for("admin_pages.users"))


@bp.route(
    "/users/<int:user_id>/disable",
    methods=["GET", "POST"],
    defaults={"action": "disable"},
)
@bp.route(
    "/users/<int:user_id>/enable",
    methods=["GET", "POST"],
    defaults={"action": "enable"},
)
def set_enabled(user_id: int, action: str):
    """Confirm, then disable (or re-enable) a user."""
    user = accounts.get_user(user_id)
    details = (
        [
            "They can no longer sign in; their sessions and API keys stop working "
            "at once."
        ]
        if action == "disable"
        else ["They can sign in again."]
    )
    return confirm_action(
        lambda _: accounts.set_enabled(user, action == "enable", current_user.id),
        lambda _: f"'{user.username}' {action}d.",
        title=f"{action.capitalize()} '{user.username}'?",
        details=details,
        button=f"{action.capitalize()} user",
        back=url_for("admin_pages.users"),
        danger=action == "disable",
        reason=False,
    )


@bp.get("/keys")
def keys():
    return render_template("admin/keys.html", keys=accounts.all_keys())


@bp.route("/keys/<int:key_id>/revoke", methods=["GET", "POST"])
def revoke_key(key_id: int):
    key = accounts.get_key(key_id)
    return confirm_action(
        lambda _: accounts.revoke_key(key),
        lambda _: f"Key {key.prefix} of '{key.user.username}' revoked.",
        title=f"Revoke key {key.prefix}?",
        details=[
            f"Owner: {key.user.username}",
            f"Name: {key.name}",
            f"Scopes: {key.scopes}",
            "Scripts using it stop working at once.",
        ],
        button="Revoke key",
        back=url_for("admin_pages.keys"),
        danger=True,
        reason=False,
    )
