"""The native JSON API (``/api/v1/models/...``) and the tutorial route (``POST
/predict``): parse the request, call the serving or registry service, answer JSON."""

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    request,
    stream_with_context,
    url_for,
)
from sqlalchemy import select

from app.auth.permissions import require_scope
from app.batch import jobs, storage
from app.extensions import db
from app.models import MLModel
from app.observability.request_log import record_response
from app.protocols.native.codec import (
    explain_body,
    job_body,
    native_matrix,
    response_body,
)
from app.registry import describe
from app.registry.service import get_model, get_version
from app.serving import explain, predict
from app.serving.commit import commit
from app.serving.inputs import matrix_from_rows, parse_json
from app.serving.lookups import default_model_name
from app.ui import csvio
from app.web.errors import APIError
from app.web.finite_json import json_response

bp = Blueprint("predict", __name__)
bp.after_request(record_response("native"))


def _body():
    body = parse_json(request.get_data(cache=False), request.content_type)
    g.log_payload = body  # stored only with MODELDOCK_LOG_PAYLOADS, redacted
    return body


@bp.get("/api/v1/models")
@require_scope("predict")
def list_models():
    models = db.session.scalars(select(MLModel).order_by(MLModel.name))
    return jsonify({"models": [describe.model_dict(m) for m in models]})


@bp.get("/api/v1/models/<name>")
@require_scope("predict")
def show_model(name: str):
    return jsonify(describe.model_dict(get_model(name)))


@bp.get("/api/v1/models/<name>/versions")
@require_scope("predict")
def list_versions(name: str):
    model = get_model(name)
    aliases = describe.aliases_of(model)
    return jsonify(
        {
            "model": name,
            "versions": [describe.version_dict(v, aliases) for v in model.versions],
        }
    )


@bp.get("/api/v1/models/<name>/versions/<int:number>")
@require_scope("predict")
def show_version(name: str, number: int):
    model = get_model(name)
    return jsonify(
        describe.version_dict(get_version(model, number), describe.aliases_of(model))
    )


@bp.post("/api/v1/models/<name>/predict")
@bp.post("/api/v1/models/<name>/versions/<int:number>/predict")
@require_scope("predict")
def predict_native(name: str, number: int | None = None):
    model, version = predict.resolve(name, number)
    rows = native_matrix(_body(), version.schema, predict.max_rows())
    result = predict.run(model, version, rows)
    return json_response(response_body(result, lists=False))


@bp.post("/predict")
@require_scope("predict")
def predict_tutorial():
    """The classic tutorial route: {"features": [...]} → {"prediction": [...]}."""
    g.log_protocol = "tutorial"
    body = _body()
    if not isinstance(body, dict) or "features" not in body:
        raise APIError(400, "invalid_body", 'send {"features": [...]}', "features")
    features = body["features"]
    if not isinstance(features, list):
        raise APIError(
            400,
            "invalid_body",
            "features must be a list of numbers or rows",
            "features",
        )
    model, version = predict.resolve(default_model_name())
    rows = features if features and isinstance(features[0], list) else [features]
    matrix = matrix_from_rows(rows, version.schema, "features", predict.max_rows())
    result = predict.run(model, version, matrix)
    return json_response({"prediction": result.labels})


@bp.post("/api/v1/models/<name>/explain")
@bp.post("/api/v1/models/<name>/versions/<int:number>/explain")
@require_scope("predict")
def explain_native(name: str, number: int | None = None):
    """Per-feature contributions for each row (docs/explain.md)."""
    model, version = predict.resolve(name, number)
    rows = native_matrix(_body(), version.schema, predict.max_rows())
    return json_response(explain_body(explain.run(model, version, rows)))


# --- batch jobs (app/batch): submit rows or a CSV file, poll the job, read results


def _job_owner() -> int:
    """Jobs belong to the key's user, who alone reads them back: a key is needed."""
    principal = g.get("principal")
    if principal is None:
        raise APIError(
            401,
            "unauthorized",
            "batch jobs need an API key: 'Authorization: Bearer <key>'",
            "Authorization",
        )
    return principal.user_id


def _job_links(job_id: str) -> dict[str, str]:
    results = url_for("predict.job_results", job_id=job_id)
    return {
        "self": url_for("predict.show_job", job_id=job_id),
        "results_csv": f"{results}?format=csv",
        "results_jsonl": f"{results}?format=jsonl",
    }


def _csv_upload() -> tuple[bytes, str] | None:
    """The CSV of a multipart upload (field ``file``) or a ``text/csv`` body."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise APIError(
                400, "missing_file", "send the CSV file in the field 'file'", "file"
            )
        with upload.stream:
            return upload.read(), upload.filename or "upload.csv"
    if mimetype == "text/csv":
        return request.get_data(cache=False), "upload.csv"
    return None


@bp.post("/api/v1/models/<name>/jobs")
@require_scope("predict")
def submit_job(name: str):
    """Rows as JSON (``instances`` or ``inputs``) or a CSV file → a job (202)."""
    owner = _job_owner()
    model, version = predict.resolve(name, alias="stable")
    max_rows = current_app.config["MODELDOCK_BATCH_MAX_ROWS"]
    upload = _csv_upload()
    if upload is not None:
        data, filename = upload
        parsed = csvio.read_csv(data, version.schema, max_rows)
        job = jobs.from_csv(owner, model.name, version, parsed, filename, "api")
    else:
        body = parse_json(request.get_data(cache=False), request.content_type)
        matrix = native_matrix(body, version.schema, max_rows)
        job = jobs.from_matrix(owner, model.name, version, matrix)
    g.log_rows = job.total_rows
    commit()
    jobs.start(job, owner, request.remote_addr)
    links = _job_links(job.id)
    response = json_response(job_body(job, storage.progress(job), links), 202)
    response.headers["Location"] = links["self"]
    return response


@bp.get("/api/v1/jobs/<job_id>")
@require_scope("predict")
def show_job(job_id: str):
    """A job's status and progress: rows and chunks done, redone, failed."""
    job, progress = jobs.own_job(job_id, _job_owner())
    if db.session.is_modified(job):
        commit()
    return json_response(job_body(job, progress, _job_links(job.id)))


@bp.get("/api/v1/jobs/<job_id>/results")
@require_scope("predict")
def job_results(job_id: str):
    """A finished job's predictions, streamed: ``format=csv`` (default) or
    ``jsonl``."""
    job, progress = jobs.own_job(job_id, _job_owner())
    form = request.args.get("format", "csv")
    if form not in RESULT_FORMATS:
        raise APIError(
            400, "invalid_format", "format must be 'csv' or 'jsonl'", "format"
        )
    if progress.status != "done":
        if db.session.is_modified(job):
            commit()
        raise APIError(
            409,
            "job_not_finished" if progress.status != "failed" else "job_failed",
            f"the job is {progress.status}"
            + (f": {progress.error}" if progress.error else ""),
            "job",
        )
    mimetype, export = RESULT_FORMATS[form]
    filename = f"{job.model_name}-v{job.version}-{job.id[:8]}.{form}"
    return Response(
        stream_with_context(export(job)),
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, no-store",
        },
    )


RESULT_FORMATS = {
    "csv": ("text/csv", storage.export_csv),
    "jsonl": ("application/x-ndjson", storage.export_jsonl),
}
