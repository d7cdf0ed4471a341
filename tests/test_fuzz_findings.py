"""Server errors schemathesis found while fuzzing the OpenAPI document, pinned down."""

from __future__ import annotations

import json

from app.extensions import db
from app.models import MLModel
from tests.conftest import auth


def test_tutorial_features_must_be_a_list(client, keys):
    response = client.post(
        "/predict",
        data=json.dumps({"features": {"a": 1}}),
        headers=auth(keys.predict),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "features"


def test_version_numbers_beyond_32_bits_are_not_found(app, client, keys):
    with app.app_context():
        db.session.add(MLModel(name="demo", task="classification"))
        db.session.commit()
    for path in (
        "/api/v1/models/demo/versions/144115188075855871",
        "/api/v1/models/demo/versions/2147483648",
    ):
        response = client.get(path, headers=auth(keys.predict))
        assert response.status_code == 404, response.data
        assert response.get_json()["error"]["code"] == "version_not_found"
    archive = client.post(
        "/api/v1/models/demo/versions/99999999999999999999/archive",
        headers=auth(keys.admin),
    )
    assert archive.status_code == 404


def test_deeply_nested_json_is_a_400_not_a_crash(client, keys):
    for path in (
        "/api/v1/models/demo/predict",
        "/v1/models/demo:predict",
        "/v2/models/demo/infer",
    ):
        response = client.post(
            path,
            data="[" * 100_000,
            headers=auth(keys.predict),
            content_type="application/json",
        )
        # The model does not exist, but the body is judged first where it is parsed
        # before the lookup; either way no 500.
        assert response.status_code in (400, 404), (path, response.status_code)
    with client.post(
        "/predict",
        data="[" * 100_000,
        headers=auth(keys.predict),
        content_type="application/json",
    ) as response:
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "malformed_json"


def test_admin_reason_must_be_a_string_in_an_object(client, keys):
    for body in ('{"reason": {}}', "[null, null]", "null", '{"reason": '):
        response = client.post(
            "/api/v1/models/demo/rollback",
            data=body,
            headers=auth(keys.admin),
            content_type="application/json",
        )
        assert response.status_code == 400, body


def test_html_405_says_which_methods_are_allowed(client):
    with client.open("/auth/logout", method="TRACE") as response:
        assert response.status_code == 405
        assert "POST" in response.headers["Allow"]
