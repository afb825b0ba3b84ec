"""Canonical schedule API for every kind: /api/v1/schedules (seed 002's `/scheduled-jobs`
dialect is built on `service`)."""
