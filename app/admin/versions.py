"""Admin pages for the registry: models, versions, upload, activate, roll back, archive.

Every action calls ``app.registry.service``, which records the audit event; the view
only confirms, commits and reports.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Callable

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.admin import pages_bp as bp
from app.admin.forms import UploadForm
from app.web.errors import APIError
from app.extensions import db
from app.models import Activation, MLModel
from app.models._time import utcnow
from app.pages.forms import ConfirmForm
from app.registry import changes
from app.rollout import aliases as rollout
from app.registry import describe, service
from app.observability.reports import model_traffic

UPLOAD_FIELDS = {"name", "file", "description", "notes", "metrics"}


@bp.get("/models")
def models():
    traffic = model_traffic(utcnow() - timedelta(hours=24))
    rows = []
    for model in db.session.scalars(select(MLModel).order_by(MLModel.name)):
        count, errors = traffic.get(model.name, (0, 0))
        rows.append({**describe.model_dict(model), "requests": count, "errors": errors,
                     "error_rate": errors / count if count else None})
    return render_template("admin/models.html", models=rows)


@bp.get("/models/<name>")
def versions(name: str):
    model = service.get_model(name)
    aliases = describe.aliases_of(model)
    history = db.session.scalars(select(Activation).where(
        Activation.model_id == model.id).order_by(Activation.id.desc()).limit(20))
    return render_template(
        "admin/versions.html", model=describe.model_dict(model), aliases=aliases,
        versions=[describe.version_dict(v, aliases) for v in reversed(model.versions)],
        history=list(history), rollback_to=service.rollback_target(model),
        shadow_hours=rollout.shadow_stats(name) if "shadow" in aliases else [])


@bp.route("/upload", methods=["GET", "POST"])
def upload():
    """Upload a version; validation errors are shown next to the field they concern."""
    form = UploadForm()
    if request.method == "GET" and request.args.get("model"):
        form.name.data = request.args["model"]
    if not form.validate_on_submit():
        return render_template("admin/upload.html", form=form), \
            400 if request.method == "POST" else 200
    try:
        metrics = json.loads(form.metrics.data) if form.metrics.data else None
        if metrics is not None and not isinstance(metrics, dict):
            raise ValueError
    except ValueError:
        form.metrics.errors = ["Metrics must be a JSON object."]
        return render_template("admin/upload.html", form=form), 400
    upload_file = form.file.data
    with upload_file.stream:
        data = upload_file.read()
    try:
        version = service.upload_version(
            form.name.data.strip(), upload_file.filename or "", data,
            actor_id=current_user.id, description=form.description.data or None,
            notes=form.notes.data or "", metrics=metrics)
    except APIError as error:
        db.session.rollback()
        field = getattr(form, error.field if error.field in UPLOAD_FIELDS else "file")
        field.errors = [*field.errors, f"{error.message} ({error.code})"]
        flash("The model was not stored; see the marked field.", "error")
        return render_template("admin/upload.html", form=form), error.status
    name, number = version.model.name, version.number
    changes.commit()
    flash(f"Stored {name} version {number}. It is not active until you activate it."
          if number > 1 else f"Stored {name} version 1; it is active.", "success")
    return redirect(url_for("admin_pages.versions", name=name))


def _refused(error: APIError, back: str):
    """A registry refusal (e.g. nothing to roll back) becomes a flash message."""
    db.session.rollback()
    flash(f"Refused: {error.message}", "error")
    return redirect(back)


def confirm_action(action: Callable[[str], Any], done: Callable[[Any], str], *,
                   title: str, details: list[str], button: str, back: str,
                   danger: bool = False):
    """The confirm step every registry and rollout action page shares.

    GET shows ``title`` and ``details`` with a reason field and a CSRF token; a valid
    POST runs ``action(reason)`` (a service call that records history and audit),
    commits, flashes ``done(result)`` and goes ``back``; a refusal is flashed instead.
    """
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            result = action(form.reason.data or "")
        except APIError as error:
            return _refused(error, back)
        changes.commit()
        flash(done(result), "success")
        return redirect(back)
    return render_template("confirm.html", form=form, title=title, details=details,
                           button=button, cancel=back, danger=danger, reason=True)


def _back(name: str) -> str:
    return url_for("admin_pages.versions", name=name)


@bp.route("/models/<name>/versions/<int:number>/activate", methods=["GET", "POST"])
def activate(name: str, number: int):
    model = service.get_model(name)
    version = service.get_version(model, number)
    current = service.alias_version(model)
    return confirm_action(
        lambda reason: service.activate_version(name, number, reason),
        lambda _: f"{name} now serves version {number}.",
        title=f"Activate version {number} of {name}?", details=[
            f"Now active: version {current.number}" if current else "No active version.",
            f"Version {number}: {version.input_schema['estimator']}, "
            f"sha256 {version.sha256[:12]}",
            "Predictions switch to it on every worker within a second."],
        button=f"Activate version {number}", back=_back(name))


@bp.route("/models/<name>/rollback", methods=["GET", "POST"])
def rollback(name: str):
    current = service.alias_version(service.get_model(name))
    return confirm_action(
        lambda reason: service.rollback(name, reason),
        lambda version: f"Rolled back: {name} serves version {version.number} again.",
        title=f"Roll back {name}?", details=[
            f"Now active: version {current.number}" if current else "No active version.",
            "The version that was active before it becomes active again."],
        button="Roll back", back=_back(name), danger=True)


@bp.route("/models/<name>/versions/<int:number>/archive", methods=["GET", "POST"])
def archive(name: str, number: int):
    service.get_version(service.get_model(name), number)
    return confirm_action(
        lambda reason: service.archive_version(name, number, reason),
        lambda _: f"Version {number} of {name} archived.",
        title=f"Archive version {number} of {name}?",
        details=["It stays stored but can no longer serve or be activated."],
        button=f"Archive version {number}", back=_back(name), danger=True)
