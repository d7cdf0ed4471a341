"""Sign in and out; failed attempts (only those) are rate limited per address."""

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user

from app.accounts import authenticate_password
from app.auth import bp
from app.auth.forms import LoginForm, LogoutForm
from app.extensions import db, limiter
from app.models._time import utcnow


def _login_limit() -> str:
    return current_app.config["MODELDOCK_RATELIMIT_LOGIN"]


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login."""
    if target and target.startswith("/") and not target.startswith("//") \
            and not urlsplit(target).netloc:
        return target
    return url_for("pages.index")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"],
               deduct_when=lambda response: response.status_code == 401)
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate_password(form.username.data, form.password.data)
        if user is None:
            flash("Wrong username or password.", "error")
            return render_template("auth/login.html", form=form), 401
        session.clear()  # a fresh session at login (no fixation)
        login_user(user)
        user.last_login_at = utcnow()
        db.session.commit()
        flash(f"Signed in as {user.username}.", "success")
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
def logout():
    LogoutForm()  # CSRF is checked globally; the form only documents the field
    logout_user()
    session.clear()
    flash("Signed out.", "success")
    return redirect(url_for("auth.login"))
