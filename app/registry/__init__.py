"""Storing, verifying and loading model artifacts."""
