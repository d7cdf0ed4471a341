"""``flask models``: upload, activate, list, and how versions are served."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.cli.helpers import VERSION_NUMBER, committed, refusals
from app.extensions import db
from app.models import MLModel
from app.registry import describe, service
from app.registry.runtime import effective_runtime
from app.rollout import aliases, runtime_settings, versions

models = AppGroup("models", help="Manage models and versions.")


@models.command("upload")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--description", default=None)
@click.option("--notes", default="")
@click.option("--activate", is_flag=True, help="Make the new version active.")
def upload(name: str, path: Path, description, notes: str, activate: bool):
    """Validate the model file at PATH and store it as NAME's next version."""
    with committed():
        version = versions.upload_version(
            name, path.name, path.read_bytes(), description=description, notes=notes
        )
        if activate:
            aliases.set_alias(version.model, version, "stable", reason="cli upload")
    click.echo(f"{name} version {version.number} stored (sha256 {version.sha256[:12]})")


@models.command("activate")
@click.argument("name")
@click.argument("number", type=VERSION_NUMBER)
@click.option("--reason", default="")
def activate(name: str, number: int, reason: str):
    """Make version NUMBER of NAME the active (stable) version."""
    with committed():
        versions.activate_version(name, number, reason)
    click.echo(f"{name} now serves version {number}")


@models.command("runtime")
@click.argument("name")
@click.argument("number", type=VERSION_NUMBER)
@click.argument("runtime", type=click.Choice(["auto", "onnx", "sklearn"]))
@click.option("--reason", default="")
def set_runtime(name: str, number: int, runtime: str, reason: str):
    """Serve version NUMBER of NAME with RUNTIME (auto: ONNX when verified)."""
    with committed():
        version = runtime_settings.set_runtime(
            service.get_version(service.get_model(name), number), runtime, reason
        )
    click.echo(
        f"{name} version {number} is served by {effective_runtime(version)} "
        f"(setting {runtime}, verdict {version.runtime_verdict})"
    )


@models.command("timeout")
@click.argument("name")
@click.argument("seconds", type=float, required=False)
@click.option(
    "--inherit",
    is_flag=True,
    help="Drop the model's own deadline: the deployment's applies.",
)
@click.option("--reason", default="")
def set_timeout(name: str, seconds: float | None, inherit: bool, reason: str):
    """Deadline in SECONDS of one prediction of NAME."""
    if seconds is None and not inherit:
        raise click.UsageError("give SECONDS or --inherit")
    with committed():
        model = runtime_settings.set_timeout(
            service.get_model(name), None if inherit else seconds, reason
        )
    click.echo(
        f"{name}: predictions stop after "
        f"{describe.model_dict(model)['timeout']['effective']:g} s"
    )


@models.command("batching")
@click.argument("name")
@click.option(
    "--max-rows",
    type=int,
    default=None,
    help="Most rows per batched predict call; 0 turns batching off.",
)
@click.option(
    "--max-wait-ms",
    type=float,
    default=None,
    help="Longest a request waits for others to join its batch.",
)
@click.option(
    "--inherit",
    is_flag=True,
    help="Drop the model's own settings: the deployment's apply.",
)
@click.option("--reason", default="")
def set_batching(
    name: str,
    max_rows: int | None,
    max_wait_ms: float | None,
    inherit: bool,
    reason: str,
):
    """Micro-batching of NAME's versions served by scikit-learn."""
    with committed():
        model = service.get_model(name)
        if inherit:
            max_rows = max_wait_ms = None
        else:
            max_rows = model.batch_max_rows if max_rows is None else max_rows
            max_wait_ms = (
                model.batch_max_wait_ms if max_wait_ms is None else max_wait_ms
            )
        runtime_settings.set_batching(model, max_rows, max_wait_ms, reason)
    effective = describe.batching_dict(model)["effective"]
    click.echo(
        f"{name}: micro-batching "
        + (
            "off"
            if effective is None
            else f"up to {effective['max_rows']} rows, waiting at most "
            f"{effective['max_wait_ms']:g} ms"
        )
        + " for versions served by scikit-learn"
    )


@models.command("list")
def list_models():
    """List models with their active version."""
    for model in db.session.scalars(select(MLModel).order_by(MLModel.name)):
        info = describe.model_dict(model)
        click.echo(
            f"{info['name']}\t{info['task']}\tactive={info['active_version']}\t"
            f"versions={info['versions']}"
        )


@models.command("versions")
@click.argument("name")
def list_versions(name: str):
    """List the versions of NAME."""
    with refusals():
        model = service.get_model(name)
    pointers = describe.aliases_of(model)
    for version in model.versions:
        info = describe.version_dict(version, pointers)
        click.echo(
            f"{info['version']}\t{info['status']}\t{info['format']}\t"
            f"{info['sha256'][:12]}\t{info['estimator']}\t{info['runtime']}\t"
            f"{info['runtime_verdict']}"
        )
