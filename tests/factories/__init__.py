"""Rows for tests (warehouse-style factories), one module per domain, written through the
real domain functions: `users`, `jobs` (with each kind's params maker), `files`, `videos`,
`schedules`."""
