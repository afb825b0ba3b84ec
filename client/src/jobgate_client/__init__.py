"""Jobgate's Python client: every canonical route, typed errors, streamed transfers, live
job events (WebSocket, Server-Sent Events or polling), and the `jobgate` command line."""

__version__ = "0.1.0"

from jobgate_client.client import Client
from jobgate_client.errors import (
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    JobFailed,
    JobgateError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
)
from jobgate_client.models import TERMINAL, Job, JobEvent, Page
from jobgate_client.streams import StreamUnavailable

__all__ = [
    "TERMINAL",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "InvalidRequest",
    "Job",
    "JobEvent",
    "JobFailed",
    "JobgateError",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "StreamUnavailable",
    "Unauthorized",
    "__version__",
]
