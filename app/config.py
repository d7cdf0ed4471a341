"""Typed settings with defaults: the one place that reads the environment."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.extensions.ratelimit_storage import storage_uri
from app.web.finite_json import json_text


def _bool(raw: str) -> bool:
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


@dataclass(frozen=True)
class Setting:
    """One configuration key: its environment variable, default, parser and meaning."""

    key: str
    default: Any
    parse: Callable[[str], Any]
    doc: str

    @property
    def env(self) -> str:
        return self.key


# Every setting the app reads. The README's configuration table is checked
# against this list by tests/test_config.py, so the two never drift apart.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MODELDOCK_ENV",
        "development",
        str,
        "`production` refuses to start without `SECRET_KEY`, forces secure "
        "cookies and disables debug.",
    ),
    Setting(
        "SECRET_KEY",
        None,
        str,
        "Session and CSRF signing key. Development generates one into "
        "`instance/secret_key`.",
    ),
    Setting(
        "DATABASE_URL",
        None,
        str,
        "SQLAlchemy URL. Default: SQLite file `instance/modeldock.db`. "
        "PostgreSQL: `postgresql+psycopg://user@host/db`.",
    ),
    Setting(
        "REDIS_URL",
        None,
        str,
        "When set, rate limits and the cache are stored in Redis (shared by "
        "every worker).",
    ),
    Setting(
        "MODELDOCK_MAX_UPLOAD_MB",
        64,
        int,
        "Largest request body (model upload) in MB; larger gets 413.",
    ),
    Setting(
        "MODELDOCK_MAX_BATCH_ROWS",
        10000,
        int,
        "Most rows in one prediction request; more gets 413.",
    ),
    Setting(
        "MODELDOCK_ALLOW_ANONYMOUS_PREDICT",
        False,
        _bool,
        "Allow prediction routes without an API key.",
    ),
    Setting(
        "MODELDOCK_DEFAULT_MODEL",
        "",
        str,
        "Model of the routes that name none: the tutorial-compatible `POST /predict` "
        "and MLflow's `POST /invocations`; empty: the only model served (with "
        "several, those routes answer 404 until this is set).",
    ),
    Setting(
        "MODELDOCK_TRUSTED_MODULES",
        [],
        _list,
        "Extra Python modules whose classes pickled models may use "
        "(comma-separated, exact module names).",
    ),
    Setting(
        "MODELDOCK_VALIDATION_MEMORY_MB",
        2048,
        int,
        "Address-space limit of the process that validates an upload.",
    ),
    Setting(
        "MODELDOCK_VALIDATION_CPU_SECONDS",
        30,
        int,
        "CPU-time limit of the validation process.",
    ),
    Setting(
        "MODELDOCK_VALIDATION_TIMEOUT_SECONDS",
        60,
        int,
        "Wall-clock limit of the validation process.",
    ),
    Setting(
        "MODELDOCK_PREDICT_TIMEOUT_SECONDS",
        10.0,
        float,
        "Deadline of one prediction, in seconds, for every runtime; a run past "
        "it is stopped and answered 504 `prediction_timeout`. A model may set "
        "its own (`PUT /api/v1/models/<name>/timeout`, `flask models timeout`).",
    ),
    Setting(
        "MODELDOCK_ISOLATED_MEMORY_MB",
        2048,
        int,
        "Address-space limit of each inference process (the confined processes "
        "that run scikit-learn estimators and uploaded ONNX graphs).",
    ),
    Setting(
        "MODELDOCK_ISOLATED_PROCESSES",
        1,
        int,
        "Inference processes per loaded isolated version, per web worker: "
        "concurrent requests to one version beyond this wait (or micro-batch).",
    ),
    Setting(
        "MODELDOCK_MODEL_CACHE_SIZE",
        16,
        int,
        "Loaded models kept in memory per worker (LRU by sha256).",
    ),
    Setting(
        "MODELDOCK_MODEL_CACHE_MB",
        512.0,
        float,
        "Memory budget per worker for loaded models, in MB (estimated: an "
        "estimator's pickled size, twice an ONNX graph's); least recently used "
        "models are dropped beyond it.",
    ),
    Setting(
        "MODELDOCK_MICROBATCH_MAX_ROWS",
        0,
        int,
        "Micro-batching for versions served by scikit-learn: concurrent requests "
        "to one version are predicted together, up to this many rows. 0 = off. "
        "The default for models without their own setting (admin page, API, "
        "`flask models batching`). Needs a threaded worker (gunicorn "
        "`--threads` > 1).",
    ),
    Setting(
        "MODELDOCK_MICROBATCH_MAX_WAIT_MS",
        2.0,
        float,
        "Longest a request waits for others to join its micro-batch, in ms "
        "(default for models without their own setting).",
    ),
    Setting(
        "MODELDOCK_ROUTING_REFRESH_SECONDS",
        0.5,
        float,
        "How often each worker checks the registry's change counter (new stable, "
        "canary or shadow versions, revoked keys); 0 checks on every request.",
    ),
    Setting(
        "MODELDOCK_RATELIMIT_DEFAULT",
        "1200 per minute",
        str,
        "Default rate limit per API key (per address when anonymous).",
    ),
    Setting(
        "MODELDOCK_RATELIMIT_LOGIN",
        "10 per minute",
        str,
        "Rate limit on login attempts per address.",
    ),
    Setting(
        "MODELDOCK_CORS_ORIGINS",
        [],
        _list,
        "Origins allowed to call the API from a browser (comma-separated).",
    ),
    Setting(
        "MODELDOCK_PROXY_HOPS",
        0,
        int,
        "Reverse proxies in front of the app to trust for X-Forwarded-*.",
    ),
    Setting(
        "MODELDOCK_REQUEST_LOG_FLUSH_SECONDS",
        1.0,
        float,
        "Request logs are written in batches at most this often.",
    ),
    Setting(
        "MODELDOCK_CSV_MAX_ROWS",
        100_000,
        int,
        "Most rows in one CSV uploaded on the predict page; more is refused.",
    ),
    Setting(
        "MODELDOCK_CSV_WAIT_SECONDS",
        2.0,
        float,
        "How long a CSV upload waits for its job before showing the progress "
        "page instead.",
    ),
    Setting(
        "MODELDOCK_CSV_RESULT_HOURS",
        24,
        int,
        "How long batch job results (CSV uploads, the batch API) are kept for "
        "viewing and download.",
    ),
    Setting("LOG_LEVEL", "INFO", str, "Python logging level."),
    Setting(
        "MODELDOCK_LOG_FORMAT",
        "json",
        str,
        "`json`: one JSON object per log line with the request id; `text`: "
        "plain lines for a terminal.",
    ),
    Setting(
        "MODELDOCK_TRUSTED_HOSTS",
        [],
        _list,
        "Host names the app answers to (Flask's `TRUSTED_HOSTS`, comma-separated; "
        "a leading dot allows subdomains). Empty: any host.",
    ),
    Setting(
        "MODELDOCK_REDIS_PREFIX",
        "modeldock:",
        str,
        "Prefix of every Redis key (rate limits, caches), so deployments can "
        "share one Redis.",
    ),
    Setting(
        "MODELDOCK_REDIS_OUTAGE",
        "degrade",
        str,
        "While Redis is unreachable: `degrade` keeps serving (per-worker rate "
        "limits, no prediction cache); `refuse` answers 503 on rate-limited "
        "routes.",
    ),
    Setting(
        "MODELDOCK_PREDICTION_CACHE_SECONDS",
        300,
        int,
        "How long identical inputs to the same version answer from the "
        "prediction cache; 0 turns it off.",
    ),
    Setting(
        "MODELDOCK_METRICS_TOKEN",
        None,
        str,
        "Bearer token that opens `/metrics` from any address.",
    ),
    Setting(
        "MODELDOCK_METRICS_ALLOW",
        [],
        _list,
        "Client networks allowed to read `/metrics` without the token, e.g. "
        "`127.0.0.1/32,::1/128` (comma-separated). Empty: token only.",
    ),
    Setting(
        "MODELDOCK_REQUEST_LOG_ENABLED",
        True,
        _bool,
        "Write one row per prediction request to the request log.",
    ),
    Setting(
        "MODELDOCK_LOG_PAYLOADS",
        False,
        _bool,
        "Also store each prediction request's input in the request log.",
    ),
    Setting(
        "MODELDOCK_LOG_REDACT_FIELDS",
        [],
        _list,
        'Feature or body field names replaced by `"[redacted]"` in stored payloads.',
    ),
    Setting(
        "MODELDOCK_LOG_PREDICTION_ROWS",
        1000,
        int,
        "Predicted labels or values (and class probabilities) of at most this many "
        "rows per request are kept in the request log, for joining with feedback "
        "(docs/monitoring.md). 0 keeps none.",
    ),
    Setting(
        "MODELDOCK_QUALITY_CACHE_SECONDS",
        30.0,
        float,
        "How long each worker reuses the live-quality figures it computed for "
        "`/metrics` before reading the database again.",
    ),
    Setting(
        "MODELDOCK_DRIFT_SOURCE",
        "sketch",
        str,
        "Where live feature distributions come from: `sketch` (counts per "
        "reference bin kept by each worker), `payloads` (logged inputs; needs "
        "`MODELDOCK_LOG_PAYLOADS`) or `off`.",
    ),
    Setting(
        "MODELDOCK_DRIFT_FLUSH_SECONDS",
        10.0,
        float,
        "Each worker merges its drift counts into the database at most this often.",
    ),
    Setting(
        "MODELDOCK_DRIFT_REFRESH_SECONDS",
        60.0,
        float,
        "Drift statistics of windows still filling are recomputed at most this "
        "often in the background (and whenever a report finds them stale).",
    ),
    Setting(
        "MODELDOCK_CELERY_BROKER_URL",
        "",
        str,
        "Broker of the Celery workers that run batch jobs (CSV uploads, `POST "
        "/api/v1/models/<name>/jobs`), e.g. `amqp://guest:guest@127.0.0.1:5672//` "
        "or `redis://127.0.0.1:6379/1`. Empty: jobs run in a thread of the web "
        "worker that received them.",
    ),
    Setting(
        "MODELDOCK_CELERY_QUEUE",
        "modeldock-batch",
        str,
        "Broker queue of the batch chunks (workers started with "
        "`celery -A app.batch.celery worker` consume it).",
    ),
    Setting(
        "MODELDOCK_BATCH_CHUNK_ROWS",
        5000,
        int,
        "Rows per chunk of a batch job: the unit a worker predicts, stores and, "
        "if it dies, redoes.",
    ),
    Setting(
        "MODELDOCK_BATCH_MAX_ROWS",
        1_000_000,
        int,
        "Most rows in one job of the batch API (JSON or CSV); more gets 413.",
    ),
    # Single sign-on (docs/sso.md): OpenID Connect for browsers, JWT access tokens
    # for scripts.
    Setting(
        "MODELDOCK_OIDC_ISSUER",
        None,
        str,
        "Issuer URL of an OpenID provider (its discovery document is "
        "`<issuer>/.well-known/openid-configuration`). Unset: no single sign-on.",
    ),
    Setting(
        "MODELDOCK_OIDC_CLIENT_ID",
        None,
        str,
        "Client id of ModelDock at the provider, for the browser sign-in "
        "(authorization code with PKCE). Unset: no sign-in button.",
    ),
    Setting(
        "MODELDOCK_OIDC_CLIENT_SECRET",
        None,
        str,
        "Client secret for the browser sign-in (unset for a public client).",
    ),
    Setting(
        "MODELDOCK_OIDC_PROVIDER_NAME",
        "single sign-on",
        str,
        "Shown on the sign-in button: “Sign in with <name>”.",
    ),
    Setting(
        "MODELDOCK_OIDC_SCOPES",
        "openid profile email",
        str,
        "Scopes the browser sign-in asks for (space-separated; add the one "
        "that releases the role claim, e.g. `groups`).",
    ),
    Setting(
        "MODELDOCK_OIDC_USERNAME_CLAIM",
        "preferred_username",
        str,
        "Claim that names a user created at first sign-in (then `email`, then `sub`).",
    ),
    Setting(
        "MODELDOCK_OIDC_ROLE_CLAIM",
        "groups",
        str,
        "Claim (a list or a string; dots reach into objects, e.g. "
        "`realm_access.roles`) whose values give the role at each sign-in.",
    ),
    Setting(
        "MODELDOCK_OIDC_ADMIN_VALUES",
        [],
        _list,
        "Values of the role claim that make a user `admin` (comma-separated).",
    ),
    Setting(
        "MODELDOCK_OIDC_USER_VALUES",
        [],
        _list,
        "Values of the role claim that make a user `user` (comma-separated). "
        "Empty: every account of the provider may sign in as `user`; else "
        "accounts with none of these or the admin values are refused.",
    ),
    Setting(
        "MODELDOCK_LOCAL_LOGIN",
        True,
        _bool,
        "`off`: the username/password form is hidden and local passwords are "
        "refused (single sign-on only); the `flask users` commands still work.",
    ),
    Setting(
        "MODELDOCK_OIDC_AUDIENCE",
        None,
        str,
        "Audience (`aud`) that access tokens must carry to be accepted as "
        "`Authorization: Bearer <jwt>`. Unset: tokens are refused.",
    ),
    Setting(
        "MODELDOCK_OIDC_SCOPE_PREFIX",
        "modeldock:",
        str,
        "Prefix of ModelDock's scopes in a token's `scope` claim: "
        "`modeldock:predict` grants `predict`.",
    ),
    Setting(
        "MODELDOCK_OIDC_LEEWAY_SECONDS",
        30,
        int,
        "Clock skew allowed when checking a token's `exp`, `nbf` and `iat`.",
    ),
    Setting(
        "MODELDOCK_OIDC_JWKS_REFETCH_SECONDS",
        60.0,
        float,
        "Least time between two fetches of the provider's signing keys when a "
        "token names an unknown key (rotation); keys are also refetched hourly.",
    ),
)


def from_environment(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Return the settings present in the environment, parsed."""
    environ = os.environ if environ is None else environ
    return {s.key: s.parse(environ[s.key]) for s in SETTINGS if s.key in environ}


def defaults() -> dict[str, Any]:
    """Return every setting at its default value."""
    return {s.key: s.default for s in SETTINGS}


def finalize(config: dict[str, Any], instance_path: str) -> dict[str, Any]:
    """Derive Flask's own keys from ours; fill the development-only defaults."""
    production = config["MODELDOCK_ENV"] == "production"
    for key, allowed in (
        ("MODELDOCK_REDIS_OUTAGE", ("degrade", "refuse")),
        ("MODELDOCK_LOG_FORMAT", ("json", "text")),
        ("MODELDOCK_DRIFT_SOURCE", ("sketch", "payloads", "off")),
    ):
        if config[key] not in allowed:
            raise RuntimeError(f"{key} must be one of {allowed}, not {config[key]!r}")
    if not config["MODELDOCK_LOCAL_LOGIN"] and not (
        config.get("MODELDOCK_OIDC_ISSUER") and config.get("MODELDOCK_OIDC_CLIENT_ID")
    ):
        raise RuntimeError(
            "MODELDOCK_LOCAL_LOGIN=off needs single sign-on: set "
            "MODELDOCK_OIDC_ISSUER and MODELDOCK_OIDC_CLIENT_ID"
        )
    if not config.get("SECRET_KEY"):
        if production:
            raise RuntimeError("SECRET_KEY must be set when MODELDOCK_ENV=production")
        config["SECRET_KEY"] = _development_secret(Path(instance_path))
    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'modeldock.db'}"
    url = config["DATABASE_URL"]
    if url.startswith("postgres://"):  # Heroku-style URLs
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    config["SQLALCHEMY_DATABASE_URI"] = url
    engine_options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    engine_options.setdefault("pool_pre_ping", True)
    # JSON columns: NaN and ±inf as null (PostgreSQL refuses the bare tokens).
    engine_options.setdefault("json_serializer", json_text)
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options
    config["MAX_CONTENT_LENGTH"] = config["MODELDOCK_MAX_UPLOAD_MB"] * 1024 * 1024
    config["DEBUG"] = False if production else config.get("DEBUG", False)
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    config["SESSION_COOKIE_SECURE"] = production
    config["REMEMBER_COOKIE_SECURE"] = production
    config["REMEMBER_COOKIE_HTTPONLY"] = True
    if config.get("MODELDOCK_TRUSTED_HOSTS"):
        config["TRUSTED_HOSTS"] = list(config["MODELDOCK_TRUSTED_HOSTS"])
    redis_url = config.get("REDIS_URL")
    prefix = config["MODELDOCK_REDIS_PREFIX"]
    # Counts leased from Redis in blocks (app/ratelimit_storage.py): no Redis round
    # trip on most requests, and never more than the limit.
    config.setdefault("RATELIMIT_STORAGE_URI", storage_uri(redis_url))
    config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    if redis_url:
        # Fail fast when Redis is gone; what happens then is MODELDOCK_REDIS_OUTAGE.
        config.setdefault(
            "RATELIMIT_STORAGE_OPTIONS",
            {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        )
        config.setdefault(
            "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED",
            config["MODELDOCK_REDIS_OUTAGE"] != "refuse",
        )
        config.setdefault("CACHE_TYPE", "app.extensions.jsoncache.JSONRedisCache")
        config.setdefault("CACHE_REDIS_URL", redis_url)
    else:
        config.setdefault("CACHE_TYPE", "SimpleCache")
    config.setdefault("CACHE_KEY_PREFIX", prefix + "cache:")
    config.setdefault("CACHE_DEFAULT_TIMEOUT", 300)
    return config


def _development_secret(instance: Path) -> str:
    """Create (once) and return a random key kept in the instance folder."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
