"""The pages as a new user meets them, through the Flask test client: security headers
from the app itself, the favicon, unique element ids, the predict form's messages, and
the admin pages' versions table, roll-back button and audit log."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser

import pytest

from app.extensions import db
from app.web.security_headers import HEADERS
from tests.conftest import auth, sign_in, upload

ALICE = ("alice", "alice password 1")
ROOT = ("root", "correct horse battery")


class Ids(HTMLParser):
    """Every id attribute of a page, in order."""

    def __init__(self):
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.ids += [value for name, value in attrs if name == "id"]


def duplicate_ids(html: str) -> list[str]:
    parser = Ids()
    parser.feed(html)
    return sorted(i for i, n in Counter(parser.ids).items() if n > 1)


@pytest.fixture
def site(app, keys, iris, iris_v2):
    client = app.test_client()
    assert upload(client, keys.admin, "iris", iris.as_skops()).status_code == 201
    return app


def test_the_app_sends_the_security_headers_itself(app, keys):
    client = app.test_client()
    responses = [
        client.get("/auth/login"),
        client.get("/nope"),
        client.get("/api/v1/models", headers=auth(keys.predict)),
        client.get("/static/css/app.css"),
    ]
    for response in responses:
        response.close()  # a static file's response holds it open
    assert [r.status_code for r in responses] == [200, 404, 200, 200]
    for response in responses:
        for name, value in HEADERS.items():
            assert response.headers.getlist(name) == [value], (
                response.request.path,
                name,
            )
    csp = HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert HEADERS["X-Frame-Options"] == "DENY"


def test_favicon_is_served_and_linked(app, keys):
    client = app.test_client()
    with client.get("/favicon.ico") as icon:
        assert icon.status_code == 200 and icon.data[:4] == b"\x00\x00\x01\x00"  # ICO
    login = client.get("/auth/login").text
    href = re.search(
        r'<link rel="icon" type="image/svg\+xml" href="([^"]+)"', login
    ).group(1)
    with client.get(href) as svg:
        assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
        assert svg.data.startswith(b"<svg")


def test_every_element_id_is_unique_on_every_page(site, keys):
    alice, admin = site.test_client(), site.test_client()
    sign_in(alice, *ALICE)
    sign_in(admin, *ROOT)
    pages = {
        "/auth/login": site.test_client().get("/auth/login"),
        "/": alice.get("/"),
        "/account": alice.get("/account"),
        "/models/iris": alice.get("/models/iris"),
        "/models/iris (errors)": alice.post(
            "/models/iris",
            data={
                "csrf_token": re.search(
                    r'name="csrf_token" value="([^"]+)"', alice.get("/models/iris").text
                ).group(1)
            },
        ),
        "/models/iris (result)": alice.post(
            "/models/iris",
            data={
                "csrf_token": re.search(
                    r'name="csrf_token" value="([^"]+)"', alice.get("/models/iris").text
                ).group(1),
                "f0": "5.1",
                "f1": "3.5",
                "f2": "1.4",
                "f3": "0.2",
            },
        ),
    }
    for path in (
        "/admin/",
        "/admin/models",
        "/admin/models/iris",
        "/admin/users",
        "/admin/keys",
        "/admin/requests",
        "/admin/audit",
        "/admin/upload",
    ):
        pages[path] = admin.get(path)
    for path, response in pages.items():
        assert response.status_code in (200, 400), (path, response.status_code)
        assert duplicate_ids(response.text) == [], path
    # The checker does find duplicates (two forms' CSRF fields once shared an id).
    assert duplicate_ids('<input id="csrf_token"><input id="csrf_token">') == [
        "csrf_token"
    ]


def test_predict_form_marks_every_bad_field_and_says_required(site, keys):
    client = site.test_client()
    token = sign_in(client, *ALICE)
    page = client.post(
        "/models/iris",
        data={"csrf_token": token, "f0": "", "f1": "3.5", "f2": "tall", "f3": ""},
    )
    assert page.status_code == 400
    text = page.text
    assert 'id="f0-error" class="error">required</p>' in text
    assert 'id="f2-error" class="error">&#39;tall&#39; is not a number</p>' in text
    assert 'id="f3-error" class="error">required</p>' in text
    assert 'id="f1-error"' not in text  # the good field is not marked
    assert text.count('aria-invalid="true"') == 3
    assert "see the marked fields" in text
    # No "nan" shown for the empty or bad fields; the random CSRF token and CSP
    # nonce are left out (one of them once held the letters "nan").
    shown = re.sub(r'(?:name="csrf_token"[^>]*value|nonce)="[^"]*"', "", text)
    assert not re.search(r"\bnan\b", shown, re.IGNORECASE)


def test_versions_page_offers_roll_back_only_when_there_is_a_version_to_go_back_to(
    site, keys, iris_v2
):
    admin = site.test_client()
    token = sign_in(admin, *ROOT)
    page = admin.get("/admin/models/iris").text
    assert "Roll back" not in page  # one version: nothing to go back to
    assert '<td class="row-actions">' in page
    client = site.test_client()
    assert upload(client, keys.admin, "iris", iris_v2.as_skops()).status_code == 201
    activate = client.post(
        "/api/v1/models/iris/versions/2/activate", headers=auth(keys.admin)
    )
    assert activate.status_code == 200
    page = admin.get("/admin/models/iris").text
    assert "Roll back to version 1</a>" in page
    # Version 1 archived: it cannot serve again, so the button goes away.
    admin.post("/admin/models/iris/versions/1/archive", data={"csrf_token": token})
    page = admin.get("/admin/models/iris").text
    assert "Roll back" not in page
    refused = client.post("/api/v1/models/iris/rollback", headers=auth(keys.admin))
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "nothing_to_roll_back"


def test_audit_log_shows_names_and_numbers_not_dicts_or_ids(site, keys, iris_v2):
    client = site.test_client()
    assert upload(client, keys.admin, "iris", iris_v2.as_skops()).status_code == 201
    assert (
        client.post(
            "/api/v1/models/iris/versions/2/activate", headers=auth(keys.admin)
        ).status_code
        == 200
    )
    assert (
        client.put(
            "/api/v1/models/iris/batching",
            headers=auth(keys.admin),
            json={"max_rows": 8, "max_wait_ms": 2},
        ).status_code
        == 200
    )
    with site.app_context():
        # An event written before details named versions by number (by id, then).
        from app.models import ModelVersion
        from app.observability import audit

        version = db.session.scalar(
            db.select(ModelVersion).where(ModelVersion.number == 2)
        )
        audit.record("alias.canary.clear", "iris", {"version_id": version.id})
        db.session.commit()
    admin = site.test_client()
    sign_in(admin, *ROOT)
    page = admin.get("/admin/audit").text
    details = re.findall(r'<dl class="details">(.*?)</dl>', page)
    assert details, page[-2000:]
    for cell in details:
        assert "{" not in cell and "_id" not in cell and "=" not in cell, cell
    assert "<dt>version</dt><dd>v2</dd>" in page  # the old id, shown as its number
    assert "<dt>from version</dt><dd>1</dd>" in page  # alias.stable 1 → 2
    assert "<dt>to</dt><dd>max rows 8, max wait ms 2" in page
    assert "<dt>from</dt><dd>max rows none, max wait ms none</dd>" in page


def test_upload_label_names_every_accepted_format(app, keys):
    admin = app.test_client()
    sign_in(admin, *ROOT)
    page = admin.get("/admin/upload").text
    assert "Model file (.skops, .joblib, .pkl, .onnx)" in page
