"""Bad input that used to slip through: huge numbers, huge strings, odd datatypes."""

from __future__ import annotations

import json

import pytest

from app.errors import APIError
from app.extensions import db
from app.models import MLModel
from app.serving import csvio
from tests.conftest import auth, sign_in, upload

HUGE = ("99999999999999999999", "2147483648", "9" * 400)


# --- numbers in URLs, query strings and JSON bodies are range-checked ----------------

def test_request_log_filters_refuse_huge_and_odd_numbers_readably(app, keys):
    client = app.test_client()
    sign_in(client, "root", "correct horse battery")
    for version in (*HUGE, "-1", "0", "²"):
        page = client.get(f"/admin/requests?version={version}")
        assert page.status_code == 200, (version, page.status_code)
        assert "Ignored: version must be a whole number from 1 to 2147483647" \
            in page.text
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
        for path in (f"/admin/users/{number}/disable", f"/admin/keys/{number}/revoke",
                     f"/admin/models/demo/versions/{number}/activate",
                     f"/account/keys/{number}/revoke"):
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
        response = client.get(f"/api/v1/models/demo/versions/{number}",
                              headers=auth(keys.predict))
        assert response.status_code == 404
        error = response.get_json()["error"]
        assert error["code"] == "version_not_found" and error["field"] == "version"
        assert "go up to 2147483647" in error["message"]
        for path in (f"/v1/models/demo/versions/{number}:predict",
                     f"/v2/models/demo/versions/{number}/infer"):
            response = client.post(path, json={}, headers=auth(keys.predict))
            assert response.status_code == 404, path
            assert "go up to 2147483647" in response.get_json()["error"]
    for body in ({"version": 10**20, "weight": 10}, {"version": 1, "weight": 10**20},
                 {"version": -1, "weight": 10}):
        response = client.put("/api/v1/models/demo/canary", json=body,
                              headers=auth(keys.admin))
        assert response.status_code == 400, body
        assert response.get_json()["error"]["code"] in {"invalid_version",
                                                        "invalid_weight"}
    response = client.get("/api/v1/models/demo/shadow?hours=99999999999999999999",
                          headers=auth(keys.admin))
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
            {"instances": [[huge, 1, 2, 3]]}, {"instances": [{huge: 1}]},
            {"inputs": {huge: [1]}}],
        "/v1/models/iris:predict": [
            {"instances": [[huge, 1, 2, 3]]}, {"instances": [{huge: [1, 2]}]}],
        "/v2/models/iris/infer": [
            {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4],
                         "data": [huge, 1, 2, 3]}]},
            {"inputs": [{"name": huge, "datatype": "BYTES", "shape": [1, 4],
                         "data": [huge, "1", "2", "3"]}]}],
    }
    for path, cases in bodies.items():
        for body in cases:
            response = client.post(path, data=json.dumps(body),
                                   content_type="application/json",
                                   headers=auth(keys.predict))
            assert response.status_code == 400, (path, response.data[:300])
            assert len(response.data) < 2000, (path, response.data[:300])
            assert "AAAAAAAAAA" in response.text  # a prefix still says which value
    schema = {"feature_names": list("abcd"), "n_features": 4}
    cell = huge[:100_000]  # the csv module's own limit is 131072 per field
    parsed = csvio.read_csv(f"a,b,c,d\n{cell},1,2,3\n".encode(), schema, 10)
    with pytest.raises(APIError) as error:
        csvio.to_matrix(parsed, 0, 1, schema)
    assert error.value.code == "non_numeric_value" and len(error.value.message) < 200
