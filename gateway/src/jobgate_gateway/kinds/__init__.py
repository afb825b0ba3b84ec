"""API modules, one per kind: `prepare(svc, principal, params, options) -> Submission` and
`submit(svc, principal, params, options, idempotency_key)`.

`params` arrive already loaded by the kind's params schema (`jobgate.kinds`); `prepare` adds
what only the gateway can check (paths on disk, ownership of an upload) and plans the job
without writing it; `submit` is `prepare` plus the one-job write, and the batch route
(`POST /api/v1/jobs/batch`) writes many prepared jobs in one transaction.
"""
