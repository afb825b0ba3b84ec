"""API modules, one per kind: `submit(svc, principal, params, options, idempotency_key)`.

`params` arrive already loaded by the kind's params schema (`jobgate.kinds`); a module adds
what only the gateway can check (paths on disk, ownership of an upload) and records the job.
"""
