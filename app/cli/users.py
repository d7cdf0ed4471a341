"""``flask users`` and ``flask keys``: people who sign in, and API keys for scripts.

Every change goes through ``app.auth.accounts``, so each one is audited.
"""

from __future__ import annotations

from datetime import timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.auth import accounts
from app.cli.helpers import committed
from app.extensions import db
from app.models import ApiKey
from app.models._time import utcnow

users = AppGroup("users", help="Manage people who sign in.")
keys = AppGroup("keys", help="Manage API keys for scripts.")


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "user"]), default="user")
@click.password_option()
def create_user(username: str, role: str, password: str):
    """Create a user (prompts for the password)."""
    with committed():
        accounts.create_user(username, password, role)
    click.echo(f"created {role} '{username}'")


@users.command("create-admin")
@click.argument("username")
@click.password_option()
def create_admin(username: str, password: str):
    """Create an administrator (prompts for the password)."""
    with committed():
        accounts.create_user(username, password, "admin")
    click.echo(f"created admin '{username}'")


@users.command("role")
@click.argument("username")
@click.argument("role", type=click.Choice(["admin", "user"]))
def set_role(username: str, role: str):
    """Give USERNAME the ROLE (a demoted user's admin-scope keys are revoked)."""
    with committed():
        accounts.set_role(accounts.user_by_name(username), role, acting_user_id=None)
    click.echo(f"'{username}' is now {role}")


@users.command("disable")
@click.argument("username")
def disable_user(username: str):
    """Stop USERNAME's sign-in, sessions and API keys at once."""
    with committed():
        accounts.set_enabled(
            accounts.user_by_name(username), False, acting_user_id=None
        )
    click.echo(f"disabled '{username}'")


@users.command("enable")
@click.argument("username")
def enable_user(username: str):
    """Let USERNAME sign in and use API keys again."""
    with committed():
        accounts.set_enabled(accounts.user_by_name(username), True, acting_user_id=None)
    click.echo(f"enabled '{username}'")


@keys.command("create")
@click.argument("username")
@click.option("--name", default="cli", help="A label to recognise the key.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    default=["predict"],
    type=click.Choice(["predict", "admin", "feedback"]),
    show_default=True,
)
@click.option("--expires-days", type=click.IntRange(1, 100 * 366), default=None)
@click.option(
    "--rate-limit",
    default=None,
    help='This key\'s own limit, e.g. "100 per minute" (default: '
    "MODELDOCK_RATELIMIT_DEFAULT).",
)
def create_key(
    username: str, name: str, scopes: tuple[str, ...], expires_days, rate_limit
):
    """Create an API key for USERNAME and print it once."""
    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    with committed():
        key, plaintext = accounts.create_key(
            accounts.user_by_name(username),
            name,
            list(scopes),
            expires,
            _rate_limit(rate_limit),
        )
    click.echo(f"key {key.prefix} ({key.scopes}); store it now, it is not shown again:")
    click.echo(plaintext)


@keys.command("revoke")
@click.argument("prefix")
def revoke_key(prefix: str):
    """Revoke the key whose prefix is PREFIX."""
    with committed():
        accounts.revoke_key(accounts.key_by_prefix(prefix))
    click.echo(f"revoked {prefix}")


def _rate_limit(text: str | None) -> str | None:
    """Check a limit such as "100 per minute" ("none" or nothing: the default)."""
    if text is None or text.strip().lower() in {"", "none", "default"}:
        return None
    from limits import parse_many

    try:
        parse_many(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r} is not a rate limit such as '100 per minute': {exc}"
        ) from exc
    return text.strip()


@keys.command("set-limit")
@click.argument("prefix")
@click.argument("limit")
def set_key_limit(prefix: str, limit: str):
    """Give the key PREFIX its own rate LIMIT ("100 per minute"; "none": default)."""
    with committed():
        key = accounts.key_by_prefix(prefix)
        accounts.set_key_limit(key, _rate_limit(limit))
    click.echo(f"{prefix}: {key.rate_limit or 'default limit'}")


@keys.command("list")
def list_keys():
    """List keys (prefixes only)."""
    for key in db.session.scalars(select(ApiKey).order_by(ApiKey.id)):
        state = "revoked" if key.revoked_at else "active"
        click.echo(
            f"{key.prefix}\t{key.user.username}\t{key.scopes}\t{state}\t"
            f"{key.name}\t{key.rate_limit or 'default'}"
        )
