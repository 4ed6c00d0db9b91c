"""Signing and verification of the local, Entra-shaped access tokens.

The local managed-identity endpoint issues these tokens and the Graph simulator
verifies them, so both sides share this one definition. Tokens are HS256 JWTs
keyed by ``LOCAL_TOKEN_SIGNING_KEY`` (a random secret chosen by the launcher);
they are worthless outside this machine by design.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import jwt

ALGORITHM = "HS256"
SIGNING_KEY_ENV = "LOCAL_TOKEN_SIGNING_KEY"

# Fixed identities so logs, fixtures and assertions are reproducible.
DEFAULT_TENANT_ID = "72f988bf-0000-4000-8000-00000000c0de"
DEFAULT_CLIENT_ID = "0c1d2e3f-0000-4000-8000-00000000a99d"
DEFAULT_PRINCIPAL_ID = "9a8b7c6d-0000-4000-8000-00000000b1d0"


def principal_id_for(client_id: str | None) -> str:
    """Object id of the identity: fixed for system-assigned, derived per user-assigned client id."""
    if not client_id:
        return DEFAULT_PRINCIPAL_ID
    return str(uuid.uuid5(uuid.UUID(DEFAULT_PRINCIPAL_ID), client_id.lower()))


def issue_token(
    signing_key: str,
    *,
    audience: str,
    roles: Iterable[str],
    tenant_id: str = DEFAULT_TENANT_ID,
    client_id: str | None = None,
    lifetime_seconds: int = 3600,
    now: int | None = None,
) -> tuple[str, int]:
    """Return ``(jwt, expires_on)`` for an app-only token shaped like Entra's v1 tokens."""
    issued_at = int(time.time()) if now is None else now
    expires_on = issued_at + lifetime_seconds
    app_id = client_id or DEFAULT_CLIENT_ID
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires_on,
        "tid": tenant_id,
        "oid": principal_id_for(client_id),
        "sub": principal_id_for(client_id),
        "appid": app_id,
        "azp": app_id,
        "appidacr": "2",
        "idtyp": "app",
        "roles": list(roles),
        "ver": "1.0",
    }
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM), expires_on


def verify_token(token: str, signing_key: str, audience: str) -> dict[str, Any]:
    """Decode and validate a token; raises ``jwt.InvalidTokenError`` (or a subclass) if unusable."""
    return jwt.decode(
        token,
        signing_key,
        algorithms=[ALGORITHM],
        audience=audience,
        options={"require": ["exp", "iat", "aud", "tid", "appid"]},
    )
