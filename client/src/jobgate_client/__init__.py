"""Jobgate's Python client: every canonical route, typed errors, streamed transfers."""
