"""Watching models in production: feedback on predictions and live quality."""
