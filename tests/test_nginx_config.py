"""The nginx site config: renders from the app's settings, and fits the nginx.conf a
Debian server ships (the README's install steps), checked by `nginx -t`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "nginx" / "render.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("certs")
    subprocess.run(
        [
            "sh",
            str(ROOT / "nginx" / "self-signed-cert.sh"),
            "modeldock.example.com",
            str(folder),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return folder / "modeldock.example.com.crt", folder / "modeldock.example.com.key"


@pytest.mark.parametrize("keepalive", [0, 16])
def test_site_config_passes_nginx_t_with_debians_nginx_conf(tmp_path, cert, keepalive):
    assert Path(NGINX).exists(), "nginx is installed by `make test`"
    etc = tmp_path / "etc-nginx"
    shutil.copytree("/etc/nginx", etc, symlinks=True)
    conf = etc / "nginx.conf"
    conf.write_text(conf.read_text().replace("/etc/nginx/", f"{etc}/"))
    (etc / "sites-enabled" / "default").unlink(missing_ok=True)  # README step
    result = render(
        "--server-name",
        "modeldock.example.com",
        "--cert",
        str(cert[0]),
        "--key",
        str(cert[1]),
        "--upstream-keepalive",
        str(keepalive),
        "--out",
        str(etc / "sites-enabled" / "modeldock"),
    )
    assert result.returncode == 0, result.stderr
    site = (etc / "sites-enabled" / "modeldock").read_text()
    assert "{{" not in site and "listen *:443 ssl" in site
    # Upstream keep-alive only when asked for (docs/production.md): it needs HTTP/1.1
    # and an emptied Connection header to gunicorn.
    assert ("keepalive 16;" in site) == bool(keepalive)
    assert ("proxy_http_version 1.1;" in site) == bool(keepalive)
    assert "client_max_body_size 64m;" in site  # MODELDOCK_MAX_UPLOAD_MB default
    check = subprocess.run(
        [NGINX, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr


def test_render_follows_the_upload_cap_and_refuses_odd_values(tmp_path, cert):
    import os

    env = {**os.environ, "MODELDOCK_MAX_UPLOAD_MB": "7"}
    result = render(
        "--server-name",
        "a.example",
        "--cert",
        str(cert[0]),
        "--key",
        str(cert[1]),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"client_max_body_size 7m;", result.stdout)
    assert "return 301 https://$host$request_uri;" in result.stdout  # port 443
    bad = render(
        "--server-name",
        "a.example; include /etc/passwd",
        "--cert",
        str(cert[0]),
        "--key",
        str(cert[1]),
    )
    assert bad.returncode != 0 and "invalid server name" in bad.stderr


def test_several_upstreams_with_passive_health_checks(tmp_path, cert):
    """One server line per host (docs/scaling.md); the whole site passes `nginx -t`."""
    result = render(
        "--server-name",
        "modeldock.example.com",
        "--cert",
        str(cert[0]),
        "--key",
        str(cert[1]),
        "--upstream",
        "10.0.0.11:8000",
        "--upstream",
        "10.0.0.12:8000",
        "--upstream",
        "unix:/run/modeldock/gunicorn.sock",
        "--max-fails",
        "2",
        "--fail-timeout",
        "5s",
        "--listen",
        "127.0.0.1",
        "--standalone",
        str(tmp_path / "nginx"),
    )
    assert result.returncode == 0, result.stderr
    site = (tmp_path / "nginx" / "modeldock.conf").read_text()
    servers = re.findall(r"^    server (\S+) max_fails=2 fail_timeout=5s;$", site, re.M)
    assert servers == [
        "10.0.0.11:8000",
        "10.0.0.12:8000",
        "unix:/run/modeldock/gunicorn.sock",
    ]
    # Retried on the next host: everything on errors, 502 and 503; predictions even
    # once sent (non_idempotent), nothing else.
    assert len(re.findall(r"^ *proxy_next_upstream .*non_idempotent;", site, re.M)) == 1
    assert "proxy_next_upstream error timeout http_502 http_503;" in site
    check = subprocess.run(
        [
            NGINX,
            "-t",
            "-p",
            str(tmp_path / "nginx"),
            "-c",
            str(tmp_path / "nginx" / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    for bad in (
        ["--upstream", "10.0.0.1:8000;evil"],
        ["--fail-timeout", "10 s"],
        ["--max-fails", "-1"],
    ):
        refused = render(
            "--server-name",
            "a.example",
            "--cert",
            str(cert[0]),
            "--key",
            str(cert[1]),
            *bad,
        )
        assert refused.returncode != 0, bad


def _prediction_location(site: str) -> re.Pattern:
    """The regex of the location whose requests are retried even once sent."""
    [regex] = re.findall(r"^ *location ~ (\S+) \{\n[^}]*non_idempotent;", site, re.M)
    return re.compile(regex)


def test_only_prediction_routes_are_retried_once_sent(cert):
    """The location with non_idempotent matches every prediction route of the app
    (native, tutorial, TF Serving, Open Inference) and no other route: uploads,
    activations and forms are never sent twice."""
    from app import create_app
    from tests.conftest import concrete_rule

    result = render(
        "--server-name", "a.example", "--cert", str(cert[0]), "--key", str(cert[1])
    )
    assert result.returncode == 0, result.stderr
    pattern = _prediction_location(result.stdout)
    app = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x"})
    predictions, others = [], []
    for rule in app.url_map.iter_rules():
        path = concrete_rule(rule.rule)
        verb = path.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        is_prediction = "POST" in rule.methods and (
            path == "/predict" or verb in ("predict", "classify", "regress", "infer")
        )
        (predictions if is_prediction else others).append(path)
    assert len(predictions) >= 10, predictions
    assert [p for p in predictions if not pattern.match(p)] == []
    assert [p for p in others if pattern.match(p)] == []
    for path in (
        "/api/v1/models/demo/versions",
        "/api/v1/models/demo/versions/2/activate",
        "/models/demo",
        "/api/v1/models/demo/predictx",
        "/v1/models/demo/versions/1/metadata",
        "/predict/x",
    ):
        assert not pattern.match(path), path
