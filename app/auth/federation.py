"""Users who sign in through an OpenID provider: their role from a claim, and their
ModelDock account, created at the first sign-in and updated at each one (audited)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from app.auth import accounts
from app.extensions import db
from app.models import User
from app.models._time import utcnow
from app.observability import audit
from app.web.errors import APIError

# No password hash starts with "!": werkzeug refuses every password against it, so a
# user of single sign-on can never sign in with the local form.
NO_PASSWORD = "!single-sign-on"


def claim_values(claims: Mapping[str, Any], path: str) -> set[str]:
    """The values of a claim as a set of strings; ``a.b`` reaches into objects
    (Keycloak's ``realm_access.roles``)."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return {item for item in value if isinstance(item, str)}
    return set()


def role_for(claims: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """``admin`` or ``user`` from the role claim; an APIError 403 when the claim
    allows neither."""
    values = claim_values(claims, config["MODELDOCK_OIDC_ROLE_CLAIM"])
    if values & set(config["MODELDOCK_OIDC_ADMIN_VALUES"]):
        return "admin"
    allowed = set(config["MODELDOCK_OIDC_USER_VALUES"])
    if not allowed or values & allowed:
        return "user"
    raise APIError(
        403,
        "sso_not_allowed",
        "Your account at the identity provider is not allowed to use ModelDock. "
        "Ask an administrator to add you to the right group.",
        config["MODELDOCK_OIDC_ROLE_CLAIM"],
    )


def _username(claims: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    for name in (config["MODELDOCK_OIDC_USERNAME_CLAIM"], "email", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:80]
    raise APIError(400, "sso_claims", "the provider sent no subject", "sub")


def sign_in(issuer: str, claims: Mapping[str, Any], config: Mapping[str, Any]) -> User:
    """The user these verified ID-token (and userinfo) claims stand for, created or
    updated: the role follows the provider at every sign-in."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise APIError(400, "sso_claims", "the provider sent no subject", "sub")
    role = role_for(claims, config)
    user = db.session.scalar(
        select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject)
    )
    if user is None:
        username = _username(claims, config)
        if db.session.scalar(select(User.id).where(User.username == username)):
            # A local account is never taken over by a provider's account of the
            # same name: that would let whoever controls the name there become it.
            raise APIError(
                409,
                "user_exists",
                f"A local account named '{username}' already exists, so your "
                "single sign-on account cannot take that name. Ask an "
                "administrator to rename or remove the local account.",
                "username",
            )
        user = User(
            username=username,
            role=role,
            password_hash=NO_PASSWORD,
            oidc_issuer=issuer,
            oidc_subject=subject,
        )
        db.session.add(user)
        db.session.flush()
        audit.record(
            "user.create", f"user:{username}", {"role": role, "via": "single sign-on"}
        )
    elif not user.enabled:
        raise APIError(403, "user_disabled", "This account is disabled.", "username")
    else:
        accounts.set_role(user, role, acting_user_id=None)
    user.last_login_at = utcnow()
    return user
