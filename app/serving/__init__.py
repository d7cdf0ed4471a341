"""Serving: routing to versions, input parsing, prediction, output formatting."""
