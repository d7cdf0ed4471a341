"""The OpenAPI document: valid 3.1, one operation per route (no more, no fewer), a
docs page on vendored assets, and schemathesis fuzzing every route against it."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis import checks as st_checks

from app import create_app
from app.apidocs.document import build_document, openapi_path
from app.apidocs.operations import OPERATIONS
from app.web.paths import PAGE_BLUEPRINTS
from tests.conftest import auth, make_keys, running_app, upload
from tests.live_server import serve

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def routes(app) -> set[tuple[str, str]]:
    return {
        (openapi_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - IGNORED_METHODS
    }


def documented(document) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
    }


def test_document_is_valid_openapi_3_1(client):
    with client.get("/api/openapi.json") as response:
        document = response.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_is_documented_and_every_documented_route_exists(app):
    document = build_document(app)
    missing = routes(app) - documented(document)
    assert missing == set(), "routes missing from the document"
    invented = documented(document) - routes(app)
    assert invented == set(), "documented routes that do not exist"


def test_every_api_route_has_a_written_operation(app):
    """Only browser pages are documented from the URL map; API routes are written."""
    api = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - IGNORED_METHODS
        if rule.endpoint.split(".")[0] not in PAGE_BLUEPRINTS
    }
    assert api - set(OPERATIONS) == set()
    assert any(rule.startswith("/v2/") for rule, _ in api)


def test_auth_is_documented_and_public_routes_are_marked(app):
    document = build_document(app)
    schemes = document["components"]["securitySchemes"]
    assert (schemes["bearerAuth"]["type"], schemes["bearerAuth"]["scheme"]) == (
        "http",
        "bearer",
    )
    assert (schemes["apiKeyHeader"]["in"], schemes["apiKeyHeader"]["name"]) == (
        "header",
        "X-API-Key",
    )
    assert document["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}]
    keyed = {
        (p, m)
        for p, item in document["paths"].items()
        for m, op in item.items()
        if "security" not in op
    }
    assert ("/v2/models/{name}/infer", "post") in keyed
    assert ("/v1/models/{name}:predict", "post") in keyed
    assert ("/api/v1/models/{name}/predict", "post") in keyed
    for path, item in document["paths"].items():  # every keyed route documents 401
        for method, operation in item.items():
            if (path, method) in keyed:
                assert "401" in operation["responses"], (path, method)


def test_protocol_routes_document_the_plain_error_shape(app):
    document = build_document(app)
    for path, item in document["paths"].items():
        for operation in item.values():
            refs = [r.get("$ref", "") for r in operation["responses"].values()]
            if path.startswith(("/v1/", "/v2")):
                assert all("Native" not in ref for ref in refs), path
            elif path.startswith("/api/v1/"):
                assert all("Plain" not in ref for ref in refs), path


def test_docs_page_uses_only_vendored_assets(client):
    with client.get("/api/docs") as page:
        html = page.data.decode()
    assert page.status_code == 200
    assets = [a for a in re.findall(r'(?:src|href)="([^"]+)"', html) if a != "data:,"]
    assert assets and all(
        a.startswith("/") and not a.startswith("//") for a in assets
    ), assets
    assert "http://" not in html and "https://" not in html
    for asset in assets:
        with client.get(asset) as response:
            assert response.status_code == 200, asset
            assert len(response.data) > 100, asset
    with client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js") as bundle:
        assert b"SwaggerUIBundle" in bundle.data


# --- schemathesis: every operation, a bounded number of examples each


@pytest.fixture(scope="module")
def target(tmp_path_factory, iris):
    """A served app with the demo model (the document's examples name it) and a key.

    On PostgreSQL, the production database, whose stricter types (32-bit version
    numbers, no NUL in text) are where fuzzing finds server errors.
    """
    with running_app("postgresql", tmp_path_factory.mktemp("db")) as app:
        keys = make_keys(app)
        client = app.test_client()
        assert upload(client, keys.admin, "demo", iris.as_skops()).status_code == 201
        with serve(app) as address:
            # The admin key also has the predict scope: every route is reachable.
            yield f"http://{address}", auth(keys.admin)


# What /api/openapi.json serves (building it needs an app, not a database). Browser
# pages are left out: they take a signed-in session and CSRF-protected forms, so with
# an API key every one of them only redirects to the sign-in page.
schema = schemathesis.openapi.from_dict(
    build_document(
        create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": "sqlite://"})
    )
).exclude(tag="browser")


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_document(case, target):
    base_url, headers = target
    case.call_and_validate(
        base_url=base_url,
        headers=headers,
        timeout=30,
        excluded_checks=[st_checks.positive_data_acceptance],
    )
