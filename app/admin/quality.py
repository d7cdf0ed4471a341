"""Feedback on the admin model page: a CSV of true labels or values for earlier
predictions (the live-quality table itself is part of the model page)."""

from __future__ import annotations

from flask import flash, redirect, url_for

from app.admin.blueprints import pages_bp as bp
from app.admin.forms import FeedbackUploadForm
from app.extensions import db
from app.monitoring import feedback
from app.serving.commit import commit
from app.web.errors import APIError


@bp.post("/models/<name>/feedback")
def upload_feedback(name: str):
    form = FeedbackUploadForm()
    back = url_for("admin_pages.versions", name=name, _anchor="live-quality")
    if not form.validate_on_submit():
        flash("Choose a CSV file of feedback to upload.", "error")
        return redirect(back)
    with form.file.data.stream as stream:
        data = stream.read()
    try:
        answer = feedback.record_csv(name, data, api_key_id=None)
    except APIError as error:
        db.session.rollback()
        flash(f"No feedback was stored: {error.message} ({error.code}).", "error")
        return redirect(back)
    commit()
    flash(
        f"Feedback for {answer['accepted']} row(s) accepted "
        "(rows reported before were left as they were).",
        "success",
    )
    return redirect(back)
