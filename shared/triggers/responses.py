"""HTTP plumbing shared by the endpoints: JSON and problem+json responses, error mapping."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlencode, urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError, HttpResponseError

from shared.domain.principal import Principal
from shared.domain.problems import PROBLEM_CONTENT_TYPE, ProblemError
from shared.settings import SettingsError
from shared.triggers.auth import authorize
from shared.usecases.intake import BusyError, PartlyAcceptedError

log = logging.getLogger("signout.http")
Handler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, headers=headers, mimetype="application/json")


def problem_response(problem: ProblemError, instance: str | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(problem.body(instance)), status_code=problem.status, headers=problem.headers, mimetype=PROBLEM_CONTENT_TYPE
    )


def _unavailable(exc: Exception) -> ProblemError | None:
    """Storage or a dependency is down: 503 so the caller retries. Per user, nothing is
    half-accepted; a request for several users lists which ones were accepted anyway."""
    if isinstance(exc, PartlyAcceptedError):
        errors = [
            {"pointer": "/users", "detail": f"{user}: not accepted (storage unavailable); retry"} for user in exc.failed_users
        ]
        problem = ProblemError(
            503,
            "Partly accepted",
            f"{len(exc.accepted)} accepted, {len(exc.failed_users)} not: "
            "retry the request (accepted users join their queued tasks)",
            errors,
            {"Retry-After": "5"},
        )
        problem.extra = {"tasks": [{"id": task.id, "user": task.user, "status": task.status.value} for task in exc.accepted]}
        return problem
    if isinstance(exc, BusyError):
        return ProblemError(503, "Busy", str(exc), headers={"Retry-After": "2"})
    if isinstance(exc, HttpResponseError) and exc.status_code is not None and exc.status_code < 500:
        return None
    if isinstance(exc, AzureError):
        return ProblemError(503, "Storage unavailable", "the request was not accepted; retry later", headers={"Retry-After": "5"})
    return None


_caller: ContextVar[Principal | None] = ContextVar("caller", default=None)


def caller() -> Principal | None:
    """The signed-in caller of the request being handled (None with function keys only)."""
    return _caller.get()


def endpoint(role: str | None) -> Callable[[Handler], Handler]:
    """Declare a route once: the app role it needs (None: anonymous, health only), checked before
    the handler runs; then Problems render as problem+json, dependency outages as 503, anything
    else as a bare 500."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(req: func.HttpRequest) -> func.HttpResponse:
            path = urlsplit(req.url).path
            try:
                token = _caller.set(authorize(req, role) if role else None)
                try:
                    return await handler(req)
                finally:
                    _caller.reset(token)
            except ProblemError as problem:
                return problem_response(problem, path)
            except SettingsError as exc:  # nothing is accepted or run until it is fixed (fail closed)
                log.error("configuration error: %s", exc)
                return problem_response(
                    ProblemError(503, "Service misconfigured", f"{exc.public}; ask the administrator to fix it"), path
                )
            except Exception as exc:
                unavailable = _unavailable(exc)
                if unavailable is not None:
                    log.warning("dependency unavailable on %s: %s", path, type(exc).__name__)
                    return problem_response(unavailable, path)
                log.exception("unexpected error on %s", path)
                return problem_response(ProblemError(500, "Internal error", "an unexpected error occurred"), path)

        wrapper.required_role = role  # type: ignore[attr-defined]  # read by tests: every route declares one
        return wrapper

    return decorate


def absolute_url(req: func.HttpRequest, path: str, query: dict[str, str] | None = None) -> str:
    """A URL on this app, keeping the caller's function key (`code`) so a poller can follow it."""
    parts = urlsplit(req.url)
    params = dict(query or {})
    if req.params.get("code"):
        params["code"] = req.params["code"]
    suffix = f"?{urlencode(params)}" if params else ""
    return f"{parts.scheme}://{parts.netloc}{path}{suffix}"
