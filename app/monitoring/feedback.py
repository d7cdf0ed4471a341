"""Ground truth for earlier predictions: by request id and row, or as labelled rows.

Idempotent per (model, request id, row): a report already stored changes nothing
and is answered the same; one that contradicts it is refused (409). The caller
commits (``app.serving.commit``).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import Feedback, ModelVersion, RequestLog
from app.models._time import utcnow
from app.observability.privacy import truncate_ip
from app.observability.request_log import compact_predictions, log_row, writer
from app.registry.service import get_model
from app.serving import predict
from app.serving.inputs import matrix_from_rows
from app.web.errors import APIError

Item = tuple[str, int, Any, float | None]  # request id, row, label, value


def record(
    name: str,
    body: Any,
    *,
    request_id: str,
    api_key_id: int | None,
    remote_addr: str | None = None,
) -> dict[str, Any]:
    """Store the feedback in ``body`` (either shape) for model ``name``."""
    model = get_model(name)
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", "the body must be a JSON object", "body")
    if "instances" in body:
        return _record_rows(model, body, request_id, api_key_id, remote_addr)
    items = body["feedback"] if "feedback" in body else [body]
    if not isinstance(items, list) or not items:
        raise APIError(
            400, "invalid_body", "feedback must be a non-empty list", "feedback"
        )
    return record_items(name, model.task, items, api_key_id)


def record_items(
    name: str,
    task: str,
    items: list,
    api_key_id: int | None,
    text_labels: bool = False,
) -> dict[str, Any]:
    """Store feedback given by request id (+ row) for ``name`` (``text_labels``:
    labels read from a CSV file, matched to the classes by their text)."""
    _check_count(len(items), "feedback")
    parsed = [_parse_item(item, task) for item in items]
    logs = _logged(name, {item[0] for item in parsed})
    classes = _classes(name, {log.version for log in logs.values()})
    checked = []
    for request_id, row, label, value in parsed:
        log = logs.get(request_id)
        if log is None:
            raise APIError(
                404,
                "unknown_request",
                f"no logged prediction of '{name}' answered request id "
                f"'{request_id}' (feedback is accepted once the request log is "
                "written, within seconds)",
                "request_id",
            )
        kept = (log.predictions or {}).get("y") or []
        if row >= max(log.rows, len(kept)):
            raise APIError(
                404,
                "unknown_row",
                f"request '{request_id}' predicted {log.rows} row(s); there is no "
                f"row {row}",
                "row",
            )
        if row >= len(kept):
            raise APIError(
                409,
                "prediction_not_logged",
                f"the prediction of row {row} was not kept in the request log "
                "(MODELDOCK_LOG_PREDICTION_ROWS)",
                "row",
            )
        if task == "classification":
            label = _class_of(label, classes.get(log.version) or [], text_labels)
        checked.append((request_id, row, label, value))
    _store(name, checked, api_key_id)
    return {"model": name, "accepted": len(items)}


def _check_count(count: int, field: str) -> None:
    limit = current_app.config["MODELDOCK_MAX_BATCH_ROWS"]
    if count > limit:
        raise APIError(
            413, "too_many_rows", f"send at most {limit} feedback rows at once", field
        )


def _parse_item(item: Any, task: str) -> Item:
    """One ``{"request_id", "row", "label" | "value"}`` entry, type-checked."""
    if not isinstance(item, dict):
        raise APIError(422, "invalid_feedback", "each entry must be an object", "body")
    request_id = item.get("request_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 64:
        raise APIError(
            422,
            "invalid_feedback",
            "request_id must be the request id a prediction answered with",
            "request_id",
        )
    row = item.get("row", 0)
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        raise APIError(422, "invalid_feedback", "row must be an integer ≥ 0", "row")
    label, value = _truth(item.get("label"), item.get("value"), task)
    return request_id, row, label, value


def _truth(label: Any, value: Any, task: str) -> tuple[Any, float | None]:
    """(label, None) for classifiers, (None, value) for regressors; else 422."""
    if task == "classification":
        if label is None or isinstance(label, (dict, list)):
            raise APIError(
                422,
                "invalid_feedback",
                "a classifier's feedback needs 'label': one of its classes",
                "label",
            )
        return label, None
    if task == "regression":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise APIError(
                422,
                "invalid_feedback",
                "a regressor's feedback needs 'value': a finite number",
                "value",
            )
        return None, float(value)
    raise APIError(
        422,
        "unsupported_task",
        "feedback is kept for classifiers and regressors only",
        "model",
    )


def _class_of(label: Any, classes: list, text: bool = False) -> Any:
    """The model's own class equal to ``label`` (so the join compares like with
    like), else 422."""
    for known in classes:
        if text and str(known) == label:
            return known
        if known == label and isinstance(known, str) == isinstance(label, str):
            return known
    raise APIError(
        422,
        "invalid_feedback",
        f"label {label!r} is not one of the model's classes {classes[:20]}",
        "label",
    )


def _logged(name: str, request_ids: set[str]) -> dict[str, RequestLog]:
    """The answered request logs of ``name`` by request id (the latest of a
    repeated id); flushes this worker's queue once when some are missing."""
    found = _select_logs(name, request_ids)
    if len(found) < len(request_ids):
        writer().flush()
        found = _select_logs(name, request_ids)
    return found


def _select_logs(name: str, request_ids: set[str]) -> dict[str, RequestLog]:
    found: dict[str, RequestLog] = {}
    ids = sorted(request_ids)
    for start in range(0, len(ids), 500):
        for log in db.session.scalars(
            select(RequestLog)
            .where(
                RequestLog.model_name == name,
                RequestLog.request_id.in_(ids[start : start + 500]),
                RequestLog.status_code == 200,
            )
            .order_by(RequestLog.id)
        ):
            found[log.request_id] = log
    return found


def _classes(name: str, numbers: set[int | None]) -> dict[int, list]:
    """Each version's classes, from its schema."""
    model = get_model(name)
    versions = db.session.scalars(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.number.in_(numbers)
        )
    )
    return {v.number: list(v.input_schema.get("classes") or []) for v in versions}


def _store(name: str, items: list[Item], api_key_id: int | None) -> None:
    """Insert the new reports; refuse (409) any that contradicts a stored one."""
    wanted: dict[tuple[str, int], tuple[Any, float | None]] = {}
    for request_id, row, label, value in items:
        previous = wanted.setdefault((request_id, row), (label, value))
        if previous != (label, value):
            _conflict(request_id, row)
    request_ids = sorted({key[0] for key in wanted})
    for start in range(0, len(request_ids), 500):
        for stored in db.session.scalars(
            select(Feedback).where(
                Feedback.model_name == name,
                Feedback.request_id.in_(request_ids[start : start + 500]),
            )
        ):
            key = (stored.request_id, stored.row)
            if key in wanted:
                if wanted.pop(key) != (stored.label, stored.value):
                    _conflict(*key)
    if not wanted:
        return
    now = utcnow()
    rows = [
        {
            "created_at": now,
            "model_name": name,
            "request_id": request_id,
            "row": row,
            "label": label,
            "value": value,
            "api_key_id": api_key_id,
        }
        for (request_id, row), (label, value) in wanted.items()
    ]
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # A concurrent identical report may have landed since the read: not an error.
    db.session.execute(insert(Feedback).on_conflict_do_nothing(), rows)
    db.session.flush()


def _conflict(request_id: str, row: int) -> None:
    raise APIError(
        409,
        "feedback_conflict",
        f"row {row} of request '{request_id}' already has different feedback "
        "(feedback is never overwritten)",
        "label",
    )


def _record_rows(
    model, body: dict, request_id: str, api_key_id: int | None, remote_addr
) -> dict[str, Any]:
    """Labelled rows: predict them now with the version that serves, log that
    prediction under this request's id and store the truths against it."""
    field = "labels" if model.task == "classification" else "values"
    truths = body.get(field)
    if not isinstance(truths, list):
        raise APIError(
            422,
            "invalid_feedback",
            f"send the true {field} of the instances as '{field}': a list",
            field,
        )
    answer = {"model": model.name, "accepted": len(truths), "request_id": request_id}
    items = [
        (request_id, row, *_truth(t, t, model.task)) for row, t in enumerate(truths)
    ]
    if db.session.scalar(
        select(Feedback.id).where(
            Feedback.model_name == model.name, Feedback.request_id == request_id
        )
    ):  # a repeat of this request (same X-Request-ID): no second prediction
        _store(model.name, items, api_key_id)
        return answer
    served_model, version = predict.resolve(model.name)
    limit = current_app.config["MODELDOCK_MAX_BATCH_ROWS"]
    matrix = matrix_from_rows(body["instances"], version.schema, "instances", limit)
    if len(matrix) != len(truths):
        raise APIError(
            422,
            "invalid_feedback",
            f"{len(truths)} {field} for {len(matrix)} instances",
            field,
        )
    result = predict.run(served_model, version, matrix)
    if result.classes is not None:
        items = [
            (r, i, _class_of(label, result.classes), v) for r, i, label, v in items
        ]
    db.session.add(
        RequestLog(
            **log_row(
                request_id=request_id,
                protocol="feedback",
                model_name=model.name,
                version=version.number,
                status_code=200,
                latency_ms=0.0,
                remote_addr=truncate_ip(remote_addr),
                rows=len(matrix),
                api_key_id=api_key_id,
                predictions=compact_predictions((result.labels, result.probabilities)),
            )
        )
    )
    _store(model.name, items, api_key_id)
    return answer


def record_csv(name: str, data: bytes, api_key_id: int | None) -> dict[str, Any]:
    """Feedback from a CSV file with a header: ``request_id``, optional ``row``,
    and ``label`` (classifiers) or ``value`` (regressors)."""
    model = get_model(name)
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        records = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise APIError(
            400, "invalid_csv", f"not a UTF-8 CSV file: {error}", "file"
        ) from error
    truth = "label" if model.task == "classification" else "value"
    header = [h.strip() for h in reader.fieldnames or []]
    if "request_id" not in header or truth not in header:
        raise APIError(
            400,
            "invalid_csv",
            f"the header must name request_id, {truth} and optionally row",
            "file",
        )
    if not records:
        raise APIError(400, "empty_batch", "the file has no rows", "file")
    items = []
    for line, record in enumerate(records, start=2):
        record = {(k or "").strip(): (v or "").strip() for k, v in record.items()}
        try:
            row = int(record.get("row") or 0)
            value = float(record[truth]) if truth == "value" else record[truth]
        except ValueError:
            raise APIError(
                422,
                "invalid_feedback",
                f"line {line}: row must be an integer and value a number",
                truth,
            ) from None
        items.append({"request_id": record["request_id"], "row": row, truth: value})
    return record_items(name, model.task, items, api_key_id, text_labels=True)
