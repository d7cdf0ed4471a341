"""End to end: gunicorn (4 workers) behind nginx with TLS, on the running PostgreSQL
and Redis, checked over HTTPS like a client on the internet would see it.

nginx is installed by `make test` (apt); this test only checks that it is there.
Everything binds 127.0.0.1 on free high ports and is stopped by pid at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest
import redis
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import POSTGRES_URL
from tests.stack import (
    Client,
    children,
    env_with,
    free_port,
    openssl_handshake,
    start_logged,
    stop,
    wait_for,
    wait_for_port,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "modeldock.test"
ORIGIN = "https://app.example"
TOKEN = "e2e-metrics-token"
SHARED_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PREDICT = "/api/v1/models/demo/predict"


@dataclass
class Stack:
    tmp: Path
    cert: Path
    database_url: str
    prefix: str
    keys: dict[str, str]
    iris_X: np.ndarray
    iris_predict: object
    app_port: int
    https_port: int
    http_port: int
    outage_port: int
    redis_port: int
    gunicorn: subprocess.Popen | None = None
    outage_gunicorn: subprocess.Popen | None = None
    nginx: subprocess.Popen | None = None
    own_redis: subprocess.Popen | None = None
    reached_app: int = 0  # prediction POSTs answered by the app (not by nginx)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def client(self) -> Client:
        return Client(HOST, self.cert)

    def post(
        self,
        key: str,
        rows,
        path: str = PREDICT,
        port: int | None = None,
        headers: dict | None = None,
        tls: bool = True,
    ):
        body = json.dumps({"instances": rows}).encode()
        response = self.client.request(
            "POST",
            port or self.https_port,
            path,
            body,
            {
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
            tls=tls,
        )
        if response.headers.get("X-Request-ID"):  # the app answered, not nginx
            with self.lock:
                self.reached_app += 1
        return response

    def log(self, name: str) -> list[dict]:
        """The JSON lines of a server's log."""
        entries = []
        for line in (self.tmp / name).read_text(errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries


def _redis_server(port: int, folder: Path) -> subprocess.Popen:
    process = start_logged(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        folder / f"redis-{port}.log",
    )
    wait_for_port(port, 10, process)
    return process


def _gunicorn(
    stack: Stack, port: int, workers: int, log: str, **env
) -> subprocess.Popen:
    process = start_logged(
        [
            str(BIN / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "wsgi:app",
        ],
        stack.tmp / log,
        cwd=ROOT,
        env=env_with(**env),
    )
    return process


def _wait_warm(stack: Stack, process: subprocess.Popen, log: str, workers: int):
    def warm():
        if process.poll() is not None:
            raise RuntimeError((stack.tmp / log).read_text()[-3000:])
        warm = sum("warmed up" in e.get("message", "") for e in stack.log(log))
        return warm >= workers

    wait_for(warm, 90, 0.2, f"{workers} warm gunicorn workers")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, iris):
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed: `make test` installs it (apt-get)")
    tmp = tmp_path_factory.mktemp("stack")
    database = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{database}"
    stack = Stack(
        tmp=tmp,
        cert=tmp / "certs" / f"{HOST}.crt",
        database_url=url,
        prefix=f"e2e-{uuid.uuid4().hex[:12]}:",
        keys={},
        iris_X=iris.X,
        iris_predict=iris.estimator.predict,
        app_port=free_port(),
        https_port=free_port(),
        http_port=free_port(),
        outage_port=free_port(),
        redis_port=free_port(),
    )
    common = dict(
        DATABASE_URL=url,
        MODELDOCK_ENV="production",
        SECRET_KEY=uuid.uuid4().hex,
        MODELDOCK_PROXY_HOPS="1",
        MODELDOCK_TRUSTED_HOSTS=HOST,
        MODELDOCK_CORS_ORIGINS=ORIGIN,
        MODELDOCK_METRICS_TOKEN=TOKEN,
        MODELDOCK_REDIS_PREFIX=stack.prefix,
        MODELDOCK_MAX_UPLOAD_MB="1",
        # Written only when a worker stops: the final count proves the flush.
        MODELDOCK_REQUEST_LOG_FLUSH_SECONDS="600",
    )
    try:
        subprocess.run(
            [
                "sh",
                str(ROOT / "nginx" / "self-signed-cert.sh"),
                HOST,
                str(tmp / "certs"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        stack.own_redis = _redis_server(stack.redis_port, tmp)
        _seed(stack, iris)
        stack.gunicorn = _gunicorn(
            stack,
            stack.app_port,
            4,
            "gunicorn.log",
            REDIS_URL=SHARED_REDIS,
            PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"),
            **common,
        )
        stack.outage_gunicorn = _gunicorn(
            stack,
            stack.outage_port,
            2,
            "outage.log",
            REDIS_URL=f"redis://127.0.0.1:{stack.redis_port}/0",
            PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics-outage"),
            **common,
        )
        subprocess.run(
            [
                str(BIN / "python"),
                str(ROOT / "nginx" / "render.py"),
                "--server-name",
                HOST,
                "--cert",
                str(stack.cert),
                "--key",
                str(tmp / "certs" / f"{HOST}.key"),
                "--upstream",
                f"127.0.0.1:{stack.app_port}",
                "--listen",
                "127.0.0.1",
                "--http-port",
                str(stack.http_port),
                "--https-port",
                str(stack.https_port),
                "--standalone",
                str(tmp / "nginx"),
            ],
            check=True,
            timeout=60,
            env=env_with(MODELDOCK_MAX_UPLOAD_MB="1"),
        )
        stack.nginx = start_logged(
            [
                NGINX,
                "-p",
                str(tmp / "nginx"),
                "-c",
                str(tmp / "nginx" / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            tmp / "nginx.log",
        )
        wait_for_port(stack.https_port, 20, stack.nginx)
        _wait_warm(stack, stack.gunicorn, "gunicorn.log", 4)
        _wait_warm(stack, stack.outage_gunicorn, "outage.log", 2)
        yield stack
    finally:
        for process in (
            stack.nginx,
            stack.gunicorn,
            stack.outage_gunicorn,
            stack.own_redis,
        ):
            stop(process)
        shared = redis.Redis.from_url(SHARED_REDIS)
        for key in shared.scan_iter(f"*{stack.prefix}*"):
            shared.delete(key)
        shared.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def _seed(stack: Stack, iris) -> None:
    """Migrations (the deploy step), users, keys and the demo model, in-process."""
    from flask_migrate import upgrade

    from app import create_app
    from app.auth.credentials import create_api_key, create_user
    from app.extensions import db
    from app.rollout import versions as service

    app = create_app(
        {
            "DATABASE_URL": stack.database_url,
            "SECRET_KEY": "seed",
            "RATELIMIT_ENABLED": False,
            "MODELDOCK_LOG_FORMAT": "text",
        }
    )
    with app.app_context():
        upgrade()  # what `flask db upgrade` runs
        ops = create_user("ops", "a long password", "admin")
        user = create_user("alice", "another password", "user")
        stack.keys["admin"] = create_api_key(ops, "ops", ["predict", "admin"])[1]
        stack.keys["predict"] = create_api_key(user, "app", ["predict"])[1]
        stack.keys["limited"] = create_api_key(
            user, "trial", ["predict"], rate_limit="10 per minute"
        )[1]
        stack.keys["bulk"] = create_api_key(
            user, "bulk", ["predict"], rate_limit="100000 per minute"
        )[1]
        service.upload_version("demo", "demo.skops", iris.as_skops())
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def expected(stack: Stack, index) -> list:
    return stack.iris_predict(stack.iris_X[index]).tolist()


def test_prediction_over_https_with_the_real_client_address(stack):
    rows = stack.iris_X[[0, 60, 120]].tolist()
    response = stack.post(
        stack.keys["predict"],
        rows,
        headers={"X-Request-ID": "e2e-first", "X-Forwarded-For": "203.0.113.9"},
    )
    assert response.status == 200, response.body
    body = response.json()
    assert body["predictions"] == expected(stack, [0, 60, 120])
    assert body["request_id"] == "e2e-first" == response.headers["X-Request-ID"]
    # JSON access log line with the request id; the client address is the one
    # nginx saw, not the one the client claimed.
    entry = wait_for(
        lambda: [
            e for e in stack.log("gunicorn.log") if e.get("request_id") == "e2e-first"
        ],
        5,
        what="log",
    )
    assert entry[0]["status"] == 200 and entry[0]["path"] == PREDICT
    assert entry[0]["client"] == "127.0.0.1"
    # The same rows again answer from the prediction cache (Redis, any worker).
    again = stack.post(stack.keys["predict"], rows)
    assert again.json()["probabilities"] == body["probabilities"]


def test_http_redirects_pages_and_refuses_api_calls(stack):
    page = stack.client.request(
        "GET", stack.http_port, "/auth/login?next=%2F", tls=False
    )
    assert page.status == 301
    assert (
        page.headers["Location"]
        == f"https://{HOST}:{stack.https_port}/auth/login?next=%2F"
    )
    api = stack.post(
        stack.keys["predict"], [[1, 2, 3, 4]], port=stack.http_port, tls=False
    )
    assert api.status == 403 and "Location" not in api.headers
    assert api.json()["error"]["code"] == "https_required"


def test_only_tls_12_and_13_are_spoken(stack):
    # Positive control: this openssl client does speak TLS 1.0 when a server allows it.
    port = free_port()
    server = start_logged(
        [
            "openssl",
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(stack.cert),
            "-key",
            str(stack.tmp / "certs" / f"{HOST}.key"),
            "-tls1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-quiet",
        ],
        stack.tmp / "s_server.log",
    )
    try:
        wait_for_port(port, 10, server)
        ok, output = openssl_handshake(port, "tls1")
        assert ok and "Protocol  : TLSv1\n" in output, output[-1500:]
    finally:
        stop(server, timeout=5)
    for version in ("tls1", "tls1_1"):
        ok, output = openssl_handshake(stack.https_port, version, HOST)
        assert not ok and "alert protocol version" in output, (version, output[-800:])
    for version, name in (("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")):
        ok, output = openssl_handshake(stack.https_port, version, HOST, stack.cert)
        assert ok and f"New, {name}" in output, output[-800:]
        assert "Verify return code: 0 (ok)" in output


def test_unknown_host_is_refused(stack):
    for tls, port in ((True, stack.https_port), (False, stack.http_port)):
        with pytest.raises((ConnectionError, OSError)):
            stack.client.request(
                "GET", port, "/healthz", headers={"Host": "evil.example"}, tls=tls
            )
    ok, output = openssl_handshake(stack.https_port, "tls1_2", "evil.example")
    assert not ok and "unrecognized name" in output
    # Straight to gunicorn (bypassing nginx) the app refuses the host itself.
    direct = Client(HOST).request(
        "GET", stack.app_port, "/healthz", headers={"Host": "evil.example"}, tls=False
    )
    assert direct.status == 400


def test_security_headers_once_each_and_static_files_from_nginx(stack):
    page = stack.client.request("GET", stack.https_port, "/auth/login")
    api = stack.post(stack.keys["predict"], stack.iris_X[[1]].tolist())
    missing = stack.client.request("GET", stack.https_port, "/nope")
    assert (page.status, api.status, missing.status) == (200, 200, 404)
    for response in (page, api, missing):
        assert response.all("Strict-Transport-Security") == ["max-age=63072000"]
        [csp] = response.all("Content-Security-Policy")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert response.all("X-Content-Type-Options") == ["nosniff"]
        assert len(response.all("Referrer-Policy")) == 1
        assert len(response.all("X-Frame-Options")) == 1
    # The CSP forbids inline scripts; the pages have none to break.
    assert b"<script" not in page.body and b" style=" not in page.body
    static = stack.client.request("GET", stack.https_port, "/static/css/app.css")
    assert static.status == 200 and static.headers["Content-Type"] == "text/css"
    assert "X-Request-ID" not in static.headers  # gunicorn never saw it
    assert static.headers["Cache-Control"] == "max-age=3600"
    # nginx's own answers carry the app's values (app/security_headers.py).
    from app.web.security_headers import HEADERS

    for name, value in HEADERS.items():
        assert static.all(name) == [value] == page.all(name), name
    assert static.all("Strict-Transport-Security") == ["max-age=63072000"]


def test_cors_through_nginx_one_set_of_headers(stack):
    def preflight(origin):
        return stack.client.request(
            "OPTIONS",
            stack.https_port,
            PREDICT,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )

    allowed = preflight(ORIGIN)
    assert allowed.status == 200
    assert allowed.all("Access-Control-Allow-Origin") == [ORIGIN]
    assert len(allowed.all("Access-Control-Allow-Methods")) == 1
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    [allow_headers] = allowed.all("Access-Control-Allow-Headers")
    assert "authorization" in allow_headers.lower()
    other = preflight("https://evil.example")
    assert other.all("Access-Control-Allow-Origin") == []
    assert other.all("Access-Control-Allow-Methods") == []
    actual = stack.post(
        stack.keys["predict"], stack.iris_X[[2]].tolist(), headers={"Origin": ORIGIN}
    )
    assert actual.status == 200
    assert actual.all("Access-Control-Allow-Origin") == [ORIGIN]


def test_body_over_the_upload_cap_is_refused_by_nginx(stack):
    rows = [[5.1, 3.5, 1.4, 0.2]] * 60_000  # about 1.4 MB of JSON, cap is 1 MB
    response = stack.post(stack.keys["predict"], rows)
    assert response.status == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "X-Request-ID" not in response.headers  # refused before gunicorn


def test_ten_per_minute_allows_exactly_ten_across_all_workers(stack):
    rows = stack.iris_X[[3]].tolist()
    ids = [f"rl-{i}" for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(
                lambda rid: stack.post(
                    stack.keys["limited"], rows, headers={"X-Request-ID": rid}
                ),
                ids,
            )
        )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 10 + [429] * 6
    for refused in (r for r in responses if r.status == 429):
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.headers["X-RateLimit-Limit"] == "10"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
    # The requests really were spread over several worker processes.
    pids = wait_for(
        lambda: {
            e["pid"]
            for e in stack.log("gunicorn.log")
            if e.get("logger") == "gunicorn.access"
            and e.get("request_id", "").startswith("rl-")
        },
        5,
        what="access log",
    )
    assert len(pids) >= 2, pids


def _scrape(stack: Stack, port: int | None = None, tls: bool = True) -> dict:
    response = stack.client.request(
        "GET",
        port or stack.https_port,
        "/metrics",
        headers={"Authorization": f"Bearer {TOKEN}", "Host": HOST},
        tls=tls,
    )
    assert response.status == 200, response.body[:300]
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def test_metrics_totals_equal_the_requests_sent(stack):
    denied = stack.client.request("GET", stack.https_port, "/metrics")
    assert denied.status == 403
    totals = _scrape(stack)
    assert totals["modeldock_requests_total"] == stack.reached_app
    assert totals["modeldock_request_duration_seconds_count"] == stack.reached_app
    assert totals["modeldock_rate_limited_total"] == 6
    served = stack.reached_app - 6
    assert (
        totals["modeldock_prediction_cache_hits_total"]
        + totals["modeldock_prediction_cache_misses_total"]
        == served
    )
    assert totals["modeldock_prediction_cache_hits_total"] >= 1
    assert totals["modeldock_predictions_total"] >= served
    assert totals["modeldock_model_load_seconds_count"] == 4  # one per worker
    assert "modeldock_request_log_queue_depth" in totals


def test_hup_reload_during_traffic_fails_no_request(stack):
    master = stack.gunicorn.pid
    old = children(master)
    assert len(old) == 4
    results: list[tuple[int, float]] = []
    done = threading.Event()

    def traffic(worker: int):
        i = 0
        while not done.is_set():
            index = [(worker * 50 + i) % 150]
            response = stack.post(stack.keys["bulk"], stack.iris_X[index].tolist())
            ok = response.status == 200 and response.json()["predictions"] == expected(
                stack, index
            )
            results.append(
                (response.status if ok else -response.status, response.elapsed)
            )
            i += 1

    threads = [threading.Thread(target=traffic, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        before_hup = len(results)
        os.kill(master, signal.SIGHUP)
        wait_for(
            lambda: len(children(master)) == 4 and not children(master) & old,
            60,
            0.2,
            "new workers replacing the old ones",
        )
        settled = len(results)
        wait_for(lambda: len(results) >= settled + 30, 30, 0.1, "traffic after reload")
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
    statuses = [status for status, _ in results]
    slowest = max(elapsed for _, elapsed in results)
    print(
        f"\nHUP reload: {len(results)} requests ({before_hup} before the HUP), "
        f"all {set(statuses)}, slowest {slowest:.2f} s"
    )
    assert before_hup > 0 and statuses == [200] * len(results)
    assert stack.gunicorn.poll() is None


def test_redis_outage_degrades_then_recovers(stack):
    """The second gunicorn uses a Redis of its own, which this test stops and starts."""
    store = redis.Redis(port=stack.redis_port, socket_timeout=2)
    client = Client(HOST)
    sent = {"n": 0}

    def predict(index):
        response = client.request(
            "POST",
            stack.outage_port,
            PREDICT,
            json.dumps({"instances": stack.iris_X[index].tolist()}).encode(),
            {
                "Authorization": f"Bearer {stack.keys['predict']}",
                "Content-Type": "application/json",
                "Host": HOST,
            },
            tls=False,
        )
        if response.headers.get("X-Request-ID"):
            sent["n"] += 1
        return response

    try:
        first = predict([5])
        assert first.status == 200 and first.headers["X-RateLimit-Limit"] == "1200"
        assert list(store.scan_iter(f"*{stack.prefix}key:*"))  # limits live in Redis
        assert list(store.scan_iter(f"{stack.prefix}pred:*"))  # and so do predictions
        workers = children(stack.outage_gunicorn.pid)

        stop(stack.own_redis)  # Redis goes away
        during = [predict([i]) for i in range(40, 60)]
        assert [r.status for r in during] == [200] * 20  # documented: keep serving
        for i, response in zip(range(40, 60), during, strict=True):
            assert response.json()["predictions"] == expected(stack, [i])
            assert "X-RateLimit-Limit" in response.headers  # per-worker limits
        errors = _scrape(stack, stack.outage_port, tls=False)[
            "modeldock_prediction_cache_errors_total"
        ]
        assert errors >= 1

        stack.own_redis = _redis_server(stack.redis_port, stack.tmp)  # back, empty

        def recovered():
            response = predict([int(time.monotonic() * 1000) % 150])
            assert response.status == 200
            return list(store.scan_iter(f"*{stack.prefix}key:*")) and list(
                store.scan_iter(f"{stack.prefix}pred:*")
            )

        wait_for(recovered, 40, 0.25, "limits and cache back in Redis")
        assert children(stack.outage_gunicorn.pid) == workers  # no worker restarted
    finally:
        store.close()
        with stack.lock:
            stack.reached_app += sent["n"]


def _trickle(sock, seconds: float, stop: threading.Event) -> None:
    """Send a body one byte every 0.1 s, like a client on a very slow link."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        sock.sendall(b"a")
        time.sleep(0.1)


def _slow_body(port: int, tls: bool, context=None):
    """Open a POST that announces 1 kB of body and has sent none of it yet."""
    import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        sock = context.wrap_socket(sock, server_hostname=HOST)
    sock.sendall(
        f"POST /auth/login HTTP/1.1\r\nHost: {HOST}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
    )
    return sock


def test_slow_body_client_ties_up_gunicorn_alone_but_not_behind_nginx(stack):
    """gunicorn with 1 worker x 1 thread: a client trickling a request body holds that
    thread when it talks to gunicorn directly; through nginx (request buffering) the
    body waits in nginx and other requests are served meanwhile."""
    import ssl

    app_port, https_port, http_port = free_port(), free_port(), free_port()
    gunicorn = start_logged(
        [
            str(BIN / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{app_port}",
            "--workers",
            "1",
            "--threads",
            "1",
            "wsgi:app",
        ],
        stack.tmp / "single.log",
        cwd=ROOT,
        env=env_with(
            DATABASE_URL=stack.database_url,
            MODELDOCK_ENV="production",
            SECRET_KEY=uuid.uuid4().hex,
            MODELDOCK_PROXY_HOPS="1",
            MODELDOCK_TRUSTED_HOSTS=HOST,
            REDIS_URL=SHARED_REDIS,
            MODELDOCK_REDIS_PREFIX=stack.prefix,
            MODELDOCK_MAX_UPLOAD_MB="1",
            PROMETHEUS_MULTIPROC_DIR=str(stack.tmp / "metrics-single"),
        ),
    )
    nginx = None
    try:
        subprocess.run(
            [
                str(BIN / "python"),
                str(ROOT / "nginx" / "render.py"),
                "--server-name",
                HOST,
                "--cert",
                str(stack.cert),
                "--key",
                str(stack.tmp / "certs" / f"{HOST}.key"),
                "--upstream",
                f"127.0.0.1:{app_port}",
                "--listen",
                "127.0.0.1",
                "--http-port",
                str(http_port),
                "--https-port",
                str(https_port),
                "--standalone",
                str(stack.tmp / "nginx-single"),
            ],
            check=True,
            timeout=60,
            env=env_with(MODELDOCK_MAX_UPLOAD_MB="1"),
        )
        nginx = start_logged(
            [
                NGINX,
                "-p",
                str(stack.tmp / "nginx-single"),
                "-c",
                str(stack.tmp / "nginx-single" / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            stack.tmp / "nginx-single.log",
        )
        wait_for_port(https_port, 20, nginx)
        _wait_warm(stack, gunicorn, "single.log", 1)
        direct = Client(HOST)

        def healthz(port, tls, timeout):
            return (stack.client if tls else direct).request(
                "GET",
                port,
                "/healthz",
                headers={"Host": HOST},
                tls=tls,
                timeout=timeout,
            )

        assert healthz(app_port, False, 10).status == 200

        # Without nginx: while the body trickles in, the only thread waits for it.
        stop_sending = threading.Event()
        slow = _slow_body(app_port, tls=False)
        sender = threading.Thread(target=_trickle, args=(slow, 8, stop_sending))
        sender.start()
        try:
            time.sleep(0.5)
            with pytest.raises(TimeoutError):
                healthz(app_port, False, 3)
        finally:
            stop_sending.set()
            sender.join()
            slow.close()
        wait_for(
            lambda: healthz(app_port, False, 10).status == 200,
            20,
            0.2,
            "gunicorn free again",
        )

        # Behind nginx: the same client, and every other request is answered.
        context = ssl.create_default_context(cafile=str(stack.cert))
        stop_sending = threading.Event()
        slow = _slow_body(https_port, tls=True, context=context)
        sender = threading.Thread(target=_trickle, args=(slow, 5, stop_sending))
        sender.start()
        answered = []
        try:
            time.sleep(0.5)
            while sender.is_alive() and len(answered) < 20:
                response = healthz(https_port, True, 3)
                answered.append((response.status, response.elapsed))
        finally:
            stop_sending.set()
            sender.join()
            slow.close()
        print(
            f"\nbehind nginx, during a slow body: {len(answered)} requests answered, "
            f"slowest {max(e for _, e in answered):.3f} s"
        )
        assert len(answered) >= 5 and {status for status, _ in answered} == {200}
    finally:
        stop(nginx)
        stop(gunicorn)


def test_graceful_shutdown_writes_every_request_log(stack):
    for process in (stack.gunicorn, stack.outage_gunicorn):
        stop(process, signal.SIGTERM, timeout=60)
        assert process.returncode == 0
    engine = sa.create_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM request_logs")).scalar()
            first = conn.execute(
                sa.text(
                    "SELECT remote_addr, payload FROM request_logs "
                    "WHERE request_id = 'e2e-first'"
                )
            ).one()
    finally:
        engine.dispose()
    # Flushing every 600 s, so all of these were written by the exit hook.
    assert count == stack.reached_app
    assert first == ("127.0.0.0", None)  # truncated address, no payload by default
    messages = [e.get("message", "") for e in stack.log("gunicorn.log")]
    assert any("wrote" in m and "at shutdown" in m for m in messages)
