"""Admin pages for people: users (create, role, disable) and every API key (revoke)."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from app.auth import accounts
from app.admin import pages_bp as bp
from app.admin.forms import RoleForm, UserForm
from app.web.errors import APIError
from app.extensions import db
from app.pages.forms import ConfirmForm


def _users_page(form: UserForm | None = None, status: int = 200):
    users = accounts.all_users()
    role_forms = {u.id: RoleForm(formdata=None, role=u.role) for u in users}
    return render_template("admin/users.html", users=users, form=form or UserForm(),
                           role_forms=role_forms), status


@bp.get("/users")
def users():
    return _users_page()


@bp.post("/users")
def create_user():
    form = UserForm()
    if not form.validate_on_submit():
        return _users_page(form, 400)
    try:
        user = accounts.create_user(form.username.data, form.password.data,
                                  form.role.data)
    except APIError as error:
        db.session.rollback()
        field = getattr(form, error.field, None) if error.field else None
        (field or form.username).errors = [error.message]
        return _users_page(form, error.status)
    db.session.commit()
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
            db.session.rollback()
            flash(f"Refused: {error.message}", "error")
            return redirect(url_for("admin_pages.users"))
        db.session.commit()
        flash(f"'{user.username}' is now {user.role}.", "success")
    else:
        flash("Choose a valid role.", "error")
    return redirect(url_for("admin_pages.users"))


@bp.route("/users/<int:user_id>/disable", methods=["GET", "POST"],
          defaults={"action": "disable"})
@bp.route("/users/<int:user_id>/enable", methods=["GET", "POST"],
          defaults={"action": "enable"})
def set_enabled(user_id: int, action: str):
    """Confirm, then disable (or re-enable) a user."""
    user = accounts.get_user(user_id)
    form = ConfirmForm()
    back = url_for("admin_pages.users")
    if form.validate_on_submit():
        try:
            accounts.set_enabled(user, action == "enable", current_user.id)
        except APIError as error:
            db.session.rollback()
            flash(f"Refused: {error.message}", "error")
            return redirect(back)
        db.session.commit()
        flash(f"'{user.username}' {action}d.", "success")
        return redirect(back)
    details = ["They can no longer sign in; their sessions and API keys stop working "
               "at once."] if action == "disable" else ["They can sign in again."]
    return render_template("confirm.html", form=form, details=details,
                           title=f"{action.capitalize()} '{user.username}'?",
                           button=f"{action.capitalize()} user", cancel=back,
                           danger=action == "disable")


@bp.get("/keys")
def keys():
    return render_template("admin/keys.html", keys=accounts.all_keys())


@bp.route("/keys/<int:key_id>/revoke", methods=["GET", "POST"])
def revoke_key(key_id: int):
    key = accounts.get_key(key_id)
    form = ConfirmForm()
    back = url_for("admin_pages.keys")
    if form.validate_on_submit():
        accounts.revoke_key(key)
        db.session.commit()
        flash(f"Key {key.prefix} of '{key.user.username}' revoked.", "success")
        return redirect(back)
    return render_template(
        "confirm.html", form=form, title=f"Revoke key {key.prefix}?",
        details=[f"Owner: {key.user.username}", f"Name: {key.name}",
                 f"Scopes: {key.scopes}", "Scripts using it stop working at once."],
        button="Revoke key", cancel=back, danger=True)
