"""Jobgate stats-service: live throughput, worker liveness, analytics and streams.

A stub until its issue: the package exists so the layout, the virtualenv and the
images are complete. Events it will consume already flow on `jobgate.events`.
"""
