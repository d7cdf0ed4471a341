"""Thin views for predicting in the browser: pick a model, fill a form or send a CSV
(predicted by a background job, whose progress and results have pages too)."""

from __future__ import annotations

from flask import (
    Response,
    abort,
    after_this_request,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy import select

from app.batch import jobs, storage
from app.extensions import db
from app.models import MLModel
from app.observability.request_log import record_response
from app.pages.blueprint import bp
from app.pages.forms import CSVForm, feature_form
from app.registry import describe
from app.serving import explain, predict
from app.serving.commit import commit
from app.ui import charts, csvio
from app.web.errors import APIError
from app.web.paging import Page, page_number

RESULT_ROWS_PER_PAGE = 50


@bp.get("/")
@login_required
def index():
    models = db.session.scalars(select(MLModel).order_by(MLModel.name))
    return render_template(
        "pages/index.html", models=[describe.model_dict(m) for m in models]
    )


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever a page links; pages link favicon.svg."""
    return current_app.send_static_file("favicon.ico")


@bp.get("/choose")
@login_required
def choose():
    """The model picker (a GET form, so it works without JavaScript)."""
    name = request.args.get("model", "")
    return redirect(
        url_for("pages.predict_page", name=name) if name else url_for("pages.index")
    )


def _page(
    name: str,
    form=None,
    csv_form=None,
    result=None,
    status: int = 200,
    csv_error: str | None = None,
):
    model, version = predict.resolve(name, alias="stable")
    schema = version.schema
    form = form or feature_form(schema["feature_names"])
    models = list(db.session.scalars(select(MLModel.name).order_by(MLModel.name)))
    return render_template(
        "pages/predict.html",
        model=model,
        version=version,
        schema=schema,
        form=form,
        csv_form=csv_form or CSVForm(),
        result=result,
        models=models,
        csv_error=csv_error,
        max_rows=current_app.config["MODELDOCK_CSV_MAX_ROWS"],
        fields=[form[f"f{i}"] for i in range(len(schema["feature_names"]))],
    ), status


@bp.get("/models/<name>")
@login_required
def predict_page(name: str):
    return _page(name)


@bp.post("/models/<name>")
@login_required
def predict_form(name: str):
    """Predict the one row typed into the form; errors are shown next to the field."""
    return _form_result(name)


@bp.post("/models/<name>/explain")
@login_required
def explain_form(name: str):
    """The result's "why?" link: the same row, predicted and explained."""
    return _form_result(name, with_explanation=True)


def _form_result(name: str, with_explanation: bool = False):
    after_this_request(record_response("web"))
    model, version = predict.resolve(name, alias="stable")
    form = feature_form(version.schema["feature_names"])
    if not form.validate_on_submit():
        return _page(name, form=form, status=400)
    values = [form[f"f{i}"].data for i in range(len(version.schema["feature_names"]))]
    try:
        matrix = csvio.row_from_text(values, version.schema, predict.max_rows())
        result = predict.run(model, version, matrix)
    except APIError as error:
        g.log_error_code = error.code
        messages = getattr(error, "messages", {csvio.field_index(error): error.message})
        for index, message in messages.items():
            target = form[f"f{index}"] if index is not None else form.submit
            target.errors = [*target.errors, message]
        flash(
            "The row could not be predicted; see the marked "
            f"{'fields' if len(messages) > 1 else 'field'}.",
            "error",
        )
        return _page(name, form=form, status=error.status)
    probabilities = None
    chart = None
    if result.probabilities is not None and result.classes is not None:
        probabilities = list(
            zip(result.classes, result.probabilities[0].tolist(), strict=True)
        )
        chart = charts.bar_chart(
            [str(c) for c in result.classes],
            {"probability": result.probabilities[0].tolist()},
            "Class probabilities",
            lambda v: f"{v:.3f}",
        )
    label = result.labels.tolist()[0]
    explanation = None
    if with_explanation:
        try:
            explained = explain.run(model, version, matrix).result
            explanation = _explanation_view(explained, matrix[0].tolist(), label)
        except APIError as error:
            g.log_error_code = error.code
            explanation = {"error": error.message}
    return _page(
        name,
        form=form,
        result={
            "label": label,
            "probabilities": probabilities,
            "chart": chart,
            "version": version.number,
            "explanation": explanation,
        },
    )


def _explanation_view(explained, row: list[float], label) -> dict:
    """The contributions to show: for the predicted class where there is one."""
    k = 0
    if label in explained.outputs:
        k = explained.outputs.index(label)
    contributions = explained.contributions[0, k].tolist()
    shown = explained.outputs[k]
    output = f"{explained.explained.replace('_', ' ')}"
    if shown != "prediction":
        output += f" of class {shown}"
    values = row if explained.mapped else [None] * len(contributions)
    return {
        "output": output,
        "method": explained.method,
        "mapped": explained.mapped,
        "base": float(explained.base[0, k]),
        "total": float(explained.output[0, k]),
        "rows": list(zip(explained.features, values, contributions, strict=True)),
        "chart": charts.signed_bars(
            explained.features, contributions, f"Contributions to the {output}"
        ),
    }


@bp.post("/models/<name>/csv")
@login_required
def predict_csv(name: str):
    """Check the CSV's header and size now; predict its rows in a background job."""
    model, version = predict.resolve(name, alias="stable")
    form = CSVForm()
    if not form.validate_on_submit():
        return _page(name, csv_form=form, status=400)
    upload = form.file.data
    with upload.stream:
        data = upload.read()
    try:
        parsed = csvio.read_csv(
            data, version.schema, current_app.config["MODELDOCK_CSV_MAX_ROWS"]
        )
    except APIError as error:
        form.file.errors = [error.message]
        return _page(name, csv_form=form, status=error.status, csv_error=error.message)
    job = jobs.from_csv(
        current_user.id,
        model.name,
        version,
        parsed,
        upload.filename or "upload.csv",
        "web-csv",
    )
    commit()
    thread = jobs.start(job, current_user.id, request.remote_addr)
    if thread is not None:  # in-process: small files finish while we wait
        thread.join(current_app.config["MODELDOCK_CSV_WAIT_SECONDS"])
    return redirect(url_for("pages.job", job_id=job.id))


def _own_job(job_id: str):
    """The signed-in user's job and its progress; a job whose worker died is marked
    failed (committed)."""
    record, progress = jobs.own_job(job_id, current_user.id)
    if db.session.is_modified(record):
        commit()
    return record, progress


@bp.get("/jobs/<job_id>")
@login_required
def job(job_id: str):
    """Progress while the job runs (the page refreshes itself), results when done."""
    record, progress = _own_job(job_id)
    if progress.status != "done":
        return render_template("pages/job_progress.html", job=record, progress=progress)
    page = Page([], page_number(), RESULT_ROWS_PER_PAGE, record.total_rows)
    page.number = min(page.number, page.pages)
    page.items = storage.read_rows(record, page.offset, page.per_page)
    summary = storage.summary(record)
    if db.session.is_modified(record):
        commit()
    data = summary["chart"]
    if data["kind"] == "counts":
        chart = charts.bar_chart(
            data["labels"], {"rows": data["values"]}, "Rows per predicted class"
        )
    else:
        chart = charts.histogram(
            data["edges"], data["values"], "Histogram of predicted values"
        )
    return render_template(
        "pages/job_result.html",
        job=record,
        progress=progress,
        page=page,
        columns=summary["columns"],
        chart=chart,
        data=data,
    )


@bp.get("/jobs/<job_id>/download")
@login_required
def job_download(job_id: str):
    record, progress = _own_job(job_id)
    if progress.status != "done":
        abort(409, "The job has not finished.")
    filename = f"{record.model_name}-v{record.version}-predictions.csv"
    return Response(
        stream_with_context(storage.export_csv(record)),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, no-store",
        },
    )
