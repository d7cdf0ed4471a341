"""Operator commands (``flask ...``), one group per noun, registered by the factory:
users and keys, models, registry backups, request logs, and ``demo``."""

from flask import Flask

from app.cli.demo import demo_command
from app.cli.maintenance import logs, registry
from app.cli.models import models
from app.cli.users import keys, users


def register(app: Flask) -> None:
    """Add every command group to ``app.cli``."""
    for command in (users, keys, models, demo_command, registry, logs):
        app.cli.add_command(command)
