"""Local managed-identity endpoint speaking the App Service protocol (api-version 2019-08-01).

Point the real azure-identity ``ManagedIdentityCredential`` at it with
``IDENTITY_ENDPOINT=http://127.0.0.1:PORT/msi/token`` and ``IDENTITY_HEADER=<secret>``.

    IDENTITY_HEADER=... LOCAL_TOKEN_SIGNING_KEY=... python -m tools.identity_endpoint --port 8081

Environment: IDENTITY_HEADER and LOCAL_TOKEN_SIGNING_KEY (required), LOCAL_IDENTITY_ROLES
(comma separated), LOCAL_TENANT_ID, LOCAL_TOKEN_LIFETIME_SECONDS.
Control API (for tests): POST /_identity/config, GET /_identity/stats, POST /_identity/reset.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tools import loopback
from tools.local_tokens import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, SIGNING_KEY_ENV, issue_token

TOKEN_PATH = "/msi/token"  # noqa: S105 - a URL path, not a secret
API_VERSION = "2019-08-01"
DEFAULT_ROLES = ("User.RevokeSessions.All", "User.Read.All", "GroupMember.Read.All")


@dataclass(frozen=True)
class IdentitySettings:
    identity_header: str
    signing_key: str
    roles: tuple[str, ...] = DEFAULT_ROLES
    tenant_id: str = DEFAULT_TENANT_ID
    lifetime_seconds: int = 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> IdentitySettings:
        missing = [name for name in ("IDENTITY_HEADER", SIGNING_KEY_ENV) if not env.get(name)]
        if missing:
            raise ValueError(f"missing required environment variable(s): {', '.join(missing)}")
        roles = env.get("LOCAL_IDENTITY_ROLES")
        return cls(
            identity_header=env["IDENTITY_HEADER"],
            signing_key=env[SIGNING_KEY_ENV],
            roles=_split_roles(roles) if roles is not None else DEFAULT_ROLES,
            tenant_id=env.get("LOCAL_TENANT_ID") or DEFAULT_TENANT_ID,
            lifetime_seconds=int(env.get("LOCAL_TOKEN_LIFETIME_SECONDS") or 3600),
        )


@dataclass
class Behaviour:
    """What the control API can change at run time; reset restores the startup settings."""

    roles: tuple[str, ...]
    lifetime_seconds: int
    fail_next: int = 0
    fail_status: int = 500
    delay_ms: int = 0
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "served": 0, "failed": 0})

    @classmethod
    def initial(cls, settings: IdentitySettings) -> Behaviour:
        return cls(roles=settings.roles, lifetime_seconds=settings.lifetime_seconds)

    def restore(self, settings: IdentitySettings) -> None:
        """Back to the startup behaviour, in place (the app's state must not be replaced once running)."""
        fresh = Behaviour.initial(settings)
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))

    def public(self) -> dict[str, Any]:
        return {
            "roles": list(self.roles),
            "lifetime_seconds": self.lifetime_seconds,
            "fail_next": self.fail_next,
            "fail_status": self.fail_status,
            "delay_ms": self.delay_ms,
        }


SETTINGS = web.AppKey("settings", IdentitySettings)
BEHAVIOUR = web.AppKey("behaviour", Behaviour)


def _split_roles(text: str) -> tuple[str, ...]:
    return tuple(role.strip() for role in text.split(",") if role.strip())


def _error(status: int, message: str) -> web.Response:
    # Same shape the App Service endpoint uses; MSAL reads statusCode/message from it.
    body = {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}
    return web.json_response(body, status=status)


async def token(request: web.Request) -> web.Response:
    settings, state = request.app[SETTINGS], request.app[BEHAVIOUR]
    state.stats["requests"] += 1
    if state.delay_ms:
        await asyncio.sleep(state.delay_ms / 1000)
    response = _token_response(request, settings, state)
    state.stats["served" if response.status == 200 else "failed"] += 1
    return response


def _token_response(request: web.Request, settings: IdentitySettings, state: Behaviour) -> web.Response:
    if state.fail_next > 0:
        state.fail_next -= 1
        return _error(state.fail_status, "Injected failure from the local identity endpoint.")
    sent = request.headers.get("X-IDENTITY-HEADER", "").encode()
    if not secrets.compare_digest(sent, settings.identity_header.encode()):
        return _error(401, "Missing or invalid X-IDENTITY-HEADER.")
    query = request.query
    if query.get("api-version") != API_VERSION:
        return _error(400, f"Unsupported api-version; use {API_VERSION}.")
    resource = query.get("resource")
    if not resource:
        return _error(400, "No resource parameter specified.")
    client_id = query.get("client_id")
    access_token, expires_on = issue_token(
        settings.signing_key,
        audience=resource,
        roles=state.roles,
        tenant_id=settings.tenant_id,
        client_id=client_id,
        lifetime_seconds=state.lifetime_seconds,
    )
    return web.json_response(
        {
            "access_token": access_token,
            # azure-identity parses this with int(): a digit string, never a float.
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id or DEFAULT_CLIENT_ID,
        }
    )


CONFIG_FIELDS = {
    "roles": list,
    "fail_next": int,
    "fail_status": int,
    "delay_ms": int,
    "lifetime_seconds": int,
}


async def set_config(request: web.Request) -> web.Response:
    try:
        changes = _parse_config(await request.json())
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    state = request.app[BEHAVIOUR]
    for name, value in changes.items():
        setattr(state, name, tuple(value) if name == "roles" else value)
    return web.json_response(state.public())


def _parse_config(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")
    unknown = set(body) - set(CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    for name, value in body.items():
        kind = CONFIG_FIELDS[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{name} must be a {kind.__name__}")
        if kind is int and value < 0:
            raise ValueError(f"{name} must not be negative")
    if "roles" in body and not all(isinstance(role, str) for role in body["roles"]):
        raise ValueError("roles must be a list of strings")
    if "fail_status" in body and not 400 <= body["fail_status"] <= 599:
        raise ValueError("fail_status must be an HTTP error status (400-599)")
    return body


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[BEHAVIOUR].public())


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[BEHAVIOUR].stats)


async def reset(request: web.Request) -> web.Response:
    request.app[BEHAVIOUR].restore(request.app[SETTINGS])
    return web.json_response(request.app[BEHAVIOUR].public())


async def not_found(request: web.Request) -> web.Response:
    return _error(404, f"No such endpoint: {request.method} {request.path}")


def build_app(settings: IdentitySettings | None = None) -> web.Application:
    """The endpoint as an aiohttp app; settings default to the environment."""
    settings = settings or IdentitySettings.from_env()
    app = web.Application()
    app[SETTINGS] = settings
    app[BEHAVIOUR] = Behaviour.initial(settings)
    app.router.add_get(TOKEN_PATH, token)
    app.router.add_get("/_identity/config", get_config)
    app.router.add_post("/_identity/config", set_config)
    app.router.add_get("/_identity/stats", stats)
    app.router.add_post("/_identity/reset", reset)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


def main(argv: list[str] | None = None) -> None:
    loopback.run("identity_endpoint", __doc__ or "", IdentitySettings.from_env, build_app, argv, "identity endpoint", TOKEN_PATH)


if __name__ == "__main__":
    sys.exit(main())
