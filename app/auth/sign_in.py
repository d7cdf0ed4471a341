"""Sign in with a local password, and out (single sign-on: app/auth/sso.py). Failed
attempts (only those) are rate limited per address, and counted per account in the
database (app/auth/credentials.py: sign_in), which makes the account wait after
several in a row, except for browsers that signed in to it before."""

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import login_user, logout_user
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.auth.credentials import LoginBackoff, sign_in
from app.auth.forms import LoginForm, LogoutForm
from app.extensions import limiter
from app.serving.commit import commit
from app.web.errors import APIError

bp = Blueprint("auth", __name__, url_prefix="/auth")

# A browser that signed in to an account gets this signed cookie naming the account;
# it keeps that browser out of the account's backoff (OWASP's "device cookie").
DEVICE_COOKIE = "modeldock_device"
DEVICE_DAYS = 90


def _login_limit() -> str:
    return current_app.config["MODELDOCK_RATELIMIT_LOGIN"]


def safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and not urlsplit(target).netloc
    ):
        return target
    return url_for("pages.index")


def login_page_context() -> dict:
    """What the sign-in page shows: the local form, a single sign-on button."""
    config = current_app.config
    sso = current_app.extensions.get("modeldock.sso") is not None
    return {
        "local_login": config["MODELDOCK_LOCAL_LOGIN"],
        "sso_name": config["MODELDOCK_OIDC_PROVIDER_NAME"] if sso else None,
    }


def _devices() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="modeldock-device")


def _trusted_user_id() -> int | None:
    """The account this browser signed in to before, from its device cookie."""
    value = request.cookies.get(DEVICE_COOKIE)
    if not value:
        return None
    try:
        return int(_devices().loads(value, max_age=DEVICE_DAYS * 86400))
    except (BadSignature, TypeError, ValueError):
        return None


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(
    _login_limit,
    methods=["POST"],
    deduct_when=lambda response: response.status_code == 401,
)
def login():
    form = LoginForm()
    context = login_page_context()
    if request.method == "POST" and not context["local_login"]:
        flash("Local sign-in is switched off: use single sign-on.", "error")
        return render_template("auth/login.html", form=form, **context), 403
    if form.validate_on_submit():
        try:
            user = sign_in(form.username.data, form.password.data, _trusted_user_id())
        except LoginBackoff as error:
            flash(error.message, "error")
            return (
                render_template("auth/login.html", form=form, **context),
                429,
                {"Retry-After": str(error.retry_after)},
            )
        except APIError as error:
            commit()  # the failure counts, in every worker
            flash(error.message, "error")
            return render_template(
                "auth/login.html", form=form, **context
            ), error.status
        session.clear()  # a fresh session at login (no fixation)
        login_user(user)
        commit()
        flash(f"Signed in as {user.username}.", "success")
        response = redirect(safe_next(request.args.get("next")))
        response.set_cookie(
            DEVICE_COOKIE,
            _devices().dumps(user.id),
            max_age=DEVICE_DAYS * 86400,
            path=url_for("auth.login"),
            httponly=True,
            samesite="Lax",
            secure=current_app.config["SESSION_COOKIE_SECURE"],
        )
        return response
    return render_template("auth/login.html", form=form, **context)


@bp.post("/logout")
def logout():
    LogoutForm()  # CSRF is checked globally; the form only documents the field
    logout_user()
    session.clear()
    flash("Signed out.", "success")
    return redirect(url_for("auth.login"))
