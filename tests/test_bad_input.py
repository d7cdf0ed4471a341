"""Bad input that used to slip through: huge numbers, huge strings, odd datatypes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from app.extensions import db
from app.models import MLModel
from app.ui import csvio
from app.web.errors import APIError
from tests.conftest import auth, sign_in, upload

HUGE = ("99999999999999999999", "2147483648", "9" * 400)


# --- numbers in URLs, query strings and JSON bodies are range-checked ----------------


def test_request_log_filters_refuse_huge_and_odd_numbers_readably(app, keys):
    client = app.test_client()
    sign_in(client, "root", "correct horse battery")
    for version in (*HUGE, "-1", "0", "²"):
        page = client.get(f"/admin/requests?version={version}")
        assert page.status_code == 200, (version, page.status_code)
        assert (
            "Ignored: version must be a whole number from 1 to 2147483647" in page.text
        )
    page = client.get("/admin/requests?status=²²²&page=99999999999999999999")
    assert page.status_code == 200 and "Ignored: status must be" in page.text
    export = client.get("/admin/requests.csv?version=99999999999999999999")
    assert export.status_code == 302  # back to the page that says what is wrong
    for path in ("/admin/audit?page=99999999999999999999", "/admin/?page=-5"):
        assert client.get(path).status_code == 200, path


def test_huge_ids_in_page_urls_are_a_readable_404(app, keys):
    client = app.test_client()
    sign_in(client, "root", "correct horse battery")
    for number in HUGE:
        for path in (
            f"/admin/users/{number}/disable",
            f"/admin/keys/{number}/revoke",
            f"/admin/models/demo/versions/{number}/activate",
            f"/account/keys/{number}/revoke",
        ):
            page = client.get(path)
            assert page.status_code == 404, (path, page.status_code)
            assert "numbers go up to 2147483647" in page.text
            assert "Traceback" not in page.text


def test_huge_numbers_in_api_paths_and_bodies_are_json_errors(app, keys):
    with app.app_context():
        db.session.add(MLModel(name="demo", task="classification"))
        db.session.commit()
    client = app.test_client()
    for number in HUGE:
        response = client.get(
            f"/api/v1/models/demo/versions/{number}", headers=auth(keys.predict)
        )
        assert response.status_code == 404
        error = response.get_json()["error"]
        assert error["code"] == "version_not_found" and error["field"] == "version"
        assert "go up to 2147483647" in error["message"]
        for path in (
            f"/v1/models/demo/versions/{number}:predict",
            f"/v2/models/demo/versions/{number}/infer",
        ):
            response = client.post(path, json={}, headers=auth(keys.predict))
            assert response.status_code == 404, path
            assert "go up to 2147483647" in response.get_json()["error"]
    for body in (
        {"version": 10**20, "weight": 10},
        {"version": 1, "weight": 10**20},
        {"version": -1, "weight": 10},
    ):
        response = client.put(
            "/api/v1/models/demo/canary", json=body, headers=auth(keys.admin)
        )
        assert response.status_code == 400, body
        assert response.get_json()["error"]["code"] in {
            "invalid_version",
            "invalid_weight",
        }
    response = client.get(
        "/api/v1/models/demo/shadow?hours=99999999999999999999",
        headers=auth(keys.admin),
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_hours"


def test_cli_refuses_huge_version_numbers_with_a_message(app, runner):
    result = runner.invoke(args=["models", "activate", "demo", "99999999999999999999"])
    assert result.exit_code == 2 and "is not in the range" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# --- errors quote at most a short prefix of what the client sent ---------------------


@pytest.fixture
def iris_model(client, keys, iris):
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    return "iris"


def test_a_huge_string_is_not_echoed_back(client, keys, iris_model):
    huge = "A" * 5_000_000
    bodies = {
        "/api/v1/models/iris/predict": [
            {"instances": [[huge, 1, 2, 3]]},
            {"instances": [{huge: 1}]},
            {"inputs": {huge: [1]}},
        ],
        "/v1/models/iris:predict": [
            {"instances": [[huge, 1, 2, 3]]},
            {"instances": [{huge: [1, 2]}]},
        ],
        "/v2/models/iris/infer": [
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP64",
                        "shape": [1, 4],
                        "data": [huge, 1, 2, 3],
                    }
                ]
            },
            {
                "inputs": [
                    {
                        "name": huge,
                        "datatype": "BYTES",
                        "shape": [1, 4],
                        "data": [huge, "1", "2", "3"],
                    }
                ]
            },
        ],
    }
    for path, cases in bodies.items():
        for body in cases:
            response = client.post(
                path,
                data=json.dumps(body),
                content_type="application/json",
                headers=auth(keys.predict),
            )
            assert response.status_code == 400, (path, response.data[:300])
            assert len(response.data) < 2000, (path, response.data[:300])
            assert "AAAAAAAAAA" in response.text  # a prefix still says which value
    schema = {"feature_names": list("abcd"), "n_features": 4}
    cell = huge[:100_000]  # the csv module's own limit is 131072 per field
    parsed = csvio.read_csv(f"a,b,c,d\n{cell},1,2,3\n".encode(), schema, 10)
    with pytest.raises(APIError) as error:
        csvio.to_matrix(parsed, 0, 1, schema)
    assert error.value.code == "non_numeric_value" and len(error.value.message) < 200


# --- non-finite outputs are null in every protocol ---------------------------------


def strict_json(text: str):
    """Parse like a strict JSON parser: NaN, Infinity and -Infinity are errors."""

    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


# Rows whose prediction overflows: +inf, -inf, inf - inf (NaN or -inf, as the BLAS
# sums it), then a finite one.
OVERFLOWING = [[1e300, 0.0], [-1e300, 0.0], [1e300, -1e300], [1.0, 2.0]]


@pytest.fixture
def overflowing(client, keys):
    """A LinearRegression with huge coefficients (only allowed names, skops)."""
    import skops.io
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit([[0, 0], [1, 0], [0, 1], [1, 1]], [0, 1, 2, 3])
    model.coef_, model.intercept_ = np.array([1e300, 1e300]), 0.0
    response = upload(client, keys.admin, "big", skops.io.dumps(model))
    assert response.status_code == 201, response.data
    return model


def test_non_finite_predictions_are_null_in_every_protocol(
    app, client, keys, overflowing
):
    with np.errstate(over="ignore", invalid="ignore"):
        expected = overflowing.predict(np.array(OVERFLOWING))
    assert np.isposinf(expected[0]) and np.isneginf(expected[1])
    assert not np.isfinite(expected[2]) and np.isfinite(expected[3])
    want = [None, None, None, pytest.approx(expected[3])]
    headers = auth(keys.predict)

    native = client.post(
        "/api/v1/models/big/predict", headers=headers, json={"instances": OVERFLOWING}
    )
    assert strict_json(native.text)["predictions"] == want
    tf = client.post(
        "/v1/models/big:predict", headers=headers, json={"instances": OVERFLOWING}
    )
    assert strict_json(tf.text)["predictions"] == want
    regress = client.post(
        "/v1/models/big:regress",
        headers=headers,
        json={"examples": [{"x0": a, "x1": b} for a, b in OVERFLOWING]},
    )
    assert strict_json(regress.text)["results"] == want
    v2 = client.post(
        "/v2/models/big/infer",
        headers=headers,
        json={
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP64",
                    "shape": [4, 2],
                    "data": OVERFLOWING,
                }
            ]
        },
    )
    assert strict_json(v2.text)["outputs"][0]["data"] == want
    app.config["MODELDOCK_DEFAULT_MODEL"] = "big"
    tutorial = client.post("/predict", headers=headers, json={"features": OVERFLOWING})
    assert strict_json(tutorial.text)["prediction"] == want


def test_non_finite_predictions_are_empty_cells_in_csv_results(app, keys, overflowing):
    from tests.test_ui_predict import client_for, download, finished, upload_csv

    client, token = client_for(app, ("root", "correct horse battery"))
    text = "x0,x1\n" + "".join(f"{a!r},{b!r}\n" for a, b in OVERFLOWING)
    with upload_csv(client, token, "big", text) as response:
        location = response.headers["Location"]
    page, _ = finished(client, location)
    assert "Histogram of predicted values" in page
    table = download(client, location)
    assert [row[2] for row in table[1:4]] == ["", "", ""]
    assert float(table[4][2]) == pytest.approx(overflowing.predict([[1.0, 2.0]])[0])


def test_flask_json_writes_nan_and_infinities_as_null(app):
    with app.app_context():
        text = app.json.dumps(
            {"a": [float("nan"), 1.5, {"b": float("-inf")}], "c": (float("inf"),)}
        )
    assert strict_json(text) == {"a": [None, 1.5, {"b": None}], "c": [None]}


def test_json_columns_hold_strict_json_whatever_the_values():
    """What the request log stores (predictions, payloads): non-finite floats as
    null, numpy arrays and scalars, number keys as text, and what orjson refuses
    (integers beyond 64 bits, lone surrogates) still written."""
    from app.web.finite_json import json_text

    value = {
        "y": np.array([0, 1]),
        "p": np.array([[0.25, np.nan], [np.inf, 0.5]], dtype=np.float32),
        "n": np.float64(-np.inf),
        1: "one",
    }
    assert strict_json(json_text(value)) == {
        "y": [0, 1],
        "p": [[0.25, None], [None, 0.5]],
        "n": None,
        "1": "one",
    }
    assert strict_json(json_text([2**70, float("nan")])) == [2**70, None]
    assert strict_json(json_text({"a": "\ud800"})) == {"a": "\ud800"}


# --- CSV results keep every row, whatever the cells hold ------------------------------


def test_csv_results_round_trip_cells_with_cr_lf_quotes_and_commas(
    app, keys, iris_model, iris
):
    import csv
    import io

    from tests.test_ui_predict import client_for, download, finished, upload_csv

    notes = ["bare\rreturn", "new\nline", "both\r\nends", 'say "hi"', "a,b", "plain"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["note", "x0", "x1", "x2", "x3"])
    writer.writerows([note, *iris.X[i]] for i, note in enumerate(notes))
    client, token = client_for(app, ("root", "correct horse battery"))
    with upload_csv(client, token, "iris", out.getvalue()) as response:
        location = response.headers["Location"]
    finished(client, location)
    table = download(client, location)
    assert [row[0] for row in table[1:]] == notes
    assert [int(row[5]) for row in table[1:]] == iris.estimator.predict(
        iris.X[: len(notes)]
    ).tolist()


# --- chunked bodies over the cap are 413, through a real gunicorn ------------------


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory, iris):
    """gunicorn (2 gthread workers) on SQLite with a 1 MB upload cap and one model."""
    from flask_migrate import upgrade

    from app import create_app
    from app.auth.credentials import create_api_key, create_user
    from app.rollout import versions as service
    from tests.live import gunicorn

    folder = tmp_path_factory.mktemp("chunked")
    env = {
        "DATABASE_URL": f"sqlite:///{folder / 'modeldock.db'}",
        "SECRET_KEY": "chunked",
        "MODELDOCK_MAX_UPLOAD_MB": "1",
        "MODELDOCK_REQUEST_LOG_ENABLED": "false",
    }
    app = create_app(env)
    with app.app_context():
        upgrade()
        admin = create_user("ops", "ops-password-1", "admin")
        _, key = create_api_key(admin, "ops", ["predict", "admin"])
        service.upload_version("iris", "iris.skops", iris.as_skops())
        db.session.commit()
        db.engine.dispose()
    app.extensions["modeldock"].close()
    with gunicorn(
        env,
        workers=2,
        extra=["--worker-class", "gthread", "--threads", "2"],
        log_path=folder / "gunicorn.log",
    ) as port:
        yield port, key


def send_chunked(port: int, path: str, body: bytes, headers: dict):
    """POST ``body`` with Transfer-Encoding: chunked (no Content-Length)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("POST", path)
        for name, value in {**headers, "Transfer-Encoding": "chunked"}.items():
            conn.putheader(name, value)
        conn.endheaders()
        try:
            for i in range(0, len(body), 65536):
                chunk = body[i : i + 65536]
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            # The server answered before the body ended (a 413 once past the cap)
            # and closed: its answer is waiting to be read, as curl would read it.
            pass
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_chunked_bodies_over_the_cap_are_413_and_small_ones_work(capped_server, iris):
    port, key = capped_server
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    small = json.dumps({"instances": iris.X[:3].tolist()}).encode()
    status, body = send_chunked(port, "/api/v1/models/iris/predict", small, headers)
    assert status == 200 and len(body["predictions"]) == 3
    big = json.dumps({"instances": iris.X.tolist() * 400}).encode()
    assert len(big) > 1024 * 1024
    for path in (
        "/api/v1/models/iris/predict",
        "/v1/models/iris:predict",
        "/v2/models/iris/infer",
    ):
        status, body = send_chunked(port, path, big, headers)
        assert status == 413, (path, body)
    status, body = send_chunked(port, "/api/v1/models/iris/predict", big, headers)
    assert body["error"]["code"] == "payload_too_large"


def test_chunked_multipart_uploads_over_the_cap_are_413(capped_server, iris):
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    port, key = capped_server
    for data, want in ((iris.as_skops(), 201), (b"\0" * (1024 * 1024 + 10), 413)):
        boundary, body = encode_multipart(
            {"file": FileStorage(io.BytesIO(data), filename="iris.skops", name="file")}
        )
        status, answer = send_chunked(
            port,
            "/api/v1/models/chunky/versions",
            body,
            {
                "Authorization": f"Bearer {key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        assert status == want, answer
        if want == 413:
            assert answer["error"]["code"] == "payload_too_large"


# --- Open Inference typed tensors hold only what their datatype can -----------------

OUT_OF_RANGE = [
    ("UINT8", -1),
    ("UINT8", 300),
    ("INT8", 128),
    ("UINT64", -1),
    ("INT64", 2**63),
    ("FP16", 65536),
    ("FP16", -1e6),
    ("FP32", 1e39),
]


def test_typed_tensors_refuse_values_out_of_their_range(client, keys, iris_model):
    for datatype, value in OUT_OF_RANGE:
        response = client.post(
            "/v2/models/iris/infer",
            headers=auth(keys.predict),
            json={
                "inputs": [
                    {
                        "name": "flowers",
                        "datatype": datatype,
                        "shape": [1, 4],
                        "data": [1, 1, 1, value],
                    }
                ]
            },
        )
        assert response.status_code == 400, (datatype, value)
        message = response.get_json()["error"]
        assert "inputs[0].data[3]" in message and "'flowers'" in message
        assert f"{datatype} holds" in message


def test_typed_tensors_in_range_still_predict(client, keys, iris_model):
    for datatype, row in (
        ("UINT8", [0, 255, 1, 2]),
        ("FP16", [65504, -65504, 1, 2]),
        ("INT8", [-128, 127, 0, 1]),
    ):
        response = client.post(
            "/v2/models/iris/infer",
            headers=auth(keys.predict),
            json={
                "inputs": [
                    {
                        "name": "input",
                        "datatype": datatype,
                        "shape": [1, 4],
                        "data": row,
                    }
                ]
            },
        )
        assert response.status_code == 200, (datatype, response.data)


# --- pickle protocols 0 and 1 of allowed models load; nothing else new does ----------


def test_protocol_0_and_1_pickles_of_allowed_models_upload_and_predict(
    client, keys, iris
):
    import pickle

    want = iris.estimator.predict(iris.X[:5]).tolist()
    for protocol in (0, 1):
        data = pickle.dumps(iris.estimator, protocol=protocol)
        assert b"_reconstructor" in data
        response = upload(client, keys.admin, f"p{protocol}", data, "model.pkl")
        assert response.status_code == 201, response.data
        answer = client.post(
            f"/api/v1/models/p{protocol}/predict",
            headers=auth(keys.predict),
            json={"instances": iris.X[:5].tolist()},
        )
        assert answer.status_code == 200 and answer.get_json()["predictions"] == want


def test_protocol_0_pickles_of_forbidden_classes_are_still_refused(client, keys):
    import collections
    import pickle

    counter = pickle.dumps([collections.Counter(a=1)], protocol=0)
    # _reconstructor with a base other than a builtin type, then with a class
    # that is not allowed at all.
    odd_base = (
        b"ccopy_reg\n_reconstructor\n(csklearn.linear_model._logistic\n"
        b"LogisticRegression\ncnumpy\nndarray\nNtR."
    )
    not_a_class = (
        b"ccopy_reg\n_reconstructor\n(c_codecs\nencode\nc__builtin__\nobject\nNtR."
    )
    for data, refused in (
        (counter, "collections.Counter"),
        (odd_base, "copyreg._reconstructor"),
        (not_a_class, "copyreg._reconstructor"),
    ):
        response = upload(client, keys.admin, "bad", data, "model.pkl")
        assert response.status_code == 422, response.data
        error = response.get_json()["error"]
        assert error["code"] == "unsafe_model_file" and refused in error["message"]
