"""Typed settings with defaults: the one place that reads the environment."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from app.ratelimit_storage import storage_uri


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
    Setting("MODELDOCK_ENV", "development", str,
            "`production` refuses to start without `SECRET_KEY`, forces secure "
            "cookies and disables debug."),
    Setting("SECRET_KEY", None, str,
            "Session and CSRF signing key. Development generates one into "
            "`instance/secret_key`."),
    Setting("DATABASE_URL", None, str,
            "SQLAlchemy URL. Default: SQLite file `instance/modeldock.db`. "
            "PostgreSQL: `postgresql+psycopg://user@host/db`."),
    Setting("REDIS_URL", None, str,
            "When set, rate limits and the cache are stored in Redis (shared by "
            "every worker)."),
    Setting("MODELDOCK_MAX_UPLOAD_MB", 64, int,
            "Largest request body (model upload) in MB; larger gets 413."),
    Setting("MODELDOCK_MAX_BATCH_ROWS", 10000, int,
            "Most rows in one prediction request; more gets 413."),
    Setting("MODELDOCK_ALLOW_ANONYMOUS_PREDICT", False, _bool,
            "Allow prediction routes without an API key."),
    Setting("MODELDOCK_DEFAULT_MODEL", "demo", str,
            "Model used by the tutorial-compatible `POST /predict`."),
    Setting("MODELDOCK_TRUSTED_MODULES", [], _list,
            "Extra Python modules whose classes pickled models may use "
            "(comma-separated, exact module names)."),
    Setting("MODELDOCK_VALIDATION_MEMORY_MB", 2048, int,
            "Address-space limit of the process that validates an upload."),
    Setting("MODELDOCK_VALIDATION_CPU_SECONDS", 30, int,
            "CPU-time limit of the validation process."),
    Setting("MODELDOCK_VALIDATION_TIMEOUT_SECONDS", 60, int,
            "Wall-clock limit of the validation process."),
    Setting("MODELDOCK_MODEL_CACHE_SIZE", 16, int,
            "Loaded models kept in memory per worker (LRU by sha256)."),
    Setting("MODELDOCK_MODEL_CACHE_MB", 512.0, float,
            "Memory budget per worker for loaded models, in MB (estimated: an "
            "estimator's pickled size, twice an ONNX graph's); least recently used "
            "models are dropped beyond it."),
    Setting("MODELDOCK_MICROBATCH_MAX_ROWS", 0, int,
            "Micro-batching for versions served by scikit-learn: concurrent requests "
            "to one version are predicted together, up to this many rows. 0 = off. "
            "Needs a threaded worker (gunicorn `--threads` > 1)."),
    Setting("MODELDOCK_MICROBATCH_MAX_WAIT_MS", 2.0, float,
            "Longest a request waits for others to join its micro-batch, in ms."),
    Setting("MODELDOCK_REQUEST_LOG_ENABLED", True, _bool,
            "Write a request log row per prediction request (in batches, off the "
            "request path). Turn off only to measure what logging costs."),
    Setting("MODELDOCK_ROUTING_REFRESH_SECONDS", 0.5, float,
            "How often each worker checks the registry's change counter (new stable, "
            "canary or shadow versions, revoked keys); 0 checks on every request."),
    Setting("MODELDOCK_RATELIMIT_DEFAULT", "1200 per minute", str,
            "Default rate limit per API key (per address when anonymous)."),
    Setting("MODELDOCK_RATELIMIT_LOGIN", "10 per minute", str,
            "Rate limit on login attempts per address."),
    Setting("MODELDOCK_CORS_ORIGINS", [], _list,
            "Origins allowed to call the API from a browser (comma-separated)."),
    Setting("MODELDOCK_PROXY_HOPS", 0, int,
            "Reverse proxies in front of the app to trust for X-Forwarded-*."),
    Setting("MODELDOCK_REQUEST_LOG_FLUSH_SECONDS", 1.0, float,
            "Request logs are written in batches at most this often."),
    Setting("LOG_LEVEL", "INFO", str, "Python logging level."),
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
    if not config.get("SECRET_KEY"):
        if production:
            raise RuntimeError("SECRET_KEY must be set when MODELDOCK_ENV=production")
        config["SECRET_KEY"] = _development_secret(Path(instance_path))
    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'modeldock.db'}"
    url = config["DATABASE_URL"]
    if url.startswith("postgres://"):  # Heroku-style URLs
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    config["SQLALCHEMY_DATABASE_URI"] = url
    engine_options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    engine_options.setdefault("pool_pre_ping", True)
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options
    config["MAX_CONTENT_LENGTH"] = config["MODELDOCK_MAX_UPLOAD_MB"] * 1024 * 1024
    config["DEBUG"] = False if production else config.get("DEBUG", False)
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    config["SESSION_COOKIE_SECURE"] = production
    config["REMEMBER_COOKIE_SECURE"] = production
    config["REMEMBER_COOKIE_HTTPONLY"] = True
    redis_url = config.get("REDIS_URL")
    # One Redis round trip per request (app/ratelimit_storage.py), not three.
    config.setdefault("RATELIMIT_STORAGE_URI", storage_uri(redis_url))
    config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    if redis_url:
        config.setdefault("CACHE_TYPE", "RedisCache")
        config.setdefault("CACHE_REDIS_URL", redis_url)
    else:
        config.setdefault("CACHE_TYPE", "SimpleCache")
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
