"""The one commit point of a request's (or a command's) changes.

Services change things and flush; views and commands call ``commit`` once at the
end, and roll back (or let the error handlers roll back) on an error, so a failed
action leaves nothing half-written. When the change moved the counter (registry,
rollouts, users or keys), this worker drops its routing snapshot and cached keys at
once; the other workers follow within ``MODELDOCK_ROUTING_REFRESH_SECONDS``.
"""

from __future__ import annotations

from app.extensions import db
from app.registry import changes
from app.serving.state import serving_state


def commit() -> None:
    """Commit the session; a moved change counter takes effect in this worker now."""
    db.session.commit()
    if changes.moved():
        serving_state().routing.invalidate()
