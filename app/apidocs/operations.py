"""Every API route's operation, keyed by its Flask rule and method.

tests/test_openapi.py fails when an API route of ``app.url_map`` is missing here or
an entry here names no route, so add an entry with each new API route. Browser pages
(routes outside the API paths of ``app.web.paths``) are documented from the URL map
by ``page_operation``.
"""

from __future__ import annotations

from app.apidocs.schemas import ref

JSON, HTML = "application/json", "text/html"
PUBLIC: list = []  # security requirement of routes that need no credentials


def body(schema: str, media: str = JSON, required: bool = True) -> dict:
    return {"required": required, "content": {media: {"schema": ref(schema)}}}


def reply(
    description: str,
    schema: dict | str | None = None,
    media: str = JSON,
    **headers: str,
) -> dict:
    response: dict = {"description": description}
    if schema is not None:
        response["content"] = {
            media: {"schema": ref(schema) if isinstance(schema, str) else schema}
        }
    if headers:
        response["headers"] = {
            name.replace("_", "-"): {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return response


def errors(family: str, *statuses: int) -> dict:
    return {str(s): {"$ref": f"#/components/responses/{family}{s}"} for s in statuses}


HTML_PAGE = {"content": {HTML: {"schema": {"type": "string"}}}}
HTML_OR_JSON_ERROR = {
    "description": "Error page (JSON when the client asks for it).",
    "content": {HTML: {"schema": {"type": "string"}}, JSON: {"schema": ref("Error")}},
}
REDIRECT = {
    "description": "Redirect (to the sign-in page, or after signing in/out).",
    "headers": {"Location": {"schema": {"type": "string"}}},
}

# Statuses every key-protected route can answer besides its own.
AUTH = (400, 401, 403, 429)


def op(
    tag: str,
    summary: str,
    responses: dict,
    *,
    description: str = "",
    request: dict | None = None,
    security: list | None = None,
    parameters: list | None = None,
) -> dict:
    operation = {"tags": [tag], "summary": summary, "responses": responses}
    if description:
        operation["description"] = description
    if request is not None:
        operation["requestBody"] = request
    if security is not None:
        operation["security"] = security
    if parameters:
        operation["parameters"] = parameters
    return operation


def native(summary: str, schema: str, *statuses: int, **kwargs) -> dict:
    return op(
        "native",
        summary,
        {"200": reply("OK", schema), **errors("Native", *AUTH, *statuses)},
        **kwargs,
    )


def admin(
    summary: str, schema: str, *statuses: int, status: str = "200", **kwargs
) -> dict:
    return op(
        "admin",
        summary,
        {status: reply("OK", schema), **errors("Native", *AUTH, 404, *statuses)},
        description="Needs an API key with the `admin` scope.",
        **kwargs,
    )


def tf(summary: str, schema: str, *statuses: int, **kwargs) -> dict:
    responses = {"200": reply("OK", schema), **errors("Plain", *AUTH, 404, *statuses)}
    return op("tfserving", summary, responses, **kwargs)


PREDICT_ERRORS = (404, 409, 413, 415, 422, 503)
NATIVE_PREDICT = native(
    "Predict with the active (or a pinned) version",
    "NativePrediction",
    *PREDICT_ERRORS,
    request=body("NativePredictRequest"),
    description="Rows (`instances`, positional or by feature name) or columns "
    "(`inputs`). Classifiers also answer `classes` and `probabilities`.",
)

NATIVE_EXPLAIN = native(
    "Explain the active (or a pinned) version's answer, feature by feature",
    "NativeExplanation",
    *PREDICT_ERRORS,
    request=body("NativePredictRequest"),
    description="The same body as predict. Per row and per output, `base_value` "
    "plus the sum of `contributions` (one per entry of `features`) equals "
    "`output`; `explained_output` says which output of the model that is. Linear "
    "models and pipelines ending in one, decision trees, random forests, extra "
    "trees and gradient boosting; other models answer 422 `not_explainable`. "
    "See docs/explain.md.",
)


def tf_post(
    verb: str, answer: str, schema: str, request: str, description: str
) -> dict:
    """A TensorFlow Serving ``:<verb>`` operation: prediction errors in TF's shape."""
    return op(
        "tfserving",
        f"{verb.capitalize()} (TensorFlow Serving `:{verb}`)",
        {
            "200": reply(answer, schema),
            **errors("Plain", *AUTH, 404, 409, 413, 422, 503),
        },
        request=body(request),
        description=description,
    )


TF_PREDICT = tf_post(
    "predict",
    "`predictions` for the row format, `outputs` for the columnar one.",
    "TFPrediction",
    "TFPredictRequest",
    "The body is read as JSON whatever its Content-Type, as TensorFlow Serving does. "
    "Without a version or label the `stable` (active) version answers; labels are "
    "ModelDock aliases.",
)
TF_CLASSIFY = tf_post(
    "classify",
    "Every class with its probability, per example.",
    "TFClassification",
    "TFExamplesRequest",
    "For classifiers with class probabilities; labels come back "
    "as strings, as in TensorFlow Serving.",
)
TF_REGRESS = tf_post(
    "regress",
    "One value per example.",
    "TFRegression",
    "TFExamplesRequest",
    "For single-output regression models.",
)
TF_STATUS = tf("Version status", "TFModelStatus")
TF_METADATA = tf("Signature metadata", "TFMetadata", 409)
INFER_HEADER = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
    "description": "Binary tensor data extension: length of the JSON part; "
    "the tensors' bytes follow it.",
}
V2_INFER = op(
    "v2",
    "Infer (Open Inference Protocol)",
    {
        "200": {
            "description": "Outputs `predict` (labels) and, for classifiers, "
            "`predict_proba`; binary outputs follow the JSON header.",
            "content": {
                JSON: {"schema": ref("V2InferResponse")},
                "application/octet-stream": {"schema": {"type": "string"}},
            },
            "headers": {
                "Inference-Header-Content-Length": {
                    "description": "Set when binary outputs follow the JSON part.",
                    "schema": {"type": "string"},
                }
            },
        },
        **errors("Plain", *AUTH, 404, 409, 413, 415, 422, 503),
    },
    request=body("V2InferRequest"),
    parameters=[INFER_HEADER],
    description="Tensors FP32, FP64, INT8–64, UINT8–64, FP16, BOOL and BYTES (numbers "
    "as text); one tensor `[rows, features]` or one `[rows]` tensor per "
    "feature name. The request `id` is echoed.",
)
V2_METADATA = op(
    "v2",
    "Model metadata",
    {"200": reply("OK", "V2ModelMetadata"), **errors("Plain", *AUTH, 404, 409)},
)
V2_READY = op(
    "v2",
    "Model readiness",
    {
        "200": reply(
            "The version is loaded in the worker that answered.", "V2ModelReady"
        ),
        "400": reply(
            "Not ready: this worker has not loaded the version (4xx means "
            "false in the protocol), or a bad request.",
            {"oneOf": [ref("V2ModelReady"), ref("PlainError")]},
        ),
        **errors("Plain", 401, 403, 404, 429),
    },
)
MLFLOW_INVOCATIONS = op(
    "mlflow",
    "Predict (MLflow `/invocations`)",
    {
        "200": reply("One prediction per row.", "MLflowPrediction"),
        **errors("MLflow", *AUTH, 404, 409, 413, 415, 422, 503),
    },
    request={
        "required": True,
        "content": {
            JSON: {"schema": ref("MLflowRequest")},
            "text/csv": {
                "schema": {"type": "string"},
                "example": "sepal_length,sepal_width,petal_length,petal_width\n"
                "5.1,3.5,1.4,0.2\n",
            },
        },
    },
    description="The body of `mlflow models serve`: JSON (`Content-Type: "
    "application/json`) or CSV with a header row (`text/csv`). Columns are matched "
    "to the model's feature names in any order; an unknown or missing one is "
    "`INVALID_PARAMETER_VALUE`. `/invocations` predicts with the default model "
    "(`MODELDOCK_DEFAULT_MODEL`, else the only model served).",
)
MLFLOW_PING = op(
    "mlflow",
    "Health (MLflow `/ping`): the model has a stable version",
    {
        "200": reply(
            "A line break, as MLflow answers", {"type": "string"}, "text/plain"
        ),
        **errors("MLflow", *AUTH, 404),
    },
)

OPERATIONS: dict[tuple[str, str], dict] = {
    # --- native JSON API (predict scope)
    ("/api/v1/models", "GET"): native("List models", "ModelList"),
    ("/api/v1/models/<name>", "GET"): native("Show a model", "Model", 404),
    ("/api/v1/models/<name>/versions", "GET"): native(
        "List a model's versions", "VersionList", 404
    ),
    ("/api/v1/models/<name>/versions/<int:number>", "GET"): native(
        "Show a version", "Version", 404
    ),
    ("/api/v1/models/<name>/predict", "POST"): NATIVE_PREDICT,
    ("/api/v1/models/<name>/versions/<int:number>/predict", "POST"): NATIVE_PREDICT,
    ("/predict", "POST"): native(
        "Predict with the default model (Flask-tutorial shape)",
        "TutorialPrediction",
        *PREDICT_ERRORS,
        request=body("TutorialRequest"),
    ),
    ("/api/v1/models/<name>/feedback", "POST"): native(
        "Send the truth for earlier predictions",
        "FeedbackAnswer",
        404,
        409,
        413,
        415,
        422,
        503,
        request=body("FeedbackRequest"),
        description="Needs an API key with the `feedback` scope. By the request id "
        "a prediction answered with (+ `row` in a batch) and `label` (classifiers) "
        "or `value` (regressors), one object or a `feedback` list; or labelled rows "
        "(`instances` + `labels` / `values`), predicted now by the serving version. "
        "Idempotent per (request id, row); a different truth for a row already "
        "reported is refused (409 `feedback_conflict`). See docs/monitoring.md.",
    ),
    ("/api/v1/models/<name>/quality", "GET"): native(
        "Live quality per version, per hour or day",
        "Quality",
        404,
        description="Needs an API key with the `admin` scope. `window=hour` (last "
        "24 hours, the default) or `day` (last 30 days).",
        parameters=[
            {
                "name": "window",
                "in": "query",
                "required": False,
                "schema": {"enum": ["hour", "day"], "default": "hour"},
            }
        ],
    ),
    ("/api/v1/models/<name>/explain", "POST"): NATIVE_EXPLAIN,
    ("/api/v1/models/<name>/versions/<int:number>/explain", "POST"): NATIVE_EXPLAIN,
    # --- batch jobs (predict scope; app/batch)
    ("/api/v1/models/<name>/jobs", "POST"): op(
        "native",
        "Submit a batch job: rows as JSON, or a CSV file",
        {
            "202": reply(
                "Accepted: the job's status; poll its Location.",
                "BatchJob",
                Location="The job's status URL",
            ),
            **errors("Native", *AUTH, 404, 409, 413, 415, 503),
        },
        request={
            "required": True,
            "content": {
                JSON: {"schema": ref("BatchJobRequest")},
                "multipart/form-data": {"schema": ref("BatchJobUpload")},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        description="The model's stable version answers every row. Chunks of "
        "`MODELDOCK_BATCH_CHUNK_ROWS` rows run on the Celery workers when a broker is "
        "configured, else in the web worker. At most `MODELDOCK_BATCH_MAX_ROWS` rows.",
    ),
    ("/api/v1/jobs/<job_id>", "GET"): native(
        "A batch job's status and progress", "BatchJob", 404
    ),
    ("/api/v1/jobs/<job_id>/results", "GET"): op(
        "native",
        "A finished batch job's predictions (streamed)",
        {
            "200": {
                "description": "CSV: the input columns, `prediction`, then "
                "`probability_<class>`; JSON lines: `row`, `prediction`, "
                "`probabilities` by class.",
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            },
            **errors("Native", *AUTH, 404, 409),
        },
        parameters=[
            {
                "name": "format",
                "in": "query",
                "required": False,
                "schema": {"enum": ["csv", "jsonl"], "default": "csv"},
            }
        ],
    ),
    # --- admin JSON API (admin scope)
    ("/api/v1/models/<name>/versions", "POST"): admin(
        "Upload a version",
        "Version",
        409,
        413,
        415,
        422,
        status="201",
        request=body("Upload", "multipart/form-data"),
    ),
    ("/api/v1/models/<name>/versions/<int:number>/activate", "POST"): admin(
        "Make a version the active (stable) one",
        "Model",
        409,
        request=body("Reason", required=False),
    ),
    ("/api/v1/models/<name>/versions/<int:number>/runtime", "PUT"): admin(
        "Serve a version with onnxruntime, scikit-learn, or as verified (auto)",
        "Version",
        409,
        request=body("RuntimeRequest"),
    ),
    ("/api/v1/models/<name>/batching", "PUT"): admin(
        "Micro-batching of the model's versions served by scikit-learn",
        "Model",
        request=body("BatchingRequest"),
    ),
    ("/api/v1/models/<name>/timeout", "PUT"): admin(
        "Deadline of one prediction of this model (null: the deployment's)",
        "Model",
        request=body("TimeoutRequest"),
    ),
    ("/api/v1/models/<name>/rollback", "POST"): admin(
        "Reactivate the previous active version",
        "Model",
        409,
        request=body("Reason", required=False),
    ),
    ("/api/v1/models/<name>/versions/<int:number>/archive", "POST"): admin(
        "Archive a version no alias points to",
        "Version",
        409,
        request=body("Reason", required=False),
    ),
    ("/api/v1/models/<name>/canary", "PUT"): admin(
        "Send a share of clients (sticky) to a canary version",
        "Model",
        409,
        request=body("CanaryRequest"),
    ),
    ("/api/v1/models/<name>/canary", "DELETE"): admin(
        "End the canary", "Model", request=body("Reason", required=False)
    ),
    ("/api/v1/models/<name>/canary/promote", "POST"): admin(
        "Make the canary version stable",
        "Model",
        409,
        request=body("Reason", required=False),
    ),
    ("/api/v1/models/<name>/shadow", "PUT"): admin(
        "Mirror stable traffic to a shadow version",
        "Model",
        409,
        request=body("ShadowRequest"),
    ),
    ("/api/v1/models/<name>/shadow", "DELETE"): admin(
        "Stop shadowing", "Model", request=body("Reason", required=False)
    ),
    ("/api/v1/models/<name>/shadow", "GET"): admin(
        "Hourly agreement or error of the shadow version",
        "ShadowReport",
        parameters=[
            {
                "name": "hours",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 744},
            }
        ],
    ),
    ("/api/v1/models/<name>/history", "GET"): admin(
        "Every alias change: from, to, weight, who, why, when", "History"
    ),
    ("/api/v1/models/<name>/drift", "GET"): admin(
        "Input drift per feature (PSI, p-value, verdict) over the last windows",
        "Drift",
        parameters=[
            {
                "name": "window",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["hour", "day"]},
            },
            {
                "name": "version",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1},
            },
        ],
    ),
    # --- TensorFlow Serving REST API (predict scope)
    ("/v1/models/<model:name>", "GET"): tf("Status of every version", "TFModelStatus"),
    ("/v1/models/<model:name>/versions/<int:number>", "GET"): TF_STATUS,
    ("/v1/models/<model:name>/labels/<label:label>", "GET"): TF_STATUS,
    ("/v1/models/<model:name>/metadata", "GET"): TF_METADATA,
    ("/v1/models/<model:name>/versions/<int:number>/metadata", "GET"): TF_METADATA,
    ("/v1/models/<model:name>/labels/<label:label>/metadata", "GET"): TF_METADATA,
    ("/v1/models/<model:name>:predict", "POST"): TF_PREDICT,
    ("/v1/models/<model:name>/versions/<int:number>:predict", "POST"): TF_PREDICT,
    ("/v1/models/<model:name>/labels/<label:label>:predict", "POST"): TF_PREDICT,
    ("/v1/models/<model:name>:classify", "POST"): TF_CLASSIFY,
    ("/v1/models/<model:name>/versions/<int:number>:classify", "POST"): TF_CLASSIFY,
    ("/v1/models/<model:name>/labels/<label:label>:classify", "POST"): TF_CLASSIFY,
    ("/v1/models/<model:name>:regress", "POST"): TF_REGRESS,
    ("/v1/models/<model:name>/versions/<int:number>:regress", "POST"): TF_REGRESS,
    ("/v1/models/<model:name>/labels/<label:label>:regress", "POST"): TF_REGRESS,
    # --- Open Inference Protocol / KServe v2 (predict scope)
    ("/v2", "GET"): op(
        "v2",
        "Server metadata",
        {"200": reply("OK", "V2ServerMetadata"), **errors("Plain", *AUTH)},
    ),
    ("/v2/health/live", "GET"): op(
        "v2",
        "Server liveness",
        {"200": reply("OK", "V2Live"), **errors("Plain", *AUTH)},
    ),
    ("/v2/health/ready", "GET"): op(
        "v2",
        "Server readiness",
        {
            "200": reply("The database answers.", "V2Ready"),
            "503": reply(
                "The database is unreachable.",
                {"oneOf": [ref("V2Ready"), ref("PlainError")]},
            ),
            **errors("Plain", *AUTH),
        },
    ),
    ("/v2/models/<name>", "GET"): V2_METADATA,
    ("/v2/models/<name>/versions/<int:number>", "GET"): V2_METADATA,
    ("/v2/models/<name>/ready", "GET"): V2_READY,
    ("/v2/models/<name>/versions/<int:number>/ready", "GET"): V2_READY,
    ("/v2/models/<name>/infer", "POST"): V2_INFER,
    ("/v2/models/<name>/versions/<int:number>/infer", "POST"): V2_INFER,
    # --- MLflow scoring protocol (predict scope)
    ("/mlflow/<name>/invocations", "POST"): MLFLOW_INVOCATIONS,
    ("/invocations", "POST"): MLFLOW_INVOCATIONS,
    ("/mlflow/<name>/ping", "GET"): MLFLOW_PING,
    ("/ping", "GET"): MLFLOW_PING,
    ("/version", "GET"): op(
        "mlflow",
        "ModelDock's version (MLflow answers its own)",
        {
            "200": reply("The version, as text", {"type": "string"}, "text/plain"),
            **errors("MLflow", *AUTH),
        },
    ),
    # --- operations and documentation (public)
    ("/healthz", "GET"): op(
        "ops", "Liveness", {"200": reply("OK", "Health")}, security=PUBLIC
    ),
    ("/metrics", "GET"): op(
        "ops",
        "Prometheus metrics",
        {
            "200": reply(
                "Prometheus text exposition", {"type": "string"}, "text/plain"
            ),
            "403": {"$ref": "#/components/responses/Native403"},
        },
        description="Readable with the metrics token (`MODELDOCK_METRICS_TOKEN`) or "
        "from a network in `MODELDOCK_METRICS_ALLOW`; not with API keys.",
        security=[{"metricsToken": []}, {}],
    ),
    ("/readyz", "GET"): op(
        "ops",
        "Readiness (the database answers)",
        {
            "200": reply("OK", "Health"),
            "503": reply(
                "The database is unreachable.", "Health", Retry_After="Seconds"
            ),
        },
        security=PUBLIC,
    ),
    ("/api/openapi.json", "GET"): op(
        "docs",
        "This OpenAPI document",
        {"200": reply("OK", {"type": "object"})},
        security=PUBLIC,
    ),
    ("/api/docs", "GET"): op(
        "docs",
        "Browsable API documentation",
        {"200": {"description": "HTML page", **HTML_PAGE}},
        security=PUBLIC,
    ),
}


def page_operation(summary: str, method: str, public: bool) -> dict:
    """A browser page or form: HTML (or a download), redirects, HTML error pages."""
    responses = {
        "200": {
            "description": "Page, or a file for downloads",
            "content": {HTML: {"schema": {"type": "string"}}, "*/*": {}},
        },
        "302": REDIRECT,
        "308": {**REDIRECT, "description": "Path normalized"},
        **{
            str(s): HTML_OR_JSON_ERROR for s in (400, 401, 403, 404, 405, 409, 413, 429)
        },
    }
    operation = op(
        "browser",
        summary,
        responses,
        security=PUBLIC,
        description="A page for people: "
        + (
            "public."
            if public
            else "needs a signed-in session "
            "(API keys do not sign browsers in; without a session it "
            "redirects to the sign-in page)."
        ),
    )
    if method == "POST":
        operation["requestBody"] = {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                    }
                },
                "multipart/form-data": {"schema": {"type": "object"}},
            },
        }
    return operation
