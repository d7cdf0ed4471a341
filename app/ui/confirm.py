"""The confirm step every confirm page shares (admin registry, rollout, user and key
pages, and the account page): GET shows what will happen, POST does it.

A valid POST runs the action (a service call that records history and audit), then
the one commit point, flashes what was done and goes back; a refusal (``APIError``)
rolls back and is flashed instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import flash, redirect, render_template
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import Length, Optional

from app.extensions import db
from app.serving.commit import commit
from app.web.errors import APIError


class ConfirmForm(FlaskForm):
    reason = StringField(
        "Reason (optional, kept in the audit log)",
        validators=[Optional(), Length(max=500)],
    )
    submit = SubmitField("Confirm")


def refused(error: APIError, back: str):
    """A refusal (e.g. nothing to roll back) becomes a flash message on ``back``."""
    db.session.rollback()
    flash(f"Refused: {error.message}", "error")
    return redirect(back)


def confirm_action(
    action: Callable[[str], Any],
    done: Callable[[Any], str],
    *,
    title: str,
    details: list[str],
    button: str,
    back: str,
    danger: bool = False,
    reason: bool = True,
):
    """GET: ``title`` and ``details``, a reason field (when ``reason``) and a CSRF
    token. Valid POST: ``action(reason)``, commit, flash ``done(result)``, go
    ``back``; a refusal is flashed instead."""
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            result = action(form.reason.data or "")
        except APIError as error:
            return refused(error, back)
        commit()
        flash(done(result), "success")
        return redirect(back)
    return render_template(
        "confirm.html",
        form=form,
        title=title,
        details=details,
        button=button,
        cancel=back,
        danger=danger,
        reason=reason,
    )
