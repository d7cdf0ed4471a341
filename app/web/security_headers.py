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
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
_LOWER = [(name.lower(), name, value) for name, value in HEADERS.items()]


def init_app(app: Flask) -> None:
    """Add ``HEADERS`` to every response that does not set its own."""

    @app.after_request
    def security_headers(response):
        # One pass over the answer's headers, then one extend: a third of the cost
        # of four setdefault calls, on every prediction.
        present = {name.lower() for name in response.headers.keys()}
        missing = [
            (name, value) for lower, name, value in _LOWER if lower not in present
        ]
        if missing:
            response.headers.extend(missing)
        return response
