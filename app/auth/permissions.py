"""Who may do what: request authentication and the decorators views use."""

from __future__ import annotations

import re
import time
import uuid
from functools import wraps

from flask import Flask, abort, current_app, g, request
from flask_login import current_user

from app.auth.credentials import Principal, hash_key, lookup_api_key
from app.auth.tokens import TokenVerifier, looks_like_jwt
from app.models._time import utcnow
from app.serving.state import serving_state
from app.web.errors import APIError

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Endpoints that check a bearer token of their own (not an API key).
OWN_TOKEN_ENDPOINTS = frozenset({"ops.scrape"})
# Query parameters that would put a key in URLs (and so in logs): refused.
KEY_PARAMETERS = ("api_key", "apikey", "key", "token", "access_token")


class KeyCache:
    """Verified API keys per worker, dropped whenever the change counter moves."""

    def __init__(self):
        self._generation: int | None = None
        self._entries: dict[str, Principal | None] = {}

    def lookup(self, plaintext: str) -> Principal | None:
        generation = serving_state().routing.snapshot().generation
        if generation != self._generation:
            self._entries, self._generation = {}, generation
        digest = hash_key(plaintext)
        if digest not in self._entries:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = lookup_api_key(plaintext)
        principal = self._entries[digest]
        if (
            principal is not None
            and principal.expires_at is not None
            and principal.expires_at <= utcnow()
        ):
            return None
        return principal


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("X-API-Key") or None


def identify_request() -> None:
    """Before each request: assign a request id and find the principal, if any."""
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.principal = None
    for name in KEY_PARAMETERS if request.query_string else ():
        if name in request.args:
            raise APIError(
                400,
                "key_in_query_string",
                "API keys are accepted only in the Authorization or "
                "X-API-Key header, never in the URL",
                name,
            )
    key = _presented_key()
    if key and request.endpoint not in OWN_TOKEN_ENDPOINTS:
        g.principal = _script_principal(key)
    elif current_user.is_authenticated:
        g.principal = Principal(
            user_id=current_user.id,
            username=current_user.username,
            role=current_user.role,
            scopes=frozenset(),
        )


def _script_principal(credential: str) -> Principal:
    """The principal of an API key or of an identity provider's access token (a JWT:
    two dots); an APIError 401 when it is neither valid key nor valid token."""
    if looks_like_jwt(credential):
        verifier: TokenVerifier | None = current_app.extensions["modeldock.tokens"]
        if verifier is None:
            raise APIError(
                401,
                "tokens_not_accepted",
                "this server accepts API keys only (no MODELDOCK_OIDC_AUDIENCE)",
                "Authorization",
            )
        return verifier.principal(credential)
    principal = current_app.extensions["modeldock.keys"].lookup(credential)
    if principal is None:
        raise APIError(
            401,
            "invalid_api_key",
            "the API key is unknown, expired or revoked",
            "Authorization",
        )
    return principal


def token_verifier(config) -> TokenVerifier | None:
    """The access-token verifier the settings ask for, else None (keys only)."""
    if not (config["MODELDOCK_OIDC_ISSUER"] and config["MODELDOCK_OIDC_AUDIENCE"]):
        return None
    return TokenVerifier(
        config["MODELDOCK_OIDC_ISSUER"],
        config["MODELDOCK_OIDC_AUDIENCE"],
        scope_prefix=config["MODELDOCK_OIDC_SCOPE_PREFIX"],
        leeway=config["MODELDOCK_OIDC_LEEWAY_SECONDS"],
        refetch_seconds=config["MODELDOCK_OIDC_JWKS_REFETCH_SECONDS"],
    )


def require_scope(scope: str):
    """Decorator for API views: an API key with ``scope`` (predict may be anonymous)."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            principal: Principal | None = g.principal
            if principal is None or not principal.is_script:
                if (
                    scope == "predict"
                    and current_app.config["MODELDOCK_ALLOW_ANONYMOUS_PREDICT"]
                ):
                    return view(*args, **kwargs)
                raise APIError(
                    401,
                    "unauthorized",
                    "send an API key: 'Authorization: Bearer <key>' or "
                    "'X-API-Key: <key>' (or an access token: 'Bearer <jwt>')",
                    "Authorization",
                )
            if scope not in principal.scopes:
                raise APIError(
                    403,
                    "insufficient_scope",
                    f"this {'token' if principal.token_subject else 'API key'} "
                    f"lacks the '{scope}' scope",
                    "Authorization",
                )
            return view(*args, **kwargs)

        return wrapped

    return decorator


def require_admin_user() -> None:
    """``before_request`` for admin pages: signed in (else the login page) and admin
    (else 403)."""
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()
    if current_user.role != "admin":
        abort(403, "This page is for administrators.")
    return None


def init_app(app: Flask) -> None:
    """Install request identification (before the rate limiter, which keys on it)."""
    app.extensions["modeldock.keys"] = KeyCache()
    app.extensions["modeldock.tokens"] = token_verifier(app.config)
    app.before_request(identify_request)

    @app.after_request
    def add_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if (
            g.get("log_version") is not None
        ):  # which version answered, on every protocol
            response.headers["X-Model-Version"] = str(g.log_version)
        return response
