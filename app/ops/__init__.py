"""Operations: liveness, readiness and Prometheus metrics (``app.ops.routes``)."""
