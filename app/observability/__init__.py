"""Observability: Prometheus metrics, request logs, JSON logs, privacy of what is
logged, the audit trail, and the reports the admin pages read from them."""
