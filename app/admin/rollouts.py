"""Admin pages for rollouts: canary (weight), promote, end canary, shadow and its
report; the runtime (onnxruntime or scikit-learn) that serves a version and a model's
micro-batching.

Every action calls ``app.rollout``, which records history and the audit event; the
view confirms (``app.ui.confirm``), commits and reports, like the other registry
pages.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request

from app.admin.blueprints import pages_bp as bp
from app.admin.forms import BatchingForm, CanaryForm, RuntimeForm
from app.admin.versions import model_page
from app.registry import describe, service
from app.registry.runtime import effective_runtime
from app.rollout import aliases, runtime_settings
from app.serving.commit import commit
from app.ui.confirm import confirm_action, refused
from app.web.errors import APIError


@bp.route("/models/<name>/versions/<int:number>/canary", methods=["GET", "POST"])
def canary(name: str, number: int):
    model = service.get_model(name)
    service.get_version(model, number)
    form = CanaryForm()
    if form.validate_on_submit():
        try:
            aliases.set_canary(name, number, form.weight.data, form.reason.data or "")
        except APIError as error:
            return refused(error, model_page(name))
        commit()
        flash(
            f"Version {number} of {name} is the canary for {form.weight.data} % "
            "of clients.",
            "success",
        )
        return redirect(model_page(name))
    stable = describe.model_dict(model)["active_version"]
    return render_template(
        "admin/canary.html",
        form=form,
        name=name,
        number=number,
        stable=stable,
        cancel=model_page(name),
    ), 400 if form.errors else 200


@bp.route("/models/<name>/canary/promote", methods=["GET", "POST"])
def promote(name: str):
    pointers = describe.aliases_of(service.get_model(name))
    canary_version = pointers.get("canary", {}).get("version")
    return confirm_action(
        lambda reason: aliases.promote_canary(name, reason),
        lambda number: f"Promoted: {name} serves version {number} to everyone.",
        title=f"Promote the canary of {name}?",
        details=[
            f"Canary: version {canary_version}"
            if canary_version
            else "No canary is set.",
            f"Stable now: version {pointers.get('stable', {}).get('version')}",
            "The canary becomes the stable version for every client; the canary ends.",
        ],
        button="Promote canary",
        back=model_page(name),
    )


@bp.route(
    "/models/<name>/canary/end", methods=["GET", "POST"], defaults={"alias": "canary"}
)
@bp.route(
    "/models/<name>/shadow/end", methods=["GET", "POST"], defaults={"alias": "shadow"}
)
def end(name: str, alias: str):
    service.get_model(name)
    what = (
        "All clients go back to the stable version."
        if alias == "canary"
        else "Stable traffic is no longer copied to the shadow version."
    )
    return confirm_action(
        lambda reason: aliases.clear_alias(name, alias, reason),
        lambda _: f"The {alias} of {name} has ended.",
        title=f"End the {alias} of {name}?",
        details=[what],
        button=f"End {alias}",
        back=model_page(name),
        danger=True,
    )


@bp.route("/models/<name>/versions/<int:number>/shadow", methods=["GET", "POST"])
def shadow(name: str, number: int):
    service.get_version(service.get_model(name), number)
    return confirm_action(
        lambda reason: aliases.set_shadow(name, number, reason),
        lambda _: f"Version {number} of {name} now shadows the stable version.",
        title=f"Shadow version {number} of {name}?",
        details=[
            "It answers a copy of every stable request after the response is sent; "
            "callers never see its answers.",
            "Agreement with the stable version is reported per hour on the model page.",
        ],
        button=f"Shadow version {number}",
        back=model_page(name),
    )


@bp.route("/models/<name>/versions/<int:number>/runtime", methods=["GET", "POST"])
def runtime(name: str, number: int):
    model = service.get_model(name)
    version = service.get_version(model, number)
    form = RuntimeForm()
    if request.method == "GET":
        form.runtime.data = version.runtime
    if form.validate_on_submit():
        try:
            runtime_settings.set_runtime(
                version, form.runtime.data, form.reason.data or ""
            )
        except APIError as error:
            return refused(error, model_page(name))
        commit()
        flash(
            f"Version {number} of {name} is served by "
            f"{effective_runtime(version)} ({form.runtime.data}).",
            "success",
        )
        return redirect(model_page(name))
    return render_template(
        "admin/runtime.html",
        form=form,
        name=name,
        number=number,
        version=describe.version_dict(version, describe.aliases_of(model)),
        cancel=model_page(name),
    ), 400 if form.errors else 200


@bp.route("/models/<name>/batching", methods=["GET", "POST"])
def batching(name: str):
    model = service.get_model(name)
    form = BatchingForm()
    if request.method == "GET":
        form.max_rows.data = model.batch_max_rows
        form.max_wait_ms.data = model.batch_max_wait_ms
    if form.validate_on_submit():
        runtime_settings.set_batching(
            model, form.max_rows.data, form.max_wait_ms.data, form.reason.data or ""
        )
        commit()
        effective = describe.batching_dict(model)["effective"]
        flash(
            f"Micro-batching of {name}: "
            + (
                "off."
                if effective is None
                else f"up to {effective['max_rows']} rows, at most "
                f"{effective['max_wait_ms']:g} ms wait."
            ),
            "success",
        )
        return redirect(model_page(name))
    return render_template(
        "admin/batching.html",
        form=form,
        name=name,
        batching=describe.batching_dict(model),
        cancel=model_page(name),
    ), 400 if form.errors else 200
