"""Browser sign-in through an OpenID provider: OpenID Connect's authorization code
flow with PKCE (S256), done by Authlib's Flask client (state, nonce, PKCE, the token
request and the ID token's signature and claims). The user then has the same
flask-login session as after a local sign-in."""

from __future__ import annotations

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import login_user

from app.auth import federation
from app.auth.forms import LoginForm
from app.auth.sign_in import login_page_context, safe_next
from app.serving.commit import commit
from app.web.errors import APIError

bp = Blueprint("sso", __name__, url_prefix="/auth/sso")
CLIENT = "oidc"
UNREACHABLE = "The identity provider cannot be reached just now. Try again in a moment."


def init_app(app: Flask) -> None:
    """Register the provider with Authlib when the settings name one."""
    config = app.config
    if not (config["MODELDOCK_OIDC_ISSUER"] and config["MODELDOCK_OIDC_CLIENT_ID"]):
        app.extensions["modeldock.sso"] = None
        return
    oauth = OAuth(app)
    client_kwargs = {
        "scope": config["MODELDOCK_OIDC_SCOPES"],
        "code_challenge_method": "S256",
    }
    if not config["MODELDOCK_OIDC_CLIENT_SECRET"]:
        client_kwargs["token_endpoint_auth_method"] = "none"  # a public client
    oauth.register(
        CLIENT,
        client_id=config["MODELDOCK_OIDC_CLIENT_ID"],
        client_secret=config["MODELDOCK_OIDC_CLIENT_SECRET"],
        server_metadata_url=config["MODELDOCK_OIDC_ISSUER"].rstrip("/")
        + "/.well-known/openid-configuration",
        client_kwargs=client_kwargs,
    )
    app.extensions["modeldock.sso"] = oauth


def _client():
    oauth = current_app.extensions["modeldock.sso"]
    if oauth is None:
        abort(404)
    return oauth.create_client(CLIENT)


@bp.get("/login")
def start():
    """Send the browser to the provider; it comes back to ``callback``."""
    client = _client()
    session["sso_next"] = safe_next(request.args.get("next"))
    try:
        return client.authorize_redirect(url_for("sso.callback", _external=True))
    except requests.RequestException:
        return _refused(UNREACHABLE, 503)


@bp.get("/callback")
def callback():
    """Finish the flow, sign the user in (created or updated from the claims)."""
    client = _client()
    try:
        token = client.authorize_access_token()
        user = federation.sign_in(
            current_app.config["MODELDOCK_OIDC_ISSUER"],
            _claims(client, token),
            current_app.config,
        )
    except requests.RequestException:
        return _refused(UNREACHABLE, 503)
    except OAuthError as error:
        return _refused(f"Single sign-on failed: {error.description or error}", 401)
    except APIError as error:
        commit()  # an audited refusal is not lost
        return _refused(error.message, error.status)
    target = session.pop("sso_next", None) or url_for("pages.index")
    session.clear()  # a fresh session at login (no fixation)
    login_user(user)
    commit()
    flash(f"Signed in as {user.username}.", "success")
    return redirect(target)


def _claims(client, token: dict) -> dict:
    """The ID token's claims, completed from the userinfo endpoint when the role
    claim is not in the ID token (many providers put only ``sub`` there)."""
    claims = dict(token.get("userinfo") or {})
    role_claim = current_app.config["MODELDOCK_OIDC_ROLE_CLAIM"].split(".")[0]
    if role_claim not in claims and client.load_server_metadata().get(
        "userinfo_endpoint"
    ):
        extra = client.userinfo(token=token)
        if extra.get("sub") == claims.get("sub"):  # OIDC Core 5.3.2
            claims = {**extra, **claims}
    return claims


def _refused(message: str, status: int):
    flash(message, "error")
    return render_template(
        "auth/login.html", form=LoginForm(), **login_page_context()
    ), status
