"""Who is calling: App Service Authentication's principal, and the app roles it holds.

Function keys (authLevel FUNCTION) guard every endpoint but health. On top of that, with
REQUIRE_APP_ROLES=true, callers need an Entra ID app role. The `x-ms-client-principal` header
is only trusted when App Service Authentication is on for the app (the platform then strips any
copy a client sends); otherwise a request carrying it is refused, so it cannot be forged.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

import azure.functions as func

from shared.domain.principal import Principal
from shared.domain.problems import ProblemError

CREATE_ROLE = "SignOuts.Create"  # create sign-outs and bulk jobs, post alerts
READ_ROLE = "SignOuts.Read"  # read tasks, the remediation log and jobs
APPROVE_ROLE = "SignOuts.Approve"  # approve or reject bulk jobs someone else requested
PRINCIPAL_HEADER = "x-ms-client-principal"
_OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_APP_ID_CLAIMS = ("azp", "appid")
_NAME_CLAIMS = ("name", "preferred_username", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name")
MAX_HEADER_CHARS = 16 * 1024


def easy_auth_enabled() -> bool:
    return os.environ.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true"


def roles_required() -> bool:
    return os.environ.get("REQUIRE_APP_ROLES", "").strip().lower() == "true"


def _first(claims: dict[str, list[str]], names: tuple[str, ...]) -> str | None:
    for name in names:
        if claims.get(name):
            return claims[name][0][:256]
    return None


def parse_principal(header: str) -> Principal:
    if len(header) > MAX_HEADER_CHARS:
        raise ProblemError(401, "Unauthorized", "the client principal is too large")
    try:
        data: Any = json.loads(base64.b64decode(header, validate=True))
        role_type = data.get("role_typ") or "roles"
        claims: dict[str, list[str]] = {}
        for claim in data.get("claims", []):
            claims.setdefault(str(claim["typ"]), []).append(str(claim["val"]))
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ProblemError(401, "Unauthorized", "the client principal is unreadable") from exc
    roles = frozenset(claims.get(role_type, []) + claims.get("roles", []))
    return Principal(_first(claims, _OBJECT_ID_CLAIMS), _first(claims, _APP_ID_CLAIMS), _first(claims, _NAME_CLAIMS), roles)


def authorize(req: func.HttpRequest, role: str) -> Principal | None:
    """The caller's identity for `requestedBy`; raises 401/403 problems when it may not call.
    Routes declare their role once, with `triggers.responses.endpoint(role=...)`."""
    header = req.headers.get(PRINCIPAL_HEADER)
    if header is not None and not easy_auth_enabled():
        raise ProblemError(401, "Unauthorized", f"{PRINCIPAL_HEADER} is only accepted when App Service Authentication is enabled")
    principal = parse_principal(header) if header is not None else None
    if roles_required():
        if principal is None:
            raise ProblemError(401, "Unauthorized", "sign in with Entra ID (App Service Authentication) to call this endpoint")
        if role not in principal.roles:
            raise ProblemError(403, "Forbidden", f"this endpoint needs the app role {role}")
    return principal
