"""What every command shares: refusals as command errors, and the one commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from app.serving.commit import commit
from app.web.bounds import MAX_ID
from app.web.errors import APIError

# Version numbers as the database stores them (a larger one names nothing).
VERSION_NUMBER = click.IntRange(1, MAX_ID)


@contextmanager
def refusals() -> Iterator[None]:
    """An APIError raised inside ends the command with its code and message."""
    try:
        yield
    except APIError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from error


@contextmanager
def committed() -> Iterator[None]:
    """Run one change: an APIError ends the command with its message; else commit."""
    with refusals():
        yield
    commit()
