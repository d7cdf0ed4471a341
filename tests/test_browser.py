"""The browser UI in a real browser: Debian's Chromium (headless, via Playwright)
against gunicorn with two workers on 127.0.0.1 and a fresh PostgreSQL schema.

The tests run in file order and share one server: the admin flow builds on the
model the first tests predicted with. Screenshots of the main pages are saved in
test-artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from playwright import sync_api

from tests.conftest import build_app, clear_of_the_hour, database, make_keys

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN = ("root", "correct horse battery")
ALICE = ("alice", "alice password 1")
FEATURES = ["x0", "x1", "x2", "x3"]

# Skipped without Chromium on a developer's machine, never in CI (it must run there).
NO_CHROMIUM = not os.access(CHROMIUM, os.X_OK) and not os.environ.get("CI")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        NO_CHROMIUM, reason="Debian's chromium is not installed (make test installs it)"
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + log.read_text()[-3000:])
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            error.close()  # it holds the response open
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer:\n" + log.read_text()[-3000:])


class Server:
    """The app under gunicorn, with what the tests need to know about it."""

    def __init__(self, url: str, keys, app):
        self.url, self.keys, self.app = url, keys, app

    def api(
        self, path: str, key: str, body: dict | None = None, method: str | None = None
    ):
        """Call the JSON API with an API key (not the browser session)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def server(tmp_path_factory, iris):
    tmp = tmp_path_factory.mktemp("browser")
    with database("postgresql", tmp) as (url, options):
        search_path = options["connect_args"]["options"]  # -csearch_path=<schema>
        app = build_app(url, options)
        keys = make_keys(app)
        with app.app_context():
            from app.extensions import db
            from app.rollout import versions as service

            service.upload_version(
                "iris", "iris.skops", iris.as_skops(), description="Iris species"
            )
            db.session.commit()
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": f"{url}?options={search_path.replace('=', '%3D')}",
            "SECRET_KEY": "browser-test-secret",
            "MODELDOCK_ROUTING_REFRESH_SECONDS": "0",
            "MODELDOCK_REQUEST_LOG_FLUSH_SECONDS": "0.2",
            "MODELDOCK_VALIDATION_MEMORY_MB": "1024",
            "MODELDOCK_CSV_WAIT_SECONDS": "0",  # always show the progress page
            "MODELDOCK_RATELIMIT_LOGIN": "100 per minute",
            # Drift counts merged and their statistics recomputed within a second.
            "MODELDOCK_DRIFT_FLUSH_SECONDS": "0.3",
            "MODELDOCK_DRIFT_REFRESH_SECONDS": "0.3",
        }
        log = tmp / "gunicorn.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    "2",
                    "--timeout",
                    "60",
                    "--graceful-timeout",
                    "2",
                    "wsgi:app",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_up(f"http://127.0.0.1:{port}", process, log)
            yield Server(f"http://127.0.0.1:{port}", keys, app)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser, server, viewport=(1280, 860)):
    context = browser.new_context(
        base_url=server.url,
        accept_downloads=True,
        viewport={"width": viewport[0], "height": viewport[1]},
    )
    context.set_default_timeout(15_000)
    return context.new_page()


def sign_in(page, who) -> None:
    page.goto("/auth/login")
    page.get_by_label("Username").fill(who[0])
    page.get_by_label("Password").fill(who[1])
    page.get_by_role("button", name="Sign in").click()
    sync_api.expect(page.locator(".flash-success")).to_contain_text(
        f"Signed in as {who[0]}"
    )


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def alice(browser, server):
    page = new_page(browser, server)
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def admin(browser, server):
    page = new_page(browser, server)
    sign_in(page, ADMIN)
    yield page
    page.context.close()


def test_login_then_predict_one_row_with_the_form(alice, server, iris):
    page = alice
    page.goto("/")
    assert "/auth/login" in page.url  # signed-out visitors are sent to login
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Sign in").click()
    sync_api.expect(page.locator(".flash-error")).to_have_text(
        "Wrong username or password."
    )
    shot(page, "01-login")
    sign_in(page, ALICE)
    shot(page, "02-models")
    page.get_by_role("link", name="iris").click()
    sync_api.expect(page.locator("#active-version")).to_contain_text(
        "Active version: 1"
    )
    for row in iris.X[[0, 70, 140]]:
        for name, value in zip(FEATURES, row, strict=True):
            page.get_by_label(name, exact=True).fill(str(value))
        page.get_by_role("button", name="Predict", exact=True).click()
        expected = iris.estimator.predict(row.reshape(1, -1))[0]
        sync_api.expect(page.locator("#prediction")).to_have_text(str(expected))
        shown = page.locator("#result table td:nth-child(2)").all_inner_texts()
        np.testing.assert_allclose(
            [float(p) for p in shown],
            iris.estimator.predict_proba(row.reshape(1, -1))[0],
            atol=1e-4,
        )
    shot(page, "03-predict-form")
    page.get_by_label("x1", exact=True).fill("many")
    page.get_by_role("button", name="Predict", exact=True).click()
    sync_api.expect(page.locator("#f1-error")).to_contain_text("'many' is not a number")
    phone = new_page(page.context.browser, server, viewport=(390, 844))
    phone.context.add_cookies(page.context.cookies())
    phone.goto("/models/iris")
    shot(phone, "04-predict-phone")
    phone.context.close()


def _csv(rows: np.ndarray, extra: list[str]) -> str:
    """Columns in a shuffled order, with an id and a comment column kept as-is."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "x3", "comment", "x1", "x0", "x2"])
    for i, row in enumerate(rows):
        writer.writerow([i, row[3], extra[i % len(extra)], row[1], row[0], row[2]])
    return out.getvalue()


def test_csv_upload_table_chart_and_download(alice, server, iris, tmp_path):
    page = alice
    rows = iris.X[np.arange(120) % 150]
    comments = ["plain", '=HYPERLINK("http://x")', "-3", "@SUM(A1)", "+1+2"]
    path = tmp_path / "flowers.csv"
    path.write_text(_csv(rows, comments))
    expected = iris.estimator.predict(rows)
    page.goto("/models/iris")
    page.get_by_label("CSV file", exact=True).set_input_files(str(path))
    page.get_by_role("button", name="Upload and predict").click()
    sync_api.expect(page.locator("h1")).to_have_text(
        "Results for flowers.csv", timeout=30_000
    )
    header = page.locator("#results thead th").all_inner_texts()
    assert header == [
        "#",
        "id",
        "x3",
        "comment",
        "x1",
        "x0",
        "x2",
        "prediction",
        "probability_0",
        "probability_1",
        "probability_2",
    ]
    first = page.locator("#results tbody tr")
    assert first.count() == 50
    predicted = page.locator("#results tbody td:nth-child(8)").all_inner_texts()
    assert [int(p) for p in predicted] == expected[:50].tolist()
    assert page.locator("svg.chart rect").count() >= 3  # one bar per class
    counts = page.locator("figcaption").inner_text()
    assert counts == ", ".join(f"{c}: {int((expected == c).sum())}" for c in (0, 1, 2))
    shot(page, "05-csv-results")
    page.get_by_role("link", name="Next →").first.click()
    page.get_by_role("link", name="Next →").first.click()
    assert page.locator("#results tbody tr").count() == 20  # 120 rows, 50 a page
    predicted = page.locator("#results tbody td:nth-child(8)").all_inner_texts()
    assert [int(p) for p in predicted] == expected[100:].tolist()

    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    table = list(csv.reader(io.StringIO(Path(info.value.path()).read_text())))
    assert table[0] == header[1:]
    body = table[1:]
    assert [int(r[6]) for r in body] == expected.tolist()
    np.testing.assert_allclose(
        [[float(v) for v in r[7:]] for r in body],
        iris.estimator.predict_proba(rows),
        rtol=1e-9,
    )
    assert [r[0] for r in body] == [str(i) for i in range(120)]  # extras echoed
    assert {r[2] for r in body} == {
        "plain",
        '\'=HYPERLINK("http://x")',
        "-3",
        "'@SUM(A1)",
        "'+1+2",
    }

    path.write_text("x0,x1,id\n1,2,3\n")
    page.goto("/models/iris")
    page.get_by_label("CSV file", exact=True).set_input_files(str(path))
    page.get_by_role("button", name="Upload and predict").click()
    sync_api.expect(page.locator("#file-error")).to_contain_text(
        "missing column(s): x2, x3"
    )


def test_large_csv_shows_progress_then_results(alice, server, iris, tmp_path):
    rng = np.random.default_rng(7)
    rows = rng.uniform(0.1, 7.0, size=(100_000, 4)).round(2)
    path = tmp_path / "large.csv"
    np.savetxt(path, rows, delimiter=",", header="x0,x1,x2,x3", comments="", fmt="%.2f")
    page = alice
    page.goto("/models/iris")
    page.get_by_label("CSV file", exact=True).set_input_files(str(path))
    page.get_by_role("button", name="Upload and predict").click()
    sync_api.expect(page.locator("h1")).to_have_text("Predicting large.csv")
    sync_api.expect(page.locator("#job-progress")).to_have_attribute("max", "100000")
    shot(page, "06-csv-progress")
    # The page refreshes itself (no JavaScript needed) until the results are ready.
    sync_api.expect(page.locator("h1")).to_have_text(
        "Results for large.csv", timeout=60_000
    )
    sync_api.expect(page.locator(".summary")).to_contain_text("100,000 rows")
    predicted = page.locator("#results tbody td:nth-child(6)").all_inner_texts()
    assert [int(p) for p in predicted] == iris.estimator.predict(rows[:50]).tolist()


def test_account_key_is_shown_once_then_only_its_prefix(alice, server):
    page = alice
    page.goto("/account")
    page.get_by_label("Name", exact=True).fill("laptop script")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").input_value()
    assert re.fullmatch(r"mdk_[0-9a-f]{8}_\S{40,}", key)
    shot(page, "07-account-new-key")
    assert server.api("/api/v1/models", key)["models"][0]["name"] == "iris"
    page.goto("/account")
    assert key not in page.content() and key[:12] in page.content()
    page.get_by_role("link", name=f"Revoke {key[:12]}").click()
    page.get_by_role("button", name="Revoke key").click()
    sync_api.expect(page.locator(".flash-success")).to_contain_text("revoked")
    with pytest.raises(urllib.error.HTTPError) as refused:
        server.api("/api/v1/models", key)
    refused.value.close()
    assert refused.value.code == 401


def test_admin_uploads_activates_and_rolls_back(admin, server, iris, iris_v2, tmp_path):
    page = admin
    X = iris.X
    differs = np.flatnonzero(iris.estimator.predict(X) != iris_v2.estimator.predict(X))
    row = X[differs[0]]
    page.goto("/admin/models")
    sync_api.expect(page.locator("#models .active-version")).to_have_text("1")
    shot(page, "08-admin-models")
    page.get_by_role("link", name="iris").click()
    # One version, never replaced: nothing to roll back to, so no such button.
    assert page.get_by_role("link", name=re.compile("Roll back")).count() == 0
    page.get_by_role("link", name="Upload a new version").click()
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"definitely not a pickle")
    page.get_by_label("Model file").set_input_files(str(junk))
    page.get_by_role("button", name="Upload and validate").click()
    sync_api.expect(page.locator("#file-error")).to_be_visible()
    assert page.get_by_label("Model name").input_value() == "iris"
    shot(page, "09-admin-upload-error")
    good = tmp_path / "iris-v2.skops"
    good.write_bytes(iris_v2.as_skops())
    page.get_by_label("Model file").set_input_files(str(good))
    page.get_by_label("Version notes").fill("stronger regularisation")
    page.get_by_label("Metrics (JSON object)").fill('{"accuracy": 0.9}')
    page.get_by_role("button", name="Upload and validate").click()
    sync_api.expect(page.locator(".flash-success")).to_contain_text(
        "Stored iris version 2", timeout=60_000
    )
    sync_api.expect(page.locator("#version-2")).to_contain_text(
        "stronger regularisation"
    )
    sync_api.expect(page.locator("#active-version")).to_have_text("1")
    shot(page, "10-admin-versions")
    # Each row's Actions cell sits under the Actions heading (same column box).
    heading = page.locator("#versions thead th").last.bounding_box()
    for number in (1, 2):
        cell = page.locator(f"#version-{number} td").last.bounding_box()
        assert (
            abs(cell["x"] - heading["x"]) < 1
            and abs(cell["width"] - heading["width"]) < 1
        ), (heading, cell)

    page.get_by_role("link", name="Activate version 2").click()
    sync_api.expect(page.locator("h1")).to_have_text("Activate version 2 of iris?")
    page.get_by_label("Reason").fill("try the regularised one")
    shot(page, "11-admin-confirm")
    page.get_by_role("button", name="Activate version 2").click()
    sync_api.expect(page.locator("#active-version")).to_have_text("2")

    def served_version(expected_model) -> int:
        body = server.api(
            "/api/v1/models/iris/predict",
            server.keys.predict,
            {"instances": [row.tolist()]},
        )
        expected = expected_model.predict(row.reshape(1, -1)).tolist()
        assert body["predictions"] == expected
        return body["version"]

    assert served_version(iris_v2.estimator) == 2  # every worker switched
    page.goto("/models/iris")
    sync_api.expect(page.locator("#active-version")).to_contain_text(
        "Active version: 2"
    )
    for name, value in zip(FEATURES, row, strict=True):
        page.get_by_label(name, exact=True).fill(str(value))
    page.get_by_role("button", name="Predict", exact=True).click()
    sync_api.expect(page.locator("#prediction")).to_have_text(
        str(iris_v2.estimator.predict(row.reshape(1, -1))[0])
    )

    page.goto("/admin/models/iris")
    page.get_by_role("link", name="Roll back to version 1").click()
    page.get_by_role("button", name="Roll back").click()
    sync_api.expect(page.locator(".flash-success")).to_contain_text(
        "serves version 1 again"
    )
    sync_api.expect(page.locator("#active-version")).to_have_text("1")
    assert served_version(iris.estimator) == 1

    page.goto("/admin/audit")
    actions = page.locator("#audit tbody td:nth-child(3)").all_inner_texts()
    assert actions[:3] == ["alias.stable", "alias.stable", "version.upload"]
    sync_api.expect(page.locator("#audit")).to_contain_text("try the regularised one")
    shot(page, "12-admin-audit")


def test_admin_canary_promote_and_roll_back(admin, server):
    """Issue 5 through the pages: canary at 100 %, promote, then roll back."""
    page = admin

    def served() -> int:
        return server.api(
            "/api/v1/models/iris/predict",
            server.keys.predict,
            {"instances": [[5.1, 3.5, 1.4, 0.2]]},
        )["version"]

    page.goto("/admin/models/iris")
    sync_api.expect(page.locator("#active-version")).to_have_text("1")
    page.get_by_role("link", name="Canary version 2").click()
    page.get_by_label("Share of clients on the canary (%)").fill("100")
    page.get_by_label("Reason").fill("canary through the UI")
    page.get_by_role("button", name="Start canary").click()
    sync_api.expect(page.locator("#canary-version")).to_have_text("2")
    sync_api.expect(page.locator("#canary-weight")).to_have_text("100")
    shot(page, "13-admin-canary")
    assert served() == 2  # every client is on the canary at 100 %

    page.get_by_role("link", name="Promote canary (version 2)").click()
    page.get_by_role("button", name="Promote canary").click()
    sync_api.expect(page.locator(".flash-success")).to_contain_text("Promoted")
    sync_api.expect(page.locator("#active-version")).to_have_text("2")
    sync_api.expect(page.locator("#rollout")).to_contain_text("No canary")
    assert served() == 2

    page.get_by_role("link", name="Roll back to version 1").click()
    page.get_by_role("button", name="Roll back").click()
    sync_api.expect(page.locator("#active-version")).to_have_text("1")
    assert served() == 1
    page.goto("/admin/audit")
    actions = page.locator("#audit tbody td:nth-child(3)").all_inner_texts()
    assert actions[:4] == [
        "alias.stable",
        "alias.stable",
        "alias.canary.clear",
        "alias.canary",
    ]


def test_admin_overview_pages(admin, server):
    page = admin
    time.sleep(0.5)  # request logs are written in batches every 0.2 s
    page.goto("/admin/")
    sync_api.expect(page.locator("#version-stats")).to_contain_text("iris v2")
    assert page.locator("svg.chart").count() == 3
    shot(page, "13-admin-dashboard")
    page.goto("/admin/requests?model=iris&status=ok")
    assert page.locator("#requests tbody tr").count() >= 3
    shot(page, "14-admin-requests")
    page.goto("/admin/users")
    shot(page, "15-admin-users")
    page.goto("/admin/keys")
    shot(page, "16-admin-keys")


def test_non_admin_gets_403_and_visitors_go_to_login(alice, browser, server):
    for path in (
        "/admin/",
        "/admin/models",
        "/admin/users",
        "/admin/upload",
        "/admin/models/iris/versions/1/activate",
    ):
        response = alice.goto(path)
        assert response.status == 403, path
        sync_api.expect(alice.locator("h1")).to_have_text("Error 403")
    shot(alice, "17-forbidden")
    visitor = new_page(browser, server)
    try:
        visitor.goto("/admin/models")
        assert "/auth/login?next=" in visitor.url
    finally:
        visitor.context.close()


def test_form_post_without_csrf_token_is_refused(alice, server):
    page = alice
    page.goto("/account")
    page.get_by_label("Name", exact=True).fill("forged")
    page.locator("form[action='/account/keys'] input[name=csrf_token]").evaluate(
        "element => element.remove()"
    )
    with page.expect_response(lambda r: r.url.endswith("/account/keys")) as info:
        page.get_by_role("button", name="Create key").click()
    assert info.value.status == 403
    sync_api.expect(page.locator("main")).to_contain_text("The form was refused")
    page.goto("/account")
    sync_api.expect(page.locator("#keys")).not_to_contain_text("forged")


WATCHED = "iris-watch"
SHIFTED = "x1"  # sepal width, as if its sensor read 3 standard deviations high


def upload_with_reference(server, data: bytes, reference: np.ndarray) -> dict:
    """POST a version and its drift reference (a CSV of training rows) as admin."""
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    lines = [
        ",".join(FEATURES),
        *(",".join(map(str, row.tolist())) for row in reference),
    ]
    boundary, body = encode_multipart(
        {
            "file": FileStorage(io.BytesIO(data), filename="m.skops", name="file"),
            "reference": FileStorage(
                io.BytesIO("\n".join(lines).encode()),
                filename="train.csv",
                name="reference",
            ),
        }
    )
    request = urllib.request.Request(
        f"{server.url}/api/v1/models/{WATCHED}/versions",
        data=body,
        headers={
            "Authorization": f"Bearer {server.keys.admin}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def keys_on_each_side(server, weight: int) -> tuple[str, str]:
    """Two of alice's API keys: one routed to stable, one to the canary (routing
    is sticky per key: the canary takes the keys whose bucket is below its weight)."""
    from app.auth.credentials import create_api_key
    from app.extensions import db
    from app.models import User
    from app.serving.canary import bucket

    sides: dict[bool, str] = {}
    with server.app.app_context():
        alice = db.session.scalar(db.select(User).filter_by(username=ALICE[0]))
        while len(sides) < 2:
            row, key = create_api_key(
                alice, f"client {len(sides)}", ["predict", "feedback"]
            )
            db.session.flush()
            sides.setdefault(bucket(WATCHED, f"key:{row.id}") < weight, key)
        db.session.commit()
    return sides[False], sides[True]


def until(condition, seconds: float = 30, what: str = ""):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def post_feedback(server, key: str, items: list[dict]) -> None:
    """Feedback is accepted once the request log is written (batched, 0.2 s)."""

    def accepted() -> bool:
        try:
            server.api(f"/api/v1/models/{WATCHED}/feedback", key, {"feedback": items})
        except urllib.error.HTTPError as error:
            error.close()
            if error.code != 404:
                raise
            return False
        return True

    until(accepted, what="the request log")


def drift_computed(server) -> bool:
    """Has a worker's background refresh computed today's drift window of both
    versions, with every row counted? (Read only: nothing here writes.)"""
    from app.extensions import db
    from app.models import DriftWindow, MLModel, ModelVersion

    with server.app.app_context():
        windows = db.session.execute(
            db.select(DriftWindow.rows, DriftWindow.generation, DriftWindow.computed)
            .join(ModelVersion, ModelVersion.id == DriftWindow.version_id)
            .join(MLModel, MLModel.id == ModelVersion.model_id)
            .where(MLModel.name == WATCHED, DriftWindow.kind == "day")
        ).all()
        db.session.remove()
    return len(windows) == 2 and all(
        rows == 300 and computed == generation for rows, generation, computed in windows
    )


def section_shot(page, name: str, first: str, last: str) -> None:
    """A screenshot of the part of the page from ``first`` down to ``last``."""
    scrolled = page.evaluate("window.scrollY")  # boxes are relative to the viewport
    top = page.locator(first).bounding_box()
    bottom = page.locator(last).bounding_box()
    page.screenshot(
        path=str(SHOTS / f"{name}.png"),
        full_page=True,
        clip={
            "x": 0,
            "y": scrolled + top["y"] - 8,
            "width": page.viewport_size["width"],
            "height": bottom["y"] + bottom["height"] - top["y"] + 16,
        },
    )


def test_admin_model_page_shows_the_canary_comparison_and_drift(admin, server, iris):
    """Issue 15 in a browser: a canary that is worse than stable, and a feature that
    drifted on both, as the admin model page shows them."""
    clear_of_the_hour()  # one day window for all of its traffic
    import skops.io
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y)
    assert upload_with_reference(server, iris.as_skops(), X)["version"] == 1
    assert upload_with_reference(server, skops.io.dumps(stump), X)["version"] == 2
    server.api(
        f"/api/v1/models/{WATCHED}/canary",
        server.keys.admin,
        {"version": 2, "weight": 50, "reason": "try the stump"},
        method="PUT",
    )
    stable_key, canary_key = keys_on_each_side(server, 50)

    shifted = X.copy()
    column = FEATURES.index(SHIFTED)
    shifted[:, column] += 3 * X[:, column].std()
    accuracy = {}
    for key, version, model in (
        (stable_key, 1, iris.estimator),
        (canary_key, 2, stump),
    ):
        items = []
        for rows in (X, shifted):
            body = server.api(
                f"/api/v1/models/{WATCHED}/predict", key, {"instances": rows.tolist()}
            )
            assert body["version"] == version
            items += [
                {"request_id": body["request_id"], "row": i, "label": int(label)}
                for i, label in enumerate(y)
            ]
        post_feedback(server, key, items)
        predicted = model.predict(np.vstack([X, shifted]))
        accuracy[version] = float(np.mean(predicted == np.concatenate([y, y])))
    assert accuracy[1] - accuracy[2] > 0.1  # the stump is clearly worse
    until(lambda: drift_computed(server), what="the background drift refresh")

    page = admin
    page.goto(f"/admin/models/{WATCHED}")
    shot(page, "admin-model-monitoring")
    verdict = page.locator("#canary-verdict")
    sync_api.expect(verdict).to_contain_text("No, worse")
    difference = (accuracy[2] - accuracy[1]) * 100
    sync_api.expect(verdict).to_contain_text(f"difference {difference:+.1f} points")
    low, high = (
        float(v)
        for v in re.search(
            r"points \[([-+][\d.]+), ([-+][\d.]+)\]", verdict.inner_text()
        ).groups()
    )
    assert low < difference < high < 0
    sync_api.expect(verdict).to_contain_text(
        "from 300 canary and 300 stable rows with feedback"
    )
    section_shot(page, "admin-model-canary-comparison", "#live-quality", "#quality")
    for alias in ("stable", "canary"):
        sync_api.expect(page.locator(f"#drift-{SHIFTED}-{alias}")).to_have_text("drift")
        for other in set(FEATURES) - {SHIFTED}:
            sync_api.expect(page.locator(f"#drift-{other}-{alias}")).to_have_text(
                "stable"
            )
    section_shot(page, "admin-model-drift", "#drift", "#drift ~ .charts")
