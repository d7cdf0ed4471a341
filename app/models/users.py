"""Users (browser sessions) and API keys (scripts)."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.models._time import UTCDateTime, utcnow

ROLES = ("admin", "user")
SCOPES = ("predict", "admin", "feedback")


class User(UserMixin, db.Model):
    """A person who signs in to the web UI and owns API keys."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    # werkzeug's salted scrypt hash; the password itself is never stored.
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    # Disabled users cannot sign in and their API keys stop working.
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Failed sign-ins since the last successful one, counted in the database so that
    # every worker sees the same count (app/auth/credentials.py: sign_in).
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    # Until then, sign-ins from browsers not trusted for this account are refused.
    login_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Users of single sign-on: the provider's issuer and its `sub` for them (both
    # None for local users). Their password hash is unusable (app/auth/federation.py).
    oidc_issuer: Mapped[str | None] = mapped_column(String(255))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="user")

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_active(self) -> bool:  # flask-login refuses inactive users
        return self.enabled

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def __repr__(self) -> str:
        return f"<User {self.username} ({self.role})>"


class ApiKey(db.Model):
    """A scoped credential for scripts; only a hash of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    # The first characters of the key, shown to people to tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    # sha256 of the whole key: keys are 256-bit random, so a slow hash adds nothing.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Space-separated subset of SCOPES.
    scopes: Mapped[str] = mapped_column(String(64), default="predict")
    # Optional per-key rate limit such as "100 per minute"; None = the default.
    rate_limit: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    use_count: Mapped[int] = mapped_column(default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="api_keys")

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())

    def is_usable(self, now: datetime) -> bool:
        """True when the key is neither revoked, expired, nor owned by a disabled
        user."""
        if self.revoked_at is not None or not self.user.enabled:
            return False
        return self.expires_at is None or self.expires_at > now

    def __repr__(self) -> str:
        return f"<ApiKey {self.prefix} {self.scopes}>"
