"""Jobgate's edge agent: nginx's parent process, keeping it configured from PostgreSQL.

Open-source nginx is reconfigured only through its files and signals, so the agent runs it
as a child (`nginx.py`), renders the proxy set into its configuration and reloads it
(`apply.py`, `agent.py`), runs the active health checks nginx lacks (`health.py`) and turns
its JSON access log into the stats tables (`tailer.py`).
"""
