"""The web dashboard at `/dashboard`: the project's own HTML, CSS and JavaScript modules.

No build step, no framework, no CDN: the files under `static/` are served as they are, so the
page works offline. The page is a client of the public API like any other (JWT login, the
canonical routes through the edge, stats-service's streams with `?token=`); nothing here
reads the database. Every answer carries a Content-Security-Policy that allows only this
origin (scripts, styles, images, and the streams' WebSockets), so no inline script could run.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, Response, redirect, request, send_from_directory

STATIC = Path(__file__).resolve().parent / "static"
# Host header values that may appear in the policy (anything else: 'self' alone).
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")

blp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


def content_security_policy(host: str) -> str:
    """Same origin only. `connect-src` also names this host's ws:/wss: explicitly, for
    browsers whose 'self' does not yet cover WebSockets."""
    connect = "'self'"
    if _HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


@blp.after_request
def _harden(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy(request.host)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    # Revalidate every time (ETag/Last-Modified make that a 304): a new release shows at once.
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.get("")
def index() -> Response:
    """The single page; views are chosen by the URL's fragment (`#/jobs/<id>`, …)."""
    return send_from_directory(STATIC, "index.html", max_age=0)


@blp.get("/")
def index_slash() -> Response:
    return redirect("/dashboard", code=308)


@blp.get("/static/<path:filename>")
def static_file(filename: str) -> Response:
    return send_from_directory(STATIC, filename, max_age=0)
