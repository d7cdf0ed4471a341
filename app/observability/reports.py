"""Questions asked of the stored request logs and audit trail, in SQL that runs
unchanged on SQLite and PostgreSQL.

Percentiles use the nearest-rank method with window functions (``row_number``
and ``count`` over a partition), which both databases support; time buckets use
whole epoch seconds, computed per dialect by one small SQL construct.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, Select, and_, case, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from app.extensions import db
from app.models import ApiKey, AuditEvent, ModelVersion, RequestLog, User
from app.models._time import utcnow
from app.web.bounds import MAX_ID, whole_number
from app.web.paging import Page

WINDOWS = {"hour": (timedelta(hours=1), 60), "day": (timedelta(days=1), 1800)}
EXPORT_COLUMNS = (
    "created_at",
    "request_id",
    "protocol",
    "model",
    "version",
    "status",
    "error_code",
    "rows",
    "latency_ms",
    "key",
    "user",
    "remote_addr",
)


class epoch(FunctionElement):  # noqa: N801  (reads like the SQL function it is)
    """Whole seconds since 1970 of a UTC timestamp column."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch, "sqlite")
def _epoch_sqlite(element, compiler, **kw):
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch)
def _epoch_default(element, compiler, **kw):
    return (
        f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS BIGINT)"
    )


def _is_error():
    return case((RequestLog.status_code >= 400, 1), else_=0)


# --- models list -----------------------------------------------------------------


def model_traffic(since: datetime) -> dict[str, tuple[int, int]]:
    """Requests and errors per model name since ``since``."""
    rows = db.session.execute(
        select(RequestLog.model_name, func.count(), func.sum(_is_error()))
        .where(RequestLog.created_at >= since, RequestLog.model_name.is_not(None))
        .group_by(RequestLog.model_name)
    ).all()
    return {name: (int(count), int(errors or 0)) for name, count, errors in rows}


# --- request log viewer ----------------------------------------------------------


@dataclass
class LogFilters:
    """What the request log viewer narrows by; empty fields do not filter."""

    model: str = ""
    version: int | None = None
    status: str = ""  # "", "ok", "error", "4xx", "5xx" or an exact code such as "404"
    since: datetime | None = None
    until: datetime | None = None
    # An API key prefix (the parameter is not called "key": keys never go in URLs).
    key: str = ""
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args) -> LogFilters:
        """Read the filters from a query string, noting what could not be read."""
        filters = cls(
            model=args.get("model", "").strip(),
            status=args.get("status", "").strip(),
            key=args.get("key_prefix", "").strip(),
        )
        raw_version = args.get("version", "").strip()
        if raw_version:
            filters.version = whole_number(raw_version, 1)
            if filters.version is None:
                filters.problems.append(
                    f"version must be a whole number from 1 to {MAX_ID}"
                )
        for name in ("since", "until"):
            raw = args.get(name, "").strip()
            if raw:
                try:
                    value = datetime.fromisoformat(raw)
                except ValueError:
                    filters.problems.append(f"{name} must be a date and time")
                    continue
                if value.tzinfo is None:  # the form's times are UTC
                    value = value.replace(tzinfo=utcnow().tzinfo)
                setattr(filters, name, value)
        if (
            filters.status
            and filters.status not in {"ok", "error", "4xx", "5xx"}
            and whole_number(filters.status, 100, 599) is None
        ):
            filters.problems.append("status must be ok, error, 4xx, 5xx or a code")
            filters.status = ""
        return filters

    def query_args(self) -> dict[str, str]:
        """The filters as query-string arguments (for pager and export links)."""
        out = {
            "model": self.model,
            "status": self.status,
            "key_prefix": self.key,
            "version": "" if self.version is None else str(self.version),
            "since": self.since.strftime("%Y-%m-%dT%H:%M") if self.since else "",
            "until": self.until.strftime("%Y-%m-%dT%H:%M") if self.until else "",
        }
        return {k: v for k, v in out.items() if v}

    def apply(self, query: Select) -> Select:
        conditions = []
        if self.model:
            conditions.append(RequestLog.model_name == self.model)
        if self.version is not None:
            conditions.append(RequestLog.version == self.version)
        status = self.status
        if status == "ok":
            conditions.append(RequestLog.status_code < 400)
        elif status == "error":
            conditions.append(RequestLog.status_code >= 400)
        elif status in {"4xx", "5xx"}:
            low = int(status[0]) * 100
            conditions += [
                RequestLog.status_code >= low,
                RequestLog.status_code < low + 100,
            ]
        elif status:
            conditions.append(RequestLog.status_code == int(status))
        if self.since:
            conditions.append(RequestLog.created_at >= self.since)
        if self.until:
            conditions.append(RequestLog.created_at < self.until)
        if self.key:
            conditions.append(ApiKey.prefix == self.key)
        return query.where(and_(*conditions)) if conditions else query


def _log_query(filters: LogFilters) -> Select:
    query = (
        select(RequestLog, ApiKey.prefix, User.username)
        .outerjoin(ApiKey, ApiKey.id == RequestLog.api_key_id)
        .outerjoin(User, User.id == RequestLog.user_id)
    )
    return filters.apply(query)


def request_log_page(filters: LogFilters, number: int, per_page: int = 50) -> Page:
    """One page of matching request logs, newest first."""
    query = _log_query(filters)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    page = Page([], number, per_page, total or 0)
    page.number = min(number, page.pages)
    page.items = db.session.execute(
        query.order_by(RequestLog.id.desc()).offset(page.offset).limit(per_page)
    ).all()
    return page


def request_log_rows(filters: LogFilters) -> Iterator[list]:
    """Every matching log as a list of cells (header first), streamed in batches."""
    yield list(EXPORT_COLUMNS)
    query = (
        _log_query(filters)
        .order_by(RequestLog.id.desc())
        .execution_options(yield_per=1000)
    )
    for log, prefix, username in db.session.execute(query):
        yield [
            log.created_at.isoformat(),
            log.request_id,
            log.protocol,
            log.model_name,
            log.version,
            log.status_code,
            log.error_code,
            log.rows,
            round(log.latency_ms, 3),
            prefix,
            username,
            log.remote_addr,
        ]


def model_names() -> list[str]:
    return list(
        db.session.scalars(
            select(RequestLog.model_name)
            .where(RequestLog.model_name.is_not(None))
            .distinct()
            .order_by(RequestLog.model_name)
        )
    )


# --- audit log ---------------------------------------------------------------------


def audit_page(
    number: int, action: str = "", actor: str = "", per_page: int = 50
) -> Page:
    """One page of audit events, newest first, optionally narrowed."""
    query = select(AuditEvent)
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    if actor:
        query = query.where(AuditEvent.actor.startswith(actor))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    page = Page([], number, per_page, total or 0)
    page.number = min(number, page.pages)
    events = list(
        db.session.scalars(
            query.order_by(AuditEvent.id.desc()).offset(page.offset).limit(per_page)
        )
    )
    numbers = _version_numbers(events)
    page.items = [
        AuditRow(event, readable_details(event.details or {}, numbers))
        for event in events
    ]
    return page


@dataclass
class AuditRow:
    """An audit event with its details as (label, text) pairs for people."""

    event: AuditEvent
    details: list[tuple[str, str]]


def _version_numbers(events: list[AuditEvent]) -> dict[int, int]:
    """Version numbers of the version ids older events recorded (``*version_id``)."""
    ids = {
        value
        for event in events
        for key, value in (event.details or {}).items()
        if key.endswith("version_id") and isinstance(value, int)
    }
    if not ids:
        return {}
    return dict(
        db.session.execute(
            select(ModelVersion.id, ModelVersion.number).where(ModelVersion.id.in_(ids))
        ).all()
    )


def readable_details(
    details: dict, version_numbers: dict[int, int]
) -> list[tuple[str, str]]:
    """Details as short labelled text: names and version numbers, not ids or dicts."""
    pairs = []
    for key, value in details.items():
        if key.endswith("version_id"):
            key = key.removesuffix("_id")
            value = (
                f"v{version_numbers[value]}"
                if value in version_numbers
                else None
                if value is None
                else "a deleted version"
            )
        elif key == "sha256" and isinstance(value, str):
            value = value[:12]
        pairs.append((key.replace("_", " "), _text(value)))
    return pairs


def _text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return (
            ", ".join(f"{k.replace('_', ' ')} {_text(v)}" for k, v in value.items())
            or "none"
        )
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or "none"
    return str(value)


# --- dashboard -----------------------------------------------------------------------


@dataclass
class VersionStats:
    """Traffic of one model version over a window."""

    model: str
    version: int | None
    requests: int
    errors: int
    p50_ms: float | None = None
    p95_ms: float | None = None

    @property
    def label(self) -> str:
        return f"{self.model} v{self.version}" if self.version else self.model

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass
class Dashboard:
    window: str
    since: datetime
    bucket_seconds: int
    bucket_labels: list[str]
    # label of a model version → requests per minute in each bucket
    per_minute: dict[str, list[float]]
    errors_per_minute: list[float]
    versions: list[VersionStats]

    @property
    def total_requests(self) -> int:
        return sum(v.requests for v in self.versions)


def dashboard(window: str = "hour", now: datetime | None = None) -> Dashboard:
    """Requests per minute, p50/p95 latency and error rate by model version."""
    span, bucket = WINDOWS.get(window, WINDOWS["hour"])
    window = window if window in WINDOWS else "hour"
    now = now or utcnow()
    # Align buckets to whole multiples so labels read naturally (…:00, …:30).
    end = int(now.timestamp()) // bucket * bucket + bucket
    start = end - int(span.total_seconds())
    since = datetime.fromtimestamp(start, tz=now.tzinfo)
    n_buckets = int(span.total_seconds()) // bucket
    in_window = RequestLog.created_at >= since
    slot = ((epoch(RequestLog.created_at) - start) // bucket).label("slot")
    counts = db.session.execute(
        select(
            slot,
            RequestLog.model_name,
            RequestLog.version,
            func.count(),
            func.sum(_is_error()),
        )
        .where(in_window)
        .group_by(slot, RequestLog.model_name, RequestLog.version)
    ).all()
    versions = {key.label: key for key in _percentiles(in_window)}
    minutes = bucket / 60
    per_minute: dict[str, list[float]] = {}
    errors = [0.0] * n_buckets
    for index, model, version, count, error_count in counts:
        label = VersionStats(model or "(none)", version, 0, 0).label
        series = per_minute.setdefault(label, [0.0] * n_buckets)
        index = min(max(int(index), 0), n_buckets - 1)
        series[index] += count / minutes
        errors[index] += (error_count or 0) / minutes
    labels = [
        datetime.fromtimestamp(start + i * bucket, tz=now.tzinfo).strftime("%H:%M")
        for i in range(n_buckets)
    ]
    ordered = sorted(versions.values(), key=lambda v: (-v.requests, v.label))
    return Dashboard(window, since, bucket, labels, per_minute, errors, ordered)


def _percentiles(in_window) -> list[VersionStats]:
    """Per model version: count, errors, nearest-rank p50 and p95 of latency."""
    partition = (RequestLog.model_name, RequestLog.version)
    ranked = (
        select(
            RequestLog.model_name.label("model"),
            RequestLog.version.label("version"),
            RequestLog.latency_ms.label("latency"),
            _is_error().label("error"),
            func.row_number()
            .over(partition_by=partition, order_by=RequestLog.latency_ms)
            .label("rn"),
            func.count().over(partition_by=partition).label("n"),
        )
        .where(in_window)
        .subquery()
    )

    def rank_at(percent: int):
        # The smallest latency whose rank reaches percent% of the group.
        return func.min(
            case((ranked.c.rn * 100 >= ranked.c.n * percent, ranked.c.latency))
        )

    rows = db.session.execute(
        select(
            ranked.c.model,
            ranked.c.version,
            func.count(),
            func.sum(ranked.c.error),
            rank_at(50),
            rank_at(95),
        ).group_by(ranked.c.model, ranked.c.version)
    ).all()
    return [
        VersionStats(model or "(none)", version, int(count), int(errors or 0), p50, p95)
        for model, version, count, errors, p50, p95 in rows
    ]
