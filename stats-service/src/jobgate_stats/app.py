"""The stats-service app factory (flaskr-style, for Starlette): routes, and the long-lived
parts (broker consumer, event tail, metrics sampler) run for the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from jobgate.config import Settings
from jobgate.errors import code_for_status
from jobgate.logs import configure_logging
from jobgate_stats import analytics, streams
from jobgate_stats.services import Services
from jobgate_stats.web import Stamp, dialect_for


async def health(request: Request) -> JSONResponse:
    """Alive, and whether its two sources are: the events exchange and the event table."""
    services: Services = request.app.state.services
    sources = {
        "events_exchange": "up" if services.broker.connected else "down",
        "job_events": "up" if services.tail.healthy else "down",
    }
    healthy = all(state == "up" for state in sources.values())
    return JSONResponse(
        {
            "status": "healthy" if healthy else "degraded",
            "service": "stats",
            "sources": sources,
            "streams": services.hub.subscribers(),
        }
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body = dialect_for(request.url.path)(
        exc.status_code, code_for_status(exc.status_code), str(exc.detail), {}
    )
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


ROUTES = [
    Route("/health", health),
    Route("/api/v1/jobs/{job_id}/events", streams.job_events_route),
    Route("/api/v1/analytics/dashboard", analytics.dashboard),
    Route("/api/v1/analytics/trends", analytics.trends),
    Route("/api/v1/analytics/export", analytics.export),
    WebSocketRoute("/ws/jobs", streams.ws_jobs),
    WebSocketRoute("/ws/jobs/{job_id}", streams.ws_job),
    WebSocketRoute("/ws/tasks", streams.ws_tasks),
    WebSocketRoute("/ws/metrics", streams.ws_metrics),
    WebSocketRoute("/api/ws/updates", streams.ws_updates),
]


def create_app(config: Settings | None = None, *, services: Services | None = None) -> Starlette:
    settings = config or Settings.from_env()
    configure_logging("stats", settings.log_level, settings.log_format)
    svc = services or Services.create(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(svc.broker.run(), name="broker"),
            asyncio.create_task(svc.tail.run(), name="tail"),
            asyncio.create_task(svc.sampler.run(), name="sampler"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            svc.database.close()

    app = Starlette(
        routes=ROUTES, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.add_middleware(Stamp)
    app.state.services = svc
    return app
