"""Health: is storage usable, is the configuration valid, and which Graph application
permissions does the managed identity's token actually carry (its `roles` claim).

Nothing secret is returned: no token, no key, no connection string.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from shared.runtime import runtime
from shared.settings import SettingsError, get_settings

# Each feature, the least-privileged permission it needs, and broader ones that also work.
FEATURES: dict[str, tuple[str, frozenset[str]]] = {
    "signOut": ("User.RevokeSessions.All", frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All"})),
    "resolveAndVerifyUsers": ("User.Read.All", frozenset({"User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"})),
    "bulkByGroup": ("GroupMember.Read.All", frozenset({"Group.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"})),
}
REQUIRED_FEATURES = ("signOut", "resolveAndVerifyUsers")
BROADER_THAN_NEEDED = frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All", "Directory.Read.All", "Group.Read.All"})
CHECK_TIMEOUT_SECONDS = 10


def token_roles(token: str) -> list[str]:
    """The `roles` claim of a JWT access token (read only; Graph validates the signature)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise ValueError("the access token is not a readable JWT") from exc
    roles = claims.get("roles", [])
    return sorted(str(role) for role in roles) if isinstance(roles, list) else []


def permission_report(roles: list[str]) -> dict[str, Any]:
    granted = set(roles)
    features = {}
    for name, (least, alternatives) in FEATURES.items():
        available = least in granted or bool(granted & alternatives)
        entry: dict[str, Any] = {"available": available, "requires": least}
        if not available:
            entry["fix"] = f"grant the managed identity the Microsoft Graph application permission {least} and admin-consent it"
        features[name] = entry
    report: dict[str, Any] = {"ok": all(features[name]["available"] for name in REQUIRED_FEATURES), "granted": sorted(granted), "features": features}
    broader = sorted(granted & BROADER_THAN_NEEDED)
    if broader:
        report["warning"] = f"broader than needed (least privilege): {', '.join(broader)}"
    return report


async def _storage() -> dict[str, Any]:
    rt = runtime()
    await asyncio.gather(rt.store.ping(), rt.queue.ping(rt.settings.signout_queue))
    return {"ok": True}


async def _graph_permissions() -> dict[str, Any]:
    rt = runtime()
    token = await rt.credential.get_token(rt.settings.graph_scope)
    return permission_report(token_roles(token.token))


async def _check(name: str, probe: Any) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(probe(), CHECK_TIMEOUT_SECONDS)
    except asyncio.TimeoutError:
        return {"ok": False, "error": f"{name} check timed out"}
    except Exception as exc:  # report, never raise: health must answer when things are broken
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}


async def check_health() -> dict[str, Any]:
    try:
        get_settings()
    except SettingsError as exc:
        return {"status": "unhealthy", "checks": {"configuration": {"ok": False, "error": str(exc)}}}
    storage, graph = await asyncio.gather(_check("storage", _storage), _check("graph", _graph_permissions))
    checks = {"configuration": {"ok": True}, "storage": storage, "graphPermissions": graph}
    return {"status": "healthy" if all(check["ok"] for check in checks.values()) else "unhealthy", "checks": checks}
