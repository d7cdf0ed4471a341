"""Operator commands, one group per noun: users, keys, models; plus ``demo``."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from app.auth import accounts
from app.web.bounds import MAX_ID
from app.web.errors import APIError
from app.extensions import db
from app.models import ApiKey, MLModel
from app.models._time import utcnow
from app.registry import describe, service

users = AppGroup("users", help="Manage people who sign in.")
keys = AppGroup("keys", help="Manage API keys for scripts.")
models = AppGroup("models", help="Manage models and versions.")


# Version numbers as the database stores them (a larger one names nothing).
VERSION_NUMBER = click.IntRange(1, MAX_ID)


def _fail(error: APIError):
    raise click.ClickException(f"{error.code}: {error.message}")


@contextmanager
def _committed():
    """Run one change: an APIError ends the command with its message; else commit."""
    try:
        yield
    except APIError as error:
        _fail(error)
    db.session.commit()


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "user"]), default="user")
@click.password_option()
def create_user(username: str, role: str, password: str):
    """Create a user (prompts for the password)."""
    try:
        accounts.create_user(username, password, role)
    except APIError as error:
        _fail(error)
    db.session.commit()
    click.echo(f"created {role} '{username}'")


@users.command("create-admin")
@click.argument("username")
@click.password_option()
def create_admin(username: str, password: str):
    """Create an administrator (prompts for the password)."""
    try:
        accounts.create_user(username, password, "admin")
    except APIError as error:
        _fail(error)
    db.session.commit()
    click.echo(f"created admin '{username}'")


@users.command("role")
@click.argument("username")
@click.argument("role", type=click.Choice(["admin", "user"]))
def set_role(username: str, role: str):
    """Give USERNAME the ROLE (a demoted user's admin-scope keys are revoked)."""
    with _committed():
        accounts.set_role(accounts.user_by_name(username), role, acting_user_id=None)
    click.echo(f"'{username}' is now {role}")


@users.command("disable")
@click.argument("username")
def disable_user(username: str):
    """Stop USERNAME's sign-in, sessions and API keys at once."""
    with _committed():
        accounts.set_enabled(accounts.user_by_name(username), False, acting_user_id=None)
    click.echo(f"disabled '{username}'")


@users.command("enable")
@click.argument("username")
def enable_user(username: str):
    """Let USERNAME sign in and use API keys again."""
    with _committed():
        accounts.set_enabled(accounts.user_by_name(username), True, acting_user_id=None)
    click.echo(f"enabled '{username}'")


@keys.command("create")
@click.argument("username")
@click.option("--name", default="cli", help="A label to recognise the key.")
@click.option("--scope", "scopes", multiple=True, default=["predict"],
              type=click.Choice(["predict", "admin"]), show_default=True)
@click.option("--expires-days", type=click.IntRange(1, 100 * 366), default=None)
@click.option("--rate-limit", default=None,
              help='This key\'s own limit, e.g. "100 per minute" (default: '
                   'MODELDOCK_RATELIMIT_DEFAULT).')
def create_key(username: str, name: str, scopes: tuple[str, ...], expires_days,
               rate_limit):
    """Create an API key for USERNAME and print it once."""
    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    try:
        key, plaintext = accounts.create_key(accounts.user_by_name(username), name,
                                           list(scopes), expires,
                                           _rate_limit(rate_limit))
    except APIError as error:
        _fail(error)
    db.session.commit()
    click.echo(f"key {key.prefix} ({key.scopes}); store it now, it is not shown again:")
    click.echo(plaintext)


@keys.command("revoke")
@click.argument("prefix")
def revoke_key(prefix: str):
    """Revoke the key whose prefix is PREFIX."""
    try:
        accounts.revoke_key(accounts.key_by_prefix(prefix))
    except APIError as error:
        _fail(error)
    db.session.commit()
    click.echo(f"revoked {prefix}")


def _rate_limit(text: str | None) -> str | None:
    """Check a limit such as "100 per minute" ("none" or nothing: the default)."""
    if text is None or text.strip().lower() in {"", "none", "default"}:
        return None
    from limits import parse_many

    try:
        parse_many(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a rate limit such as "
                                 f"'100 per minute': {exc}") from exc
    return text.strip()


@keys.command("set-limit")
@click.argument("prefix")
@click.argument("limit")
def set_key_limit(prefix: str, limit: str):
    """Give the key PREFIX its own rate LIMIT ("100 per minute"; "none": default)."""
    try:
        key = accounts.key_by_prefix(prefix)
        accounts.set_key_limit(key, _rate_limit(limit))
    except APIError as error:
        _fail(error)
    db.session.commit()
    click.echo(f"{prefix}: {key.rate_limit or 'default limit'}")


@keys.command("list")
def list_keys():
    """List keys (prefixes only)."""
    for key in db.session.scalars(select(ApiKey).order_by(ApiKey.id)):
        state = "revoked" if key.revoked_at else "active"
        click.echo(f"{key.prefix}\t{key.user.username}\t{key.scopes}\t{state}\t"
                   f"{key.name}\t{key.rate_limit or 'default'}")


@models.command("upload")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--description", default=None)
@click.option("--notes", default="")
@click.option("--activate", is_flag=True, help="Make the new version active.")
def upload(name: str, path: Path, description, notes: str, activate: bool):
    """Validate the model file at PATH and store it as NAME's next version."""
    try:
        version = service.upload_version(name, path.name, path.read_bytes(),
                                         description=description, notes=notes)
        if activate:
            service.set_alias(version.model, version, "stable", reason="cli upload")
    except APIError as error:
        _fail(error)
    db.session.commit()
    click.echo(f"{name} version {version.number} stored (sha256 {version.sha256[:12]})")


@models.command("activate")
@click.argument("name")
@click.argument("number", type=VERSION_NUMBER)
@click.option("--reason", default="")
def activate(name: str, number: int, reason: str):
    """Make version NUMBER of NAME the active (stable) version."""
    try:
        service.activate_version(name, number, reason)
    except APIError as error:
        _fail(error)
    db.session.commit()
    click.echo(f"{name} now serves version {number}")


@models.command("runtime")
@click.argument("name")
@click.argument("number", type=VERSION_NUMBER)
@click.argument("runtime", type=click.Choice(["auto", "onnx", "sklearn"]))
@click.option("--reason", default="")
def set_runtime(name: str, number: int, runtime: str, reason: str):
    """Serve version NUMBER of NAME with RUNTIME (auto: ONNX when verified)."""
    from app.registry.runtime import effective_runtime
    from app.registry.runtime import set_runtime as force

    try:
        version = force(service.get_version(service.get_model(name), number), runtime,
                        reason)
    except APIError as error:
        _fail(error)
    db.session.commit()
    click.echo(f"{name} version {number} is served by {effective_runtime(version)} "
               f"(setting {runtime}, verdict {version.runtime_verdict})")


@models.command("timeout")
@click.argument("name")
@click.argument("seconds", type=float, required=False)
@click.option("--inherit", is_flag=True,
              help="Drop the model's own deadline: the deployment's applies.")
@click.option("--reason", default="")
def set_timeout(name: str, seconds: float | None, inherit: bool, reason: str):
    """Deadline in SECONDS of one prediction of NAME."""
    from app.registry.runtime import set_timeout as apply

    if seconds is None and not inherit:
        raise click.UsageError("give SECONDS or --inherit")
    with _committed():
        model = apply(service.get_model(name), None if inherit else seconds, reason)
    click.echo(f"{name}: predictions stop after "
               f"{describe.model_dict(model)['timeout']['effective']:g} s")


@models.command("batching")
@click.argument("name")
@click.option("--max-rows", type=int, default=None,
              help="Most rows per batched predict call; 0 turns batching off.")
@click.option("--max-wait-ms", type=float, default=None,
              help="Longest a request waits for others to join its batch.")
@click.option("--inherit", is_flag=True,
              help="Drop the model's own settings: the deployment's apply.")
@click.option("--reason", default="")
def set_batching(name: str, max_rows: int | None, max_wait_ms: float | None,
                 inherit: bool, reason: str):
    """Micro-batching of NAME's versions served by scikit-learn."""
    from app.registry.runtime import set_batching as apply

    try:
        model = service.get_model(name)
        if inherit:
            max_rows = max_wait_ms = None
        else:
            max_rows = model.batch_max_rows if max_rows is None else max_rows
            max_wait_ms = model.batch_max_wait_ms if max_wait_ms is None \
                else max_wait_ms
        apply(model, max_rows, max_wait_ms, reason)
    except APIError as error:
        _fail(error)
    db.session.commit()
    effective = describe.batching_dict(model)["effective"]
    click.echo(f"{name}: micro-batching " + (
        "off" if effective is None else
        f"up to {effective['max_rows']} rows, waiting at most "
        f"{effective['max_wait_ms']:g} ms") + " for versions served by scikit-learn")


@models.command("list")
def list_models():
    """List models with their active version."""
    for model in db.session.scalars(select(MLModel).order_by(MLModel.name)):
        info = describe.model_dict(model)
        click.echo(f"{info['name']}\t{info['task']}\tactive={info['active_version']}\t"
                   f"versions={info['versions']}")


@models.command("versions")
@click.argument("name")
def list_versions(name: str):
    """List the versions of NAME."""
    try:
        model = service.get_model(name)
    except APIError as error:
        _fail(error)
    aliases = describe.aliases_of(model)
    for version in model.versions:
        info = describe.version_dict(version, aliases)
        click.echo(f"{info['version']}\t{info['status']}\t{info['format']}\t"
                   f"{info['sha256'][:12]}\t{info['estimator']}\t{info['runtime']}\t"
                   f"{info['runtime_verdict']}")


@click.command("demo")
@click.option("--url", default="http://127.0.0.1:5000", show_default=True,
              help="Where the server will answer (printed in the sign-in line).")
@with_appcontext
def demo(url: str):
    """Train a small iris classifier, register it as 'demo', print how to sign in."""
    from app.cli.demo import ensure_demo

    lines = ensure_demo(Path(current_app.instance_path), url.rstrip("/"))
    db.session.commit()
    for line in lines:
        click.echo(line)


registry = AppGroup("registry", help="Back up and restore the model registry.")
logs = AppGroup("logs", help="Maintain the request logs.")


@registry.command("export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def export_registry(path: Path):
    """Write models, versions with artifacts, aliases and history to PATH (a zip)."""
    from app.registry.backup import export_registry as export

    counts = export(path)
    click.echo(f"exported {counts['models']} models, {counts['versions']} versions "
               f"({counts['artifacts']} artifacts, {counts['onnx_graphs']} ONNX "
               f"graphs) to {path}")


@registry.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_registry(path: Path):
    """Load an export made by `registry export` into an empty registry."""
    from app.registry.backup import import_registry as load

    try:
        counts = load(path)
    except APIError as error:
        _fail(error)
    db.session.commit()
    click.echo(f"imported {counts['models']} models, {counts['versions']} versions, "
               f"{counts['activations']} activations from {path}")


@logs.command("prune")
@click.option("--days", type=click.IntRange(min=0), required=True,
              help="Keep this many days of request logs.")
def prune_logs(days: int):
    """Delete request logs older than --days days."""
    from app.observability.request_log import prune

    deleted = prune(days)
    db.session.commit()
    click.echo(f"deleted {deleted} request log rows older than {days} days")


def register(app: Flask) -> None:
    for command in (users, keys, models, demo, registry, logs):
        app.cli.add_command(command)


