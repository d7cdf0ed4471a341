"""Users and API keys: creating, verifying and revoking credentials."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import select, update
from werkzeug.security import generate_password_hash

from app.extensions import cache, db
from app.models import ApiKey, User
from app.models._time import utcnow
from app.models.users import ROLES, SCOPES
from app.observability import audit
from app.registry import changes
from app.web.errors import APIError

KEY_PREFIX = "mdk_"

# Failed sign-ins of one account that cost nothing; each further one makes the
# account wait before the next try: 30 s, 60 s, 120 s … at most 15 minutes. The
# count lives in the database, so it bounds guessing across every worker and address.
FREE_LOGIN_FAILURES = 5
LOGIN_BACKOFF_SECONDS = 30
LOGIN_BACKOFF_MAX_SECONDS = 15 * 60


class LoginBackoff(APIError):
    """Sign-ins to this account wait: too many failed attempts in a row."""

    def __init__(self, retry_after: int):
        super().__init__(
            429,
            "login_backoff",
            "Too many failed sign-ins for this account. Try again in "
            f"{retry_after} seconds.",
            "username",
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class Principal:
    """Who is making a request: a signed-in user, the owner of an API key, or the
    client an identity provider's access token was issued to (``token_subject``, its
    ``sub``; no ModelDock user stands behind it)."""

    user_id: int | None
    username: str
    role: str
    scopes: frozenset[str]
    api_key_id: int | None = None
    expires_at: datetime | None = None
    rate_limit: str | None = None
    token_subject: str | None = None

    @property
    def is_script(self) -> bool:
        """True for the scoped credentials of scripts: an API key or a token."""
        return self.api_key_id is not None or self.token_subject is not None

    @property
    def client_key(self) -> str | None:
        """Names the credential for rate limits and sticky routing, else None."""
        if self.api_key_id is not None:
            return f"key:{self.api_key_id}"
        if self.token_subject is not None:
            return f"token:{self.token_subject}"
        return None

    @property
    def label(self) -> str:
        if self.token_subject is not None:
            return f"{self.token_subject} (token)"
        if self.api_key_id is None:
            return self.username
        return f"{self.username} (key #{self.api_key_id})"


def hash_key(plaintext: str) -> str:
    """sha256 of an API key, the only form in which keys are stored."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_user(username: str, password: str, role: str = "user") -> User:
    """Add a user; the password is stored hashed."""
    username = username.strip()
    if not username or len(username) > 80:
        raise APIError(
            400, "invalid_username", "username must be 1-80 characters", "username"
        )
    if role not in ROLES:
        raise APIError(400, "invalid_role", f"role must be one of {ROLES}", "role")
    if len(password) < 8:
        raise APIError(
            400, "weak_password", "password must have 8 characters or more", "password"
        )
    if db.session.scalar(select(User.id).where(User.username == username)):
        raise APIError(
            409, "user_exists", f"user '{username}' already exists", "username"
        )
    user = User(username=username, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user


def sign_in(username: str, password: str, trusted_user_id: int | None = None) -> User:
    """Check a sign-in; count failures per account; raise APIError 401 or LoginBackoff.

    While an account waits after repeated failures, only a browser that signed in to
    it before (``trusted_user_id``, from its signed device cookie) may still try: the
    account's owner is not locked out by someone guessing from elsewhere.
    """
    user = db.session.scalar(select(User).where(User.username == username.strip()))
    wrong = APIError(
        401, "wrong_credentials", "Wrong username or password.", "password"
    )
    if user is None:
        # Spend the same time as a real check, and wait like an account does, so
        # that neither timing nor a 429 tells which usernames exist.
        User(password_hash=_dummy_hash()).check_password(password)
        wait = _unknown_name_wait(username.strip())
        if wait:
            raise LoginBackoff(wait)
        raise wrong
    now = utcnow()
    waiting = user.login_locked_until is not None and user.login_locked_until > now
    if waiting and trusted_user_id != user.id:
        raise LoginBackoff(math.ceil((user.login_locked_until - now).total_seconds()))
    if user.enabled and user.check_password(password):
        if not waiting:  # the owner slipping past a wait leaves it for the guessers
            user.failed_logins, user.login_locked_until = 0, None
        user.last_login_at = now
        return user
    _count_failure(user, now)
    raise wrong


def _backoff_seconds(failures: int) -> int:
    """The wait after ``failures`` failed sign-ins in a row (0 while still free)."""
    if failures < FREE_LOGIN_FAILURES:
        return 0
    steps = min(failures - FREE_LOGIN_FAILURES, 10)
    return min(LOGIN_BACKOFF_SECONDS * 2**steps, LOGIN_BACKOFF_MAX_SECONDS)


def _unknown_name_wait(username: str) -> int:
    """Seconds left to wait for a name no account has, counting this failure as an
    account would (kept in the cache: Redis in production, else per worker)."""
    key = "login-unknown:" + hashlib.sha256(username.encode()).hexdigest()
    state = cache.get(key) or {"failures": 0, "until": 0.0}
    now = time.time()
    if state["until"] > now:
        return math.ceil(state["until"] - now)
    state["failures"] += 1
    wait = _backoff_seconds(state["failures"])
    if wait:
        state["until"] = now + wait
    cache.set(key, state, timeout=2 * LOGIN_BACKOFF_MAX_SECONDS)
    return 0


def _count_failure(user: User, now: datetime) -> None:
    """Add one failure in the database (atomically, for concurrent workers)."""
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(failed_logins=User.failed_logins + 1)
        .execution_options(synchronize_session=False)
    )
    failures = db.session.scalar(select(User.failed_logins).where(User.id == user.id))
    db.session.refresh(user)
    wait = _backoff_seconds(failures)
    if not wait:
        return
    user.login_locked_until = now + timedelta(seconds=wait)
    audit.record(
        "user.login_backoff",
        f"user:{user.username}",
        {"failed_sign_ins": failures, "wait_seconds": wait},
    )
    db.session.flush()


def create_api_key(
    user: User,
    name: str,
    scopes: list[str] | str = "predict",
    expires_at: datetime | None = None,
    rate_limit: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; return it with its plaintext, which is never stored."""
    scope_list = scopes.split() if isinstance(scopes, str) else list(scopes)
    unknown = sorted(set(scope_list) - set(SCOPES))
    if not scope_list or unknown:
        raise APIError(
            400,
            "invalid_scope",
            f"scopes must be among {SCOPES}, got {scope_list}",
            "scopes",
        )
    if "admin" in scope_list and user.role != "admin":
        raise APIError(
            403, "forbidden", "only admins can hold admin-scope keys", "scopes"
        )
    prefix = KEY_PREFIX + secrets.token_hex(4)
    plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        user=user,
        name=name.strip() or "key",
        prefix=prefix,
        key_hash=hash_key(plaintext),
        scopes=" ".join(sorted(set(scope_list))),
        expires_at=expires_at,
        rate_limit=rate_limit,
    )
    db.session.add(key)
    db.session.flush()
    return key, plaintext


def lookup_api_key(plaintext: str) -> Principal | None:
    """Return the principal a usable key stands for, else None (the hash is compared
    in constant time)."""
    prefix = plaintext[: len(KEY_PREFIX) + 8]
    key = db.session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or not hmac.compare_digest(key.key_hash, hash_key(plaintext)):
        return None
    if not key.is_usable(utcnow()):
        return None
    return Principal(
        user_id=key.user_id,
        username=key.user.username,
        role=key.user.role,
        scopes=key.scope_set,
        api_key_id=key.id,
        expires_at=key.expires_at,
        rate_limit=key.rate_limit,
    )


def revoke_api_key(key: ApiKey) -> None:
    """Mark a key revoked; it stops working at once in every worker."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        changes.bump()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_hex(16))
