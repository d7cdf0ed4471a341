"""Watching models in production: feedback, live quality, drift."""
