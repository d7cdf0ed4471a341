"""The change counter: every worker reloads cached registry and key state when it
moves."""

from __future__ import annotations

from sqlalchemy import select, update

from app.extensions import db
from app.models import RegistryState

# Set in the session when this transaction moved the counter (read by the commit).
MOVED = "modeldock.changes_moved"


def bump() -> None:
    """Advance the counter inside the current transaction (visible at its commit)."""
    result = db.session.execute(
        update(RegistryState)
        .where(RegistryState.id == 1)
        .values(generation=RegistryState.generation + 1)
    )
    if result.rowcount == 0:
        db.session.add(RegistryState(id=1, generation=1))
        db.session.flush()
    db.session.info[MOVED] = True


def current() -> int:
    """Return the committed counter value (0 before the first change)."""
    return (
        db.session.scalar(select(RegistryState.generation).where(RegistryState.id == 1))
        or 0
    )


def moved() -> bool:
    """Whether this session moved the counter since the last call (then forget it)."""
    return db.session.info.pop(MOVED, False)
