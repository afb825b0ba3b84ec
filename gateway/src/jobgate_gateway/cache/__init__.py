"""Cache jobs: seed 000's TeamCache API at /api/v1/cache/jobs, and the `cache` kind."""
