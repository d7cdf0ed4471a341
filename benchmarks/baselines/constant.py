"""Baseline 3: framework-free WSGI returning a constant JSON body (the HTTP ceiling).

It reads the request body (as every other app must) and answers the same bytes.
"""

BODY = b'{"predictions":[0]}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", HEADERS)
    return [BODY]
