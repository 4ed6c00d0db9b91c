"""The admin console: one HTML page, its script and style sheet, served by the app itself.

The page needs `SignOuts.Read` like the log it shows; its script and style sheet hold no data and
are served without a key (a browser cannot send the page's key with them). Every value the page
shows comes from the public API and is rendered as text; the Content-Security-Policy allows only
this origin's own files (no inline script, nothing third-party).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import azure.functions as func

from shared.domain.problems import ProblemError, field_error
from shared.triggers.auth import READ_ROLE
from shared.triggers.responses import endpoint

bp = func.Blueprint()

STATIC = Path(__file__).with_name("console")
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}  # the only files served: no path from input
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL may carry the function key (`code`)
    "Cache-Control": "no-store",
}


@bp.route(route="console", methods=["GET"])
@endpoint(role=READ_ROLE)
async def get_console(req: func.HttpRequest) -> func.HttpResponse:
    return _file("index.html", "text/html")


@bp.route(route="console/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(role=None)
async def get_console_asset(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("name", "")
    if name not in ASSETS:
        raise ProblemError(404, "Not found", "the console has no such file", [field_error("/name", "is not a console file")])
    return _file(name, ASSETS[name])


def _file(name: str, mimetype: str) -> func.HttpResponse:
    return func.HttpResponse(_read(name), headers=SECURITY_HEADERS, mimetype=mimetype, charset="utf-8")


@cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()
