"""Canonical job API for every kind: /api/v1/jobs."""
