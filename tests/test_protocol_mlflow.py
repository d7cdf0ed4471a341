"""MLflow's scoring protocol, checked with MLflow's own client-side code: request
bodies built by ``mlflow.utils.proto_json_utils.dump_input_data`` and pandas (as
MLflow's docs build them), read by MLflow's own parser to know what they mean,
answers read by ``PredictionsResponse``, errors by ``RestException`` — and once
through MLflow's HTTP client (``http_request`` with a Bearer token) on a real
server."""

from __future__ import annotations

import io
import json
import pickle
import warnings
from importlib import metadata

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge

from app.apidocs.document import build_document
from app.extensions import db
from app.models import RequestLog
from app.observability.request_log import writer
from app.web.paths import error_shape
from tests.conftest import BACKENDS, auth, make_keys, running_app, upload
from tests.live_server import serve

with warnings.catch_warnings():  # mlflow warns about its own type hints on import
    warnings.simplefilter("ignore")
    from mlflow.deployments import PredictionsResponse
    from mlflow.exceptions import RestException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data, parse_csv_input
    from mlflow.utils.proto_json_utils import dump_input_data
    from mlflow.utils.rest_utils import (
        MlflowHostCreds,
        http_request,
        verify_rest_response,
    )

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
JSON, CSV = "application/json", "text/csv"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    X, _ = load_iris(return_X_y=True)
    return pd.DataFrame(X, columns=NAMES)


@pytest.fixture(scope="module")
def named(frame) -> LogisticRegression:
    """Fitted on a DataFrame: the registry records its feature names."""
    return LogisticRegression(max_iter=500).fit(frame, load_iris().target)


@pytest.fixture(scope="module")
def unnamed() -> Ridge:
    """Fitted on an array: features x0..x9, columns taken in the order given."""
    X, y = load_diabetes(return_X_y=True)
    return Ridge(alpha=0.5).fit(X, y)


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory, named, unnamed):
    with running_app(
        request.param,
        tmp_path_factory.mktemp("db"),
        MODELDOCK_MAX_BATCH_ROWS=50,
        MODELDOCK_LOG_PAYLOADS=True,
        MODELDOCK_LOG_REDACT_FIELDS=["petal_width"],
        MODELDOCK_METRICS_TOKEN="scrape-token",
    ) as app:
        keys = make_keys(app)
        client = app.test_client()
        for name, estimator in (("iris", named), ("diabetes", unnamed)):
            response = upload(
                client, keys.admin, name, pickle.dumps(estimator), f"{name}.pkl"
            )
            assert response.status_code == 201, response.get_json()
        yield app, client, keys


def invoke(client, key, body, path="/mlflow/iris/invocations", content_type=JSON):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, headers=auth(key), content_type=content_type)


def predictions(response) -> np.ndarray:
    """The answer as MLflow's client reads it."""
    assert response.status_code == 200, response.data
    return PredictionsResponse.from_json(
        response.get_data(as_text=True)
    ).get_predictions(predictions_format="ndarray")


def rest_error(response, status: int) -> RestException:
    """The error as MLflow's client raises it; ModelDock's own code beside it."""
    assert response.status_code == status, response.data
    body = response.get_json()
    assert isinstance(body["error_code"], str) and body["message"]
    assert isinstance(body["error"]["code"], str)
    return RestException(body)


# --- every body format, built by MLflow or pandas, meaning what MLflow reads


def test_dataframe_split_from_mlflow_in_any_column_order(served, frame, named):
    _, client, keys = served
    shuffled = frame.iloc[[0, 60, 120]][["petal_width", "sepal_length", *NAMES[1:3]]]
    body = dump_input_data(shuffled)  # {"dataframe_split": {..., "index": [...]}}
    parsed = infer_and_parse_data(json.loads(body))  # what MLflow would predict on
    expected = named.predict(parsed[NAMES])
    answer = predictions(invoke(client, keys.predict, body))
    assert answer.tolist() == expected.tolist() == [0, 1, 2]


def test_dataframe_split_and_records_as_mlflow_docs_build_them(served, frame, named):
    _, client, keys = served
    rows = frame.iloc[[10, 70, 140]][list(reversed(NAMES))]
    expected = named.predict(rows[NAMES]).tolist()
    split = {"dataframe_split": json.loads(rows.to_json(orient="split"))}
    records = {"dataframe_records": rows.to_dict(orient="records")}
    for body in (split, records):
        parsed = infer_and_parse_data(body)[NAMES].to_numpy()
        assert (parsed == rows[NAMES].to_numpy()).all()
        assert predictions(invoke(client, keys.predict, body)).tolist() == expected


def test_instances_and_inputs_tensors(served, frame, named):
    _, client, keys = served
    X = frame.iloc[[5, 55, 105]].to_numpy()
    expected = named.predict(frame.iloc[[5, 55, 105]]).tolist()
    bodies = [
        dump_input_data(X),  # {"inputs": [[...]]}
        dump_input_data(X, inputs_key="instances"),
        dump_input_data(X.tolist(), params={"threshold": 0.5}),  # params: unused
        {"instances": frame.iloc[[5, 55, 105]].to_dict(orient="records")},
        {"inputs": frame.iloc[[5, 55, 105]].to_dict(orient="list")},
    ]
    for body in bodies:
        got = predictions(invoke(client, keys.predict, body))
        assert got.tolist() == expected, body


def test_csv_with_and_without_pandas_index(served, frame, named):
    _, client, keys = served
    rows = frame.iloc[[1, 51, 101]][
        ["sepal_width", "petal_length", "petal_width", "sepal_length"]
    ]
    expected = named.predict(rows[NAMES]).tolist()
    for text in (rows.to_csv(), rows.to_csv(index=False)):
        parsed = parse_csv_input(io.StringIO(text))  # MLflow's own reading
        assert set(NAMES) <= set(parsed.columns)
        response = invoke(client, keys.predict, text, content_type=CSV)
        assert predictions(response).tolist() == expected
    charset = invoke(
        client, keys.predict, rows.to_csv(), content_type="text/csv; charset=utf-8"
    )
    assert predictions(charset).tolist() == expected


def test_regression_and_positional_columns_of_a_model_without_names(served, unnamed):
    _, client, keys = served
    X, _ = load_diabetes(return_X_y=True)
    expected = unnamed.predict(X[:3])
    path = "/mlflow/diabetes/invocations"
    for body in (
        dump_input_data(pd.DataFrame(X[:3])),  # pandas names the columns 0..9
        dump_input_data(pd.DataFrame(X[:3], columns=[f"x{i}" for i in range(10)])),
        {"dataframe_records": pd.DataFrame(X[:3]).add_prefix("c").to_dict("records")},
        pd.DataFrame(X[:3]).to_csv(index=False),
    ):
        content_type = CSV if isinstance(body, str) and "\n" in body else JSON
        got = predictions(invoke(client, keys.predict, body, path, content_type))
        assert got == pytest.approx(expected)


# --- errors in MLflow's shape, read by MLflow's client


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error_code", "code"),
    [
        ("{not json", JSON, 400, "BAD_REQUEST", "malformed_json"),
        ([[1, 2, 3, 4]], JSON, 400, "BAD_REQUEST", "invalid_body"),
        ({"data": [[1, 2, 3, 4]]}, JSON, 400, "BAD_REQUEST", "invalid_body"),
        (
            {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]},
            JSON,
            400,
            "BAD_REQUEST",
            "invalid_body",
        ),
        (
            {"inputs": [[1, 2, 3, 4]], "params": [1]},
            JSON,
            400,
            "INVALID_PARAMETER_VALUE",
            "invalid_params",
        ),
        (
            {"instances": [[1, 2]]},
            JSON,
            400,
            "INVALID_PARAMETER_VALUE",
            "wrong_feature_count",
        ),
        (
            {"instances": [[1, 2, "x", 4]]},
            JSON,
            400,
            "INVALID_PARAMETER_VALUE",
            "non_numeric_value",
        ),
        (
            {"instances": [[0.0] * 4] * 51},
            JSON,
            413,
            "INVALID_PARAMETER_VALUE",
            "batch_too_large",
        ),
        ("a,b\n1,2\n", "text/plain", 415, "BAD_REQUEST", "unsupported_media_type"),
        (
            "a,b\n1,2\n",
            "text/csv; charset=latin-1",
            415,
            "BAD_REQUEST",
            "unsupported_media_type",
        ),
        ("", CSV, 400, "BAD_REQUEST", "malformed_csv"),
        (b"\xff\xfe,x\n", CSV, 400, "BAD_REQUEST", "malformed_csv"),
    ],
)
def test_unreadable_bodies_and_refused_values(
    served, body, content_type, status, error_code, code
):
    _, client, keys = served
    response = invoke(client, keys.predict, body, content_type=content_type)
    error = rest_error(response, status)
    assert error.error_code == error_code
    assert response.get_json()["error"]["code"] == code
    if status == 400:  # MLflow's client maps its code back to the same status
        assert error.get_http_status_code() == 400


def test_unknown_and_missing_columns_name_the_column(served, frame):
    _, client, keys = served
    rows = frame.iloc[:2]
    extra = rows.assign(colour=[1.0, 2.0])
    missing = rows.drop(columns=["petal_width"])
    for body, code, word in (
        (dump_input_data(extra), "unknown_feature", "colour"),
        ({"dataframe_records": extra.to_dict("records")}, "unknown_feature", "colour"),
        (dump_input_data(missing), "missing_feature", "petal_width"),
        (
            {"dataframe_records": missing.to_dict("records")},
            "missing_feature",
            "petal_width",
        ),
        ({"inputs": missing.to_dict("list")}, "missing_feature", "petal_width"),
        (missing.to_csv(index=False), "missing_feature", "petal_width"),
    ):
        content_type = CSV if isinstance(body, str) and "\n" in body else JSON
        response = invoke(client, keys.predict, body, content_type=content_type)
        error = rest_error(response, 400)
        assert error.error_code == "INVALID_PARAMETER_VALUE"
        assert response.get_json()["error"]["code"] == code
        assert word in error.message


def test_csv_cells_that_are_not_numbers(served):
    _, client, keys = served
    header = ",".join(NAMES)
    cases = [
        (f"{header}\n5.1,3.5,1.4,x\n", "non_numeric_value", "csv.data[0][3]"),
        (f"{header}\n5.1,3.5,1.4\n", "wrong_feature_count", "csv.data[0]"),
        (f"{header}\n5.1,3.5,,0.2\n", "non_finite_value", "csv.data[0][2]"),  # NaN
        (f"{header},{NAMES[0]}\n1,2,3,4,5\n", "duplicate_column", "csv.columns"),
    ]
    for text, code, field in cases:
        response = invoke(client, keys.predict, text, content_type=CSV)
        rest_error(response, 400)
        assert response.get_json()["error"] == {"code": code, "field": field}


def test_unknown_model_url_method_and_missing_key(served):
    _, client, keys = served
    missing = invoke(
        client, keys.predict, {"inputs": [[1, 2, 3, 4]]}, "/mlflow/nope/invocations"
    )
    assert rest_error(missing, 404).error_code == "RESOURCE_DOES_NOT_EXIST"
    url = client.get("/mlflow/iris/nothing", headers=auth(keys.predict))
    assert rest_error(url, 404).error_code == "ENDPOINT_NOT_FOUND"
    method = client.get("/mlflow/iris/invocations", headers=auth(keys.predict))
    assert rest_error(method, 405).error_code == "BAD_REQUEST"
    anonymous = client.post("/invocations", json={"inputs": [[1, 2, 3, 4]]})
    assert rest_error(anonymous, 401).error_code == "UNAUTHENTICATED"


def test_admin_only_key_lacks_the_predict_scope(served):
    app, client, keys = served
    from app.auth.credentials import create_api_key
    from app.models import User

    with app.app_context():
        admin = db.session.get(User, keys.admin_user_id)
        _, only_admin = create_api_key(admin, "admin only", ["admin"])
        db.session.commit()
    response = invoke(client, only_admin, {"inputs": [[1, 2, 3, 4]]})
    assert rest_error(response, 403).error_code == "PERMISSION_DENIED"


# --- the default model, ping and version


def test_default_model_is_the_setting_else_a_clear_error(served, frame, named):
    app, client, keys = served
    body = dump_input_data(frame.iloc[[0, 100]])
    try:
        app.config["MODELDOCK_DEFAULT_MODEL"] = ""
        several = invoke(client, keys.predict, body, "/invocations")
        error = rest_error(several, 404)
        assert "2 models are served (diabetes, iris)" in error.message
        assert "MODELDOCK_DEFAULT_MODEL" in error.message
        assert several.get_json()["error"]["code"] == "no_default_model"
        assert client.get("/ping", headers=auth(keys.predict)).status_code == 404
        app.config["MODELDOCK_DEFAULT_MODEL"] = "iris"
        assert predictions(
            invoke(client, keys.predict, body, "/invocations")
        ).tolist() == [0, 2]
        assert client.get("/ping", headers=auth(keys.predict)).status_code == 200
        app.config["MODELDOCK_DEFAULT_MODEL"] = "gone"
        gone = invoke(client, keys.predict, body, "/invocations")
        assert rest_error(gone, 404).error_code == "RESOURCE_DOES_NOT_EXIST"
    finally:
        app.config["MODELDOCK_DEFAULT_MODEL"] = ""


def test_the_only_model_is_the_default(app, keys, iris):
    client = app.test_client()
    assert upload(client, keys.admin, "solo", iris.as_skops()).status_code == 201
    response = invoke(client, keys.predict, dump_input_data(iris.X[:2]), "/invocations")
    assert predictions(response).tolist() == iris.estimator.predict(iris.X[:2]).tolist()
    tutorial = client.post(
        "/predict", json={"features": iris.X[0].tolist()}, headers=auth(keys.predict)
    )
    assert tutorial.get_json()["prediction"] == [0]


@pytest.mark.config(RATELIMIT_ENABLED=True, MODELDOCK_RATELIMIT_DEFAULT="2 per minute")
def test_rate_limit_in_mlflow_shape_with_retry_after(client, keys):
    for _ in range(2):  # no model yet: 404s count too
        assert invoke(client, keys.predict, {"inputs": [[1]]}).status_code == 404
    limited = invoke(client, keys.predict, {"inputs": [[1]]})
    assert rest_error(limited, 429).error_code == "REQUEST_LIMIT_EXCEEDED"
    assert limited.get_json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0


def test_ping_and_version(served):
    _, client, keys = served
    for path in ("/mlflow/iris/ping", "/mlflow/diabetes/ping"):
        response = client.get(path, headers=auth(keys.predict))
        assert (response.status_code, response.data) == (200, b"\n")
    assert rest_error(client.get("/mlflow/nope/ping", headers=auth(keys.predict)), 404)
    version = client.get("/version", headers=auth(keys.predict))
    assert (version.status_code, version.text) == (200, metadata.version("modeldock"))


# --- one pipeline: request log (redacted payloads), metrics, OpenAPI


def requests_counted(client) -> dict[tuple[str, str], float]:
    """modeldock_requests_total by (model, status), as Prometheus would read it."""
    text = client.get("/metrics", headers=auth("scrape-token")).text
    return {
        (sample.labels["model"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "modeldock_requests_total"
    }


def test_requests_are_logged_under_mlflow_with_redaction_by_column(served, frame):
    app, client, keys = served
    before = requests_counted(client)
    rows = frame.iloc[[3]][list(reversed(NAMES))]
    assert invoke(client, keys.predict, dump_input_data(rows)).status_code == 200
    bad = invoke(client, keys.predict, {"instances": [[1, 2]]})
    assert bad.status_code == 400
    with app.app_context():
        writer().flush()
        logs = db.session.scalars(
            db.select(RequestLog)
            .where(RequestLog.protocol == "mlflow")
            .order_by(RequestLog.id.desc())
            .limit(2)
        ).all()
    failed, ok = logs
    assert (ok.model_name, ok.status_code, ok.rows) == ("iris", 200, 1)
    assert (failed.status_code, failed.error_code) == (400, "wrong_feature_count")
    # The table is logged by column name, so the redacted column is the right one.
    (logged,) = ok.payload["dataframe_records"]
    assert logged == {**rows.iloc[0].to_dict(), "petal_width": "[redacted]"}
    after = requests_counted(client)
    for counted in (("iris", "200"), ("iris", "400")):  # each request once
        assert after.get(counted, 0.0) - before.get(counted, 0.0) == 1, counted


def test_openapi_documents_mlflow_routes_with_mlflow_errors(served):
    app, _, _ = served
    document = build_document(app)
    for path in ("/invocations", "/mlflow/{name}/invocations", "/ping", "/version"):
        for operation in document["paths"][path].values():
            errors = {
                status: response
                for status, response in operation["responses"].items()
                if not status.startswith("2")
            }
            assert errors, path
            for status, response in errors.items():  # each one MLflow's shape
                assert response == {"$ref": f"#/components/responses/MLflow{status}"}
    shape = document["components"]["responses"]["MLflow400"]["content"]
    assert shape[JSON]["schema"] == {"$ref": "#/components/schemas/MLflowError"}
    assert document["components"]["schemas"]["MLflowError"]["required"] == [
        "error_code",
        "message",
    ]
    assert error_shape("/mlflow/x/y") == error_shape("/invocations") == "mlflow"


# --- MLflow's own HTTP client against a real server, the key as its Bearer token


def test_mlflow_http_client_with_bearer_token(served, frame, named):
    app, _, keys = served
    rows = frame.iloc[[0, 50, 100]]
    with serve(app) as address:
        creds = MlflowHostCreds(f"http://{address}", token=keys.predict)
        response = http_request(
            creds,
            "/mlflow/iris/invocations",
            "POST",
            data=dump_input_data(rows),
            extra_headers={"Content-Type": JSON},
            max_retries=0,
        )
        verify_rest_response(response, "/mlflow/iris/invocations")
        answer = PredictionsResponse.from_json(response.text)
        assert (
            answer.get_predictions("ndarray").tolist() == named.predict(rows).tolist()
        )
        refused = http_request(
            creds,
            "/mlflow/iris/invocations",
            "POST",
            data=dump_input_data(rows.drop(columns=["sepal_length"])),
            extra_headers={"Content-Type": JSON},
            max_retries=0,
        )
        with pytest.raises(RestException) as raised:
            verify_rest_response(refused, "/mlflow/iris/invocations")
        assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
        assert "sepal_length" in raised.value.message
