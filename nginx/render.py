"""Render the nginx site config (and optionally a self-contained nginx.conf).

    .venv/bin/python nginx/render.py --server-name modeldock.example.com \
        --cert /etc/ssl/modeldock/fullchain.pem --key /etc/ssl/modeldock/privkey.pem \
        --out /etc/nginx/sites-available/modeldock

Repeat ``--upstream`` for several gunicorn hosts: each becomes a ``server`` line of
one ``upstream`` with passive health checks (``--max-fails`` failures within
``--fail-timeout`` take a host out for that long), and a request that finds its host
gone is passed to the next one (predictions even when they were already sent: they
change no state; docs/scaling.md).

``--standalone DIR`` instead writes DIR/modeldock.conf and DIR/nginx.conf (with its
own pid, logs and temp folders) for running nginx without touching /etc/nginx:
``nginx -p DIR -c DIR/nginx.conf``. The body-size cap is read from the app's
configuration (MODELDOCK_MAX_UPLOAD_MB) so that nginx and the app agree, and the
security headers of nginx's own answers from the app's (app/web/security_headers.py),
and the API paths refused over plain HTTP from the app's (app/web/paths.py).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NAME = re.compile(r"^[A-Za-z0-9.*_-]+$")
VALUE = re.compile(r"^[^\s;{}'\"]+$")  # nothing that could end an nginx directive
DURATION = re.compile(r"^[0-9]+(ms|s|m)?$")
HSTS = "max-age=63072000"  # two years: only nginx, the TLS endpoint, sends it


def upload_cap_mb() -> int:
    """MODELDOCK_MAX_UPLOAD_MB as the app sees it (environment, else default)."""
    sys.path.insert(0, str(ROOT))
    from app.config import defaults, from_environment

    return {**defaults(), **from_environment()}["MODELDOCK_MAX_UPLOAD_MB"]


def own_headers() -> str:
    """add_header lines for the answers nginx makes itself: the app's security headers
    (app/web/security_headers.py, their one source) and HSTS."""
    sys.path.insert(0, str(ROOT))
    from app.web.security_headers import HEADERS

    headers = {"Strict-Transport-Security": HSTS, **HEADERS}
    return "\n".join(
        f'        add_header {name} "{value}" always;'
        for name, value in headers.items()
    )


def api_paths() -> str:
    """The app's API paths (app/web/paths.py, their one source) as a location regex."""
    sys.path.insert(0, str(ROOT))
    from app.web.paths import nginx_location_pattern

    return nginx_location_pattern()


def fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    leftover = re.findall(r"\{\{[A-Z_]+\}\}", template)
    if leftover:
        raise SystemExit(f"unfilled placeholders: {sorted(set(leftover))}")
    return template


def site_values(args: argparse.Namespace) -> dict[str, str]:
    for name in args.server_name:
        if not NAME.match(name):
            raise SystemExit(f"invalid server name {name!r}")
    upstreams = args.upstream or ["127.0.0.1:8000"]
    for value in (args.cert, args.key, *upstreams, args.static, args.listen):
        if not VALUE.match(str(value)):
            raise SystemExit(f"invalid value {value!r}")
    if args.max_fails < 0 or not DURATION.match(args.fail_timeout):
        raise SystemExit(
            "--max-fails is a count (0: never mark a host down) and "
            "--fail-timeout a duration such as 10s"
        )
    return {
        "SERVER_NAMES": " ".join(args.server_name),
        "CERT": str(Path(args.cert).resolve()),
        "KEY": str(Path(args.key).resolve()),
        "UPSTREAM_SERVERS": "\n".join(
            f"    server {address} max_fails={args.max_fails} "
            f"fail_timeout={args.fail_timeout};"
            for address in upstreams
        ),
        "STATIC_ROOT": str(Path(args.static).resolve()),
        "LISTEN": args.listen,
        "API_PATHS": api_paths(),
        "HTTP_PORT": str(args.http_port),
        "HTTPS_PORT": str(args.https_port),
        "HTTPS_PORT_SUFFIX": "" if args.https_port == 443 else f":{args.https_port}",
        "MAX_BODY_MB": str(args.max_upload_mb or upload_cap_mb()),
        "HSTS": HSTS,
        "OWN_HEADERS": own_headers(),
        "TLS_PROFILE": (HERE / "tls-profile.conf").read_text().rstrip("\n"),
        **upstream_keepalive(args.upstream_keepalive),
    }


def upstream_keepalive(connections: int) -> dict[str, str]:
    """The upstream block's connection reuse (docs/production.md says which to pick).

    0, the default: a connection per request. nginx does not retry a POST that it
    sent on a reused connection which gunicorn closed meanwhile (a HUP reload, a
    worker restart), so keep-alive to the upstream turns every reload into a few
    502s (predictions excepted: the site retries those, as they change no state);
    benchmarks/targets.py measures what it would buy.
    """
    if connections <= 0:
        return {
            "UPSTREAM_KEEPALIVE": "    # A connection per request (render.py "
            "--upstream-keepalive N to reuse them).",
            "UPSTREAM_HTTP11": "",
        }
    return {
        "UPSTREAM_KEEPALIVE": f"    keepalive {connections};\n"
        "    keepalive_timeout 4s;  # below gunicorn's 5 s",
        "UPSTREAM_HTTP11": "    proxy_http_version 1.1;\n"
        '    proxy_set_header Connection "";',
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server-name",
        action="append",
        required=True,
        help="a host name to serve (repeat for more)",
    )
    parser.add_argument("--cert", required=True, help="certificate chain (PEM)")
    parser.add_argument("--key", required=True, help="private key (PEM)")
    parser.add_argument(
        "--upstream",
        action="append",
        default=None,
        help="gunicorn's address, or unix:/path/to.sock (repeat for "
        "several hosts; default 127.0.0.1:8000)",
    )
    parser.add_argument(
        "--max-fails",
        type=int,
        default=1,
        help="failed attempts within --fail-timeout that take a host "
        "out of the upstream (default 1)",
    )
    parser.add_argument(
        "--fail-timeout",
        default="10s",
        help="how long a failed host stays out (default 10s)",
    )
    parser.add_argument("--static", default=str(ROOT / "static"))
    parser.add_argument("--listen", default="*", help="address to listen on")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument(
        "--upstream-keepalive",
        type=int,
        default=0,
        metavar="N",
        help="idle connections to gunicorn kept per nginx worker "
        "(default 0: a connection per request)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=int,
        default=None,
        help="default: the app's MODELDOCK_MAX_UPLOAD_MB",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", help="write the site config here (default: stdout)")
    target.add_argument(
        "--standalone",
        metavar="DIR",
        help="write DIR/modeldock.conf and DIR/nginx.conf",
    )
    args = parser.parse_args(argv)

    site = fill((HERE / "modeldock.conf.template").read_text(), site_values(args))
    if args.standalone:
        prefix = Path(args.standalone).resolve()
        for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        (prefix / "modeldock.conf").write_text(site)
        user = getpass.getuser()
        (prefix / "nginx.conf").write_text(
            fill(
                (HERE / "nginx.conf.template").read_text(),
                {
                    "PREFIX": str(prefix),
                    # Only root may switch users; then workers stay root so they can
                    # read the static files and temp folders it created.
                    "USER_LINE": f"user {user};" if os.geteuid() == 0 else "",
                },
            )
        )
    elif args.out:
        Path(args.out).write_text(site)
    else:
        sys.stdout.write(site)


if __name__ == "__main__":
    main()
