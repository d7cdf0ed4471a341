"""Security headers on every answer, sent by the app itself so that gunicorn alone
(`make run`) sends them too.

This is their one source: nginx (nginx/modeldock.conf.template) passes the app's on
unchanged, adds only Strict-Transport-Security, and sends these same values, rendered
from ``HEADERS`` by nginx/render.py, on the answers it makes itself (static files,
its 413).
"""

from __future__ import annotations

from flask import Flask

# No inline scripts or styles anywhere in the pages; SVG charts are inline markup.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def init_app(app: Flask) -> None:
    """Add ``HEADERS`` to every response that does not set its own."""

    @app.after_request
    def security_headers(response):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
