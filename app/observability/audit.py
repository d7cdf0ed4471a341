"""The audit trail: one call records who did what, to what, from where."""

from __future__ import annotations

from typing import Any

from flask import g, has_request_context, request

from app.extensions import db
from app.models import AuditEvent


def actor_label() -> str:
    """Name the actor of the current request, or the CLI outside a request."""
    if has_request_context():
        principal = getattr(g, "principal", None)
        if principal is not None:
            return principal.label
        return "anonymous"
    return "cli"


def record(
    action: str, target: str, details: dict[str, Any] | None = None, reason: str = ""
) -> AuditEvent:
    """Add an audit event to the current transaction."""
    event = AuditEvent(
        actor=actor_label(),
        action=action,
        target=target,
        details=details or {},
        remote_addr=request.remote_addr if has_request_context() else None,
        reason=reason or "",
    )
    db.session.add(event)
    return event
