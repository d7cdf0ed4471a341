"""Rollouts: the changes that decide what serves — aliases (activate, roll back,
canary, shadow), how versions are served, and the history of those changes."""
