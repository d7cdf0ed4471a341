"""Admin operations on users and API keys; each one is recorded in the audit log.

Every entry point (admin pages, account pages, ``flask users``/``flask keys``,
``flask demo``) changes users and keys through this module only, so every change
is audited. Credentials themselves are made and checked in ``app.auth.credentials``;
this module adds what an administrator's action needs on top: the audit event, and
moving the change counter so that every worker drops the API keys it has cached.
"""

from __future__ import annotations

from sqlalchemy import select

from app.auth import credentials
from app.extensions import db
from app.models import ApiKey, User
from app.models.users import ROLES
from app.observability import audit
from app.registry import changes
from app.web.errors import APIError, quote


def get_user(user_id: int) -> User:
    """The user with this id, else a 404."""
    user = db.session.get(User, user_id)
    if user is None:
        raise APIError(404, "user_not_found", "no such user", "user")
    return user


def get_key(key_id: int, owner_id: int | None = None) -> ApiKey:
    """Return a key (only ``owner_id``'s own key when given), else a 404."""
    key = db.session.get(ApiKey, key_id)
    if key is None or (owner_id is not None and key.user_id != owner_id):
        raise APIError(404, "key_not_found", "no such API key", "key")
    return key


def user_by_name(username: str) -> User:
    """The user called ``username``, else a 404."""
    user = db.session.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        raise APIError(
            404, "user_not_found", f"no user named {quote(username)}", "username"
        )
    return user


def key_by_prefix(prefix: str) -> ApiKey:
    """The key whose public prefix is ``prefix``, else a 404."""
    key = db.session.scalar(select(ApiKey).where(ApiKey.prefix == prefix.strip()))
    if key is None:
        raise APIError(
            404, "key_not_found", f"no key with prefix {quote(prefix)}", "key"
        )
    return key


def create_user(username: str, password: str, role: str) -> User:
    """Add a user (password stored hashed) and audit it."""
    user = credentials.create_user(username, password, role)
    audit.record("user.create", f"user:{user.username}", {"role": role})
    return user


def set_role(user: User, role: str, acting_user_id: int | None) -> None:
    """Change a user's role; a demoted user's admin-scope keys are revoked."""
    if role not in ROLES:
        raise APIError(400, "invalid_role", f"role must be one of {ROLES}", "role")
    if user.id == acting_user_id:
        raise APIError(409, "own_account", "you cannot change your own role", "role")
    if user.role != role:
        audit.record(
            "user.role", f"user:{user.username}", {"from": user.role, "to": role}
        )
        user.role = role
        if role != "admin":  # admin-scope keys lose their power with the role
            for key in user.api_keys:
                if "admin" in key.scope_set:
                    credentials.revoke_api_key(key)
        changes.bump()


def set_enabled(user: User, enabled: bool, acting_user_id: int | None) -> None:
    """Disable (or enable) a user: sign-in, sessions and API keys stop at once."""
    if user.id == acting_user_id:
        raise APIError(
            409, "own_account", "you cannot disable your own account", "user"
        )
    if user.enabled != enabled:
        user.enabled = enabled
        audit.record(
            "user.enable" if enabled else "user.disable", f"user:{user.username}"
        )
        changes.bump()  # cached keys of this user are dropped by every worker


def create_key(
    user: User,
    name: str,
    scopes: list[str],
    expires_at=None,
    rate_limit: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key for ``user``, audit it, return it with its plaintext."""
    key, plaintext = credentials.create_api_key(
        user, name, scopes, expires_at, rate_limit
    )
    details = {"user": user.username, "scopes": key.scopes}
    if expires_at is not None:
        details["expires_at"] = expires_at.isoformat()
    if rate_limit is not None:
        details["rate_limit"] = rate_limit
    audit.record("key.create", f"key:{key.prefix}", details)
    return key, plaintext


def set_key_limit(key: ApiKey, rate_limit: str | None) -> None:
    """Give a key its own rate limit (None: the deployment's default)."""
    if key.rate_limit != rate_limit:
        audit.record(
            "key.limit", f"key:{key.prefix}", {"from": key.rate_limit, "to": rate_limit}
        )
        key.rate_limit = rate_limit
        changes.bump()  # workers drop their cached copy of the key


def revoke_key(key: ApiKey) -> None:
    """Revoke a key (``credentials.revoke_api_key`` moves the change counter)."""
    if key.revoked_at is None:
        credentials.revoke_api_key(key)
        audit.record("key.revoke", f"key:{key.prefix}", {"user": key.user.username})


def all_keys() -> list[ApiKey]:
    """Every key, newest first."""
    return list(db.session.scalars(select(ApiKey).order_by(ApiKey.id.desc())))


def all_users() -> list[User]:
    """Every user, by name."""
    return list(db.session.scalars(select(User).order_by(User.username)))
