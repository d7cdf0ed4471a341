"""Admin pages for models and their versions: list, upload, activate, roll back,
archive.

Every action calls a service (``app.rollout.versions``, ``app.registry.service``),
which records the audit event; the view only confirms (``app.ui.confirm``), commits
and reports.
"""

from __future__ import annotations

import json
from datetime import timedelta

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.admin.blueprints import pages_bp as bp
from app.admin.drift import panel as drift_panel
from app.admin.forms import FeedbackUploadForm, UploadForm
from app.extensions import db
from app.models import Activation, MLModel
from app.models._time import utcnow
from app.monitoring import quality
from app.observability.reports import model_traffic
from app.registry import describe, service
from app.rollout import history as rollout_history
from app.rollout import versions as rollout_versions
from app.serving.commit import commit
from app.ui.confirm import confirm_action
from app.web.errors import APIError

UPLOAD_FIELDS = {"name", "file", "description", "notes", "metrics", "reference"}


@bp.get("/models")
def models():
    traffic = model_traffic(utcnow() - timedelta(hours=24))
    rows = []
    for model in db.session.scalars(select(MLModel).order_by(MLModel.name)):
        count, errors = traffic.get(model.name, (0, 0))
        rows.append(
            {
                **describe.model_dict(model),
                "requests": count,
                "errors": errors,
                "error_rate": errors / count if count else None,
            }
        )
    return render_template("admin/models.html", models=rows)


@bp.get("/models/<name>")
def versions(name: str):
    model = service.get_model(name)
    aliases = describe.aliases_of(model)
    history = db.session.scalars(
        select(Activation)
        .where(Activation.model_id == model.id)
        .order_by(Activation.id.desc())
        .limit(20)
    )
    return render_template(
        "admin/versions.html",
        model=describe.model_dict(model),
        aliases=aliases,
        versions=[
            describe.version_dict(v, aliases) | {"created_at": v.created_at}
            for v in reversed(model.versions)
        ],  # a datetime, for the |when filter
        history=list(history),
        rollback_to=service.rollback_target(model),
        shadow_hours=rollout_history.shadow_hours(name) if "shadow" in aliases else [],
        quality=quality.report(name, request.args.get("window", "hour")),
        feedback_form=FeedbackUploadForm(),
        drift=drift_panel(name, request.args.get("drift", "day"), aliases),
    )


@bp.route("/upload", methods=["GET", "POST"])
def upload():
    """Upload a version; validation errors are shown next to the field they concern."""
    form = UploadForm()
    if request.method == "GET" and request.args.get("model"):
        form.name.data = request.args["model"]
    if not form.validate_on_submit():
        return render_template(
            "admin/upload.html", form=form
        ), 400 if request.method == "POST" else 200
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
    reference = form.reference.data
    reference_csv = reference.read() if reference and reference.filename else None
    try:
        version = rollout_versions.upload_version(
            form.name.data.strip(),
            upload_file.filename or "",
            data,
            actor_id=current_user.id,
            description=form.description.data or None,
            notes=form.notes.data or "",
            metrics=metrics,
            reference=reference_csv,
        )
    except APIError as error:
        db.session.rollback()
        field = getattr(form, error.field if error.field in UPLOAD_FIELDS else "file")
        field.errors = [*field.errors, f"{error.message} ({error.code})"]
        flash("The model was not stored; see the marked field.", "error")
        return render_template("admin/upload.html", form=form), error.status
    name, number = version.model.name, version.number
    commit()
    flash(
        f"Stored {name} version {number}. It is not active until you activate it."
        if number > 1
        else f"Stored {name} version 1; it is active.",
        "success",
    )
    return redirect(url_for("admin_pages.versions", name=name))


def model_page(name: str) -> str:
    """The model's page, where its actions go back to."""
    return url_for("admin_pages.versions", name=name)


@bp.route("/models/<name>/versions/<int:number>/activate", methods=["GET", "POST"])
def activate(name: str, number: int):
    model = service.get_model(name)
    version = service.get_version(model, number)
    current = service.alias_version(model)
    return confirm_action(
        lambda reason: rollout_versions.activate_version(name, number, reason),
        lambda _: f"{name} now serves version {number}.",
        title=f"Activate version {number} of {name}?",
        details=[
            f"Now active: version {current.number}"
            if current
            else "No active version.",
            f"Version {number}: {version.input_schema['estimator']}, "
            f"sha256 {version.sha256[:12]}",
            "Predictions switch to it on every worker within a second.",
        ],
        button=f"Activate version {number}",
        back=model_page(name),
    )


@bp.route("/models/<name>/rollback", methods=["GET", "POST"])
def rollback(name: str):
    current = service.alias_version(service.get_model(name))
    return confirm_action(
        lambda reason: rollout_versions.rollback(name, reason),
        lambda version: f"Rolled back: {name} serves version {version.number} again.",
        title=f"Roll back {name}?",
        details=[
            f"Now active: version {current.number}"
            if current
            else "No active version.",
            "The version that was active before it becomes active again.",
        ],
        button="Roll back",
        back=model_page(name),
        danger=True,
    )


@bp.route("/models/<name>/versions/<int:number>/archive", methods=["GET", "POST"])
def archive(name: str, number: int):
    service.get_version(service.get_model(name), number)
    return confirm_action(
        lambda reason: service.archive_version(name, number, reason),
        lambda _: f"Version {number} of {name} archived.",
        title=f"Archive version {number} of {name}?",
        details=["It stays stored but can no longer serve or be activated."],
        button=f"Archive version {number}",
        back=model_page(name),
        danger=True,
    )
