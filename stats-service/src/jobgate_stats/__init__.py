"""Jobgate stats-service: live job streams (WebSocket, Server-Sent Events) and analytics.

An ASGI service (Starlette under uvicorn) beside the gateway, behind the same edge: Flask
under gunicorn's sync workers cannot hold thousands of open streams. It reads the
`jobgate.events` exchange (one exclusive queue per process) and the `job_events` table, and
authenticates callers with the gateway's own code (`jobgate.authn`).
"""
