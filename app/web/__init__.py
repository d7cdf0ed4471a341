"""The HTTP edge every blueprint shares: which paths are the API, errors and how
they are answered, request bodies, JSON without NaN, security headers, numbers in
URLs, paging, and the gunicorn worker class."""
