"""MLflow scoring protocol: routes and request/response shapes."""
