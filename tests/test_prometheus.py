"""deploy/prometheus/: promtool checks the scrape config and the rules and runs their
unit tests (each alert firing and not); then Debian's Prometheus scrapes a running
ModelDock (gunicorn, SQLite) with the metrics token, and its HTTP API gives back the
scraped series and the rules it loaded and evaluated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from sklearn.datasets import load_iris

from app.auth.credentials import create_api_key
from app.extensions import db
from app.models import User
from app.rollout import versions
from tests.conftest import build_app, make_keys
from tests.live import ROOT, free_port, gunicorn

DEPLOY = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")

# Skipped without the Debian package on a developer's machine, never in CI
# (make test installs it).
NO_PROMETHEUS = not (PROMTOOL and PROMETHEUS) and not os.environ.get("CI")
pytestmark = pytest.mark.skipif(
    NO_PROMETHEUS, reason="Debian's prometheus is not installed (make test does)"
)


def promtool(*args: str, cwd: Path = DEPLOY) -> str:
    """Run promtool; fail the test with its output unless it succeeds."""
    done = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_pass_promtool_check():
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml")


def test_config_passes_promtool_check(tmp_path):
    """The full check reads the rule files and the token file the config names."""
    folder = tmp_path / "prometheus"
    shutil.copytree(DEPLOY, folder)
    (folder / "modeldock-metrics-token").write_text("secret\n")
    output = promtool("check", "config", "prometheus.yml", cwd=folder)
    assert "SUCCESS: 1 rule files found" in output


def test_every_alert_is_complete_and_tested_firing_and_silent():
    """Each alert has a `for`, a severity, a summary and a description, and the
    promtool tests expect it to fire somewhere and to stay silent somewhere."""
    firing, silent = set(), set()
    for path in sorted((DEPLOY / "tests").glob("*.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    for rule in alert_rules():
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name
        assert name in firing, f"{name}: no promtool test where it fires"
        assert name in silent, f"{name}: no promtool test where it stays silent"


def test_promtool_unit_tests_pass():
    tests = sorted(str(p.relative_to(DEPLOY)) for p in (DEPLOY / "tests").glob("*.yml"))
    assert len(tests) >= 4
    output = promtool("test", "rules", *tests)
    assert output.count("SUCCESS") == len(tests), output


# --- a real Prometheus against a real ModelDock


def call(url: str, body: dict | None = None, headers: dict | None = None):
    """(status, JSON) of a GET, or of a POST when ``body`` is given."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def eventually(check, what: str, timeout: float = 60.0):
    """Call ``check`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class Prometheus:
    """Debian's prometheus on a free 127.0.0.1 port, its data in ``folder``."""

    def __init__(self, folder: Path, target: str, token: str):
        config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
        (job,) = config["scrape_configs"]
        (folder / "token").write_text(token)
        job["authorization"]["credentials_file"] = str(folder / "token")
        job["static_configs"] = [{"targets": [target]}]
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "prometheus.log"
        self.command = [
            PROMETHEUS,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    def __enter__(self):
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            eventually(self.ready, "Prometheus to start", timeout=30)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError("prometheus exited:\n" + self.log.read_text())
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> dict[str, float]:
        """Instant query: {series (labels as JSON): value}."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, answer = call(url)
        assert status == 200 and answer["status"] == "success", answer
        return {
            json.dumps(item["metric"], sort_keys=True): float(item["value"][1])
            for item in answer["data"]["result"]
        }


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_prometheus_scrapes_modeldock_and_evaluates_the_rules(tmp_path, iris):
    app = build_app(f"sqlite:///{tmp_path / 'modeldock.db'}", {})
    keys = make_keys(app)
    with app.app_context():
        versions.upload_version("iris", "iris.skops", iris.as_skops())
        _, feedback_key = create_api_key(
            db.session.get(User, keys.user_id), "labels", ["feedback"]
        )
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    app.extensions["modeldock"].close()
    metrics_token = "prometheus-scrape-token"
    (tmp_path / "multiproc").mkdir()
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'modeldock.db'}",
        "SECRET_KEY": "prometheus-test-secret",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        "MODELDOCK_METRICS_TOKEN": metrics_token,  # no MODELDOCK_METRICS_ALLOW
        "MODELDOCK_QUALITY_CACHE_SECONDS": "0",
        "MODELDOCK_REQUEST_LOG_FLUSH_SECONDS": "0.2",
        "MODELDOCK_VALIDATION_MEMORY_MB": "1024",
    }
    with (
        gunicorn(env, workers=2, log_path=tmp_path / "gunicorn.log") as port,
        Prometheus(tmp_path, f"127.0.0.1:{port}", metrics_token) as prometheus,
    ):
        base = f"http://127.0.0.1:{port}"
        assert call(base + "/metrics")[0] == 403  # the token is what lets it in
        up = 'up{job="modeldock"}'
        eventually(lambda: prometheus.query(up), "the first scrape")
        assert list(prometheus.query(up).values()) == [1.0]

        # Five requests of 10 rows; feedback for each row, every fourth one wrong.
        X, y = load_iris(return_X_y=True)
        rows = range(0, 150, 3)
        right = 0
        for request in range(5):
            chunk = list(rows)[request * 10 : request * 10 + 10]
            status, answer = call(
                base + "/api/v1/models/iris/predict",
                {"instances": X[chunk].tolist()},
                {
                    "Authorization": f"Bearer {keys.predict}",
                    "X-Request-ID": f"r{request}",
                },
            )
            assert status == 200, answer
            feedback = []
            for row, (index, predicted) in enumerate(
                zip(chunk, answer["predictions"], strict=True)
            ):
                truth = int(y[index]) if row % 4 else (int(y[index]) + 1) % 3
                right += predicted == truth
                feedback.append(
                    {"request_id": f"r{request}", "row": row, "label": truth}
                )

            def send(body=feedback):  # 404 until the log row is written
                status, answer = call(
                    base + "/api/v1/models/iris/feedback",
                    {"feedback": body},
                    {"Authorization": f"Bearer {feedback_key}"},
                )
                return status == 200

            eventually(send, "the request log to take the prediction", 20)

        requests = 'modeldock_requests_total{model="iris",status="200"}'
        eventually(
            lambda: list(prometheus.query(requests).values()) == [5.0],
            "five requests in Prometheus",
        )
        (series,) = prometheus.query(requests)
        assert json.loads(series)["version"] == "1"
        # A scrape after the last feedback: all 50 rows count.
        samples = 'modeldock_live_feedback_rows{model="iris",window="hour"}'
        eventually(
            lambda: list(prometheus.query(samples).values()) == [50.0],
            "the feedback in the live-quality gauges",
        )
        accuracy = 'modeldock_live_accuracy{model="iris",version="1",window="day"}'
        assert list(prometheus.query(accuracy).values()) == [pytest.approx(right / 50)]
        assert right < 50  # some feedback disagreed with the model

        # The rules: all loaded, evaluated without error; recording rules answer.
        expected = {rule["alert"] for rule in alert_rules()}

        def evaluated():
            status, answer = call(prometheus.url + "/api/v1/rules")
            assert status == 200, answer
            rules = [r for g in answer["data"]["groups"] for r in g["rules"]]
            done = all(r["lastEvaluation"] > "2000" for r in rules)
            return rules if done else None

        rules = eventually(evaluated, "every rule evaluated once")
        assert {r["name"] for r in rules if r["type"] == "alerting"} == expected
        assert [r for r in rules if r["health"] != "ok"] == []

        def moving_rate():
            # A rate needs a counter that moved between two scrapes; the first five
            # requests may all predate the series' first sample: one more per try.
            call(
                base + "/api/v1/models/iris/predict",
                {"instances": X[:1].tolist()},
                {"Authorization": f"Bearer {keys.predict}"},
            )
            return prometheus.query('modeldock:requests:rate5m{model="iris"} > 0')

        rate = eventually(moving_rate, "the request rate recorded")
        assert len(rate) == 1
        errors = 'modeldock:request_errors:ratio_rate5m{model="iris"}'
        assert list(prometheus.query(errors).values()) == [0.0]
        firing = prometheus.query('ALERTS{alertstate="firing"}')
        assert firing == {}, firing
