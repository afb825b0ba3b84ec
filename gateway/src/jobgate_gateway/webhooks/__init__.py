"""Canonical webhook API: /api/v1/webhooks (subscriptions to job events, their deliveries)."""
