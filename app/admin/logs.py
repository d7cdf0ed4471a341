"""Admin pages on what happened: dashboard, request log (CSV export), audit log."""

from __future__ import annotations

from flask import (
    Response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from app.admin.blueprints import pages_bp as bp
from app.observability import reports
from app.ui import charts
from app.ui.csvio import export_lines
from app.web.paging import page_number

MAX_SERIES = 6  # the busiest model versions get their own line


@bp.get("/")
def dashboard():
    window = request.args.get("window", "hour")
    data = reports.dashboard(window)
    busiest = sorted(data.per_minute, key=lambda k: -sum(data.per_minute[k]))
    series = {label: data.per_minute[label] for label in busiest[:MAX_SERIES]}
    series["errors"] = data.errors_per_minute
    versions = data.versions
    labels = [v.label for v in versions]
    chart_rate = charts.line_chart(
        data.bucket_labels, series, "Requests per minute by model version"
    )
    chart_latency = charts.bar_chart(
        labels,
        {
            "p50 ms": [v.p50_ms or 0 for v in versions],
            "p95 ms": [v.p95_ms or 0 for v in versions],
        },
        "Latency p50 and p95 by model version (ms)",
        lambda v: f"{v:.1f}",
    )
    chart_errors = charts.bar_chart(
        labels,
        {"error rate": [v.error_rate for v in versions]},
        "Error rate by model version",
        lambda v: f"{100 * v:.1f}%",
    )
    return render_template(
        "admin/dashboard.html",
        data=data,
        chart_rate=chart_rate,
        chart_latency=chart_latency,
        chart_errors=chart_errors,
    )


@bp.get("/requests")
def requests_log():
    filters = reports.LogFilters.from_args(request.args)
    page = reports.request_log_page(filters, page_number())
    return render_template(
        "admin/requests.html",
        filters=filters,
        page=page,
        models=reports.model_names(),
        args=filters.query_args(),
    )


@bp.get("/requests.csv")
def requests_export():
    filters = reports.LogFilters.from_args(request.args)
    if filters.problems:
        return redirect(url_for("admin_pages.requests_log", **request.args))
    rows = export_lines(reports.request_log_rows(filters))
    return Response(
        stream_with_context(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="request-log.csv"'},
    )


@bp.get("/audit")
def audit_log():
    action = request.args.get("action", "").strip()
    actor = request.args.get("actor", "").strip()
    page = reports.audit_page(page_number(), action, actor)
    return render_template("admin/audit.html", page=page, action=action, actor=actor)
