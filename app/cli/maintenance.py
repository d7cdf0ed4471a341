"""``flask registry`` (back up and restore the model registry) and ``flask logs``."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from app.cli.helpers import committed
from app.observability.request_log import prune
from app.registry.backup import export_registry, import_registry

registry = AppGroup("registry", help="Back up and restore the model registry.")
logs = AppGroup("logs", help="Maintain the request logs.")


@registry.command("export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def export(path: Path):
    """Write models, versions with artifacts, aliases and history to PATH (a zip)."""
    counts = export_registry(path)
    click.echo(
        f"exported {counts['models']} models, {counts['versions']} versions "
        f"({counts['artifacts']} artifacts, {counts['onnx_graphs']} ONNX "
        f"graphs) to {path}"
    )


@registry.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load(path: Path):
    """Load an export made by `registry export` into an empty registry."""
    with committed():
        counts = import_registry(path)
    click.echo(
        f"imported {counts['models']} models, {counts['versions']} versions, "
        f"{counts['activations']} activations from {path}"
    )


@logs.command("prune")
@click.option(
    "--days",
    type=click.IntRange(min=0),
    required=True,
    help="Keep this many days of request logs.",
)
def prune_logs(days: int):
    """Delete request logs older than --days days."""
    with committed():
        deleted = prune(days)
    click.echo(f"deleted {deleted} request log rows older than {days} days")
