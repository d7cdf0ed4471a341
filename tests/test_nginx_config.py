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
