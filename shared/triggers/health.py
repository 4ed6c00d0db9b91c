"""Health: is the configuration valid, is storage usable, and which Graph application
permissions does the managed identity's token actually carry (its `roles` claim).

Anonymous, for probes, so it answers within a second whatever its dependencies do: the checks run
together, each bounded, and each one's last result is kept for a few seconds, so a burst of probes
costs one round of checks. Each check says `ok`, `failing` or `timeout`. Nothing secret is
returned: no token, no key, no setting value, no exception text, only fixed descriptions.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from shared.domain.directory import GraphError
from shared.domain.tasks import iso
from shared.runtime import runtime
from shared.settings import SettingsError, get_settings

log = logging.getLogger("signout.health")

# Each feature, the least-privileged permission it needs, and broader ones that also work.
FEATURES: dict[str, tuple[str, frozenset[str]]] = {
    "signOut": ("User.RevokeSessions.All", frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All"})),
    "resolveAndVerifyUsers": (
        "User.Read.All",
        frozenset({"User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}),
    ),
    "bulkByGroup": ("GroupMember.Read.All", frozenset({"Group.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"})),
}
REQUIRED_FEATURES = ("signOut", "resolveAndVerifyUsers")
BROADER_THAN_NEEDED = frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All", "Directory.Read.All", "Group.Read.All"})
CHECK_TIMEOUT_SECONDS = 0.8  # per check; they run together, so health answers within a second
CACHE_SECONDS = 5.0  # a check's last result serves every probe in this window
TASKS_COUNTED = 1000  # the active set is read up to this many rows
NO_PROTECTED_USERS = "PROTECTED_USERS is empty: no break-glass account is protected"
# No answer at all: a connection that failed or a response that never came.
SILENT = (ServiceRequestError, ServiceResponseError, httpx.TransportError, OSError)

Probe = Callable[[], Awaitable[dict[str, Any]]]


class CheckFailedError(Exception):
    """A probe's failure with a fixed description, safe to show to anyone."""


@dataclass(frozen=True)
class Check:
    """A probe and the fixed texts that report its failures (exception text is never shown)."""

    probe: Probe
    silent: str  # it did not answer (timeout, no connection)
    refused: str  # it answered with an error


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
    report: dict[str, Any] = {
        "ok": all(features[name]["available"] for name in REQUIRED_FEATURES),
        "granted": sorted(granted),
        "features": features,
    }
    broader = sorted(granted & BROADER_THAN_NEEDED)
    if broader:
        report["warning"] = f"broader than needed (least privilege): {', '.join(broader)}"
    return report


async def _configuration() -> dict[str, Any]:
    protected = len(get_settings().protected_users)
    return {"protectedUsers": protected, **({} if protected else {"warning": NO_PROTECTED_USERS})}


async def _storage() -> dict[str, Any]:
    rt = runtime()
    await asyncio.gather(rt.table.ping(), rt.queue.ping(rt.settings.signout_queue))
    return {}


async def _graph_permissions() -> dict[str, Any]:
    rt = runtime()
    token = await rt.credential.get_token(rt.settings.graph_scope)
    try:
        return permission_report(token_roles(token.token))
    except ValueError:
        raise CheckFailedError("the token is not a readable JWT") from None


async def _protection() -> dict[str, Any]:
    """PROTECTED_USERS resolved to object ids (cached for the process): undecided means no revocation."""
    try:
        resolved = await runtime().protected.current()
    except GraphError as failure:  # its message names the entry by position, never its value
        raise CheckFailedError(failure.message) from None
    return {"resolved": len(resolved.object_ids)}


async def _tasks() -> dict[str, Any]:
    """Unfinished tasks, and those waiting to be retried with the earliest next attempt."""
    unfinished, waiting, earliest = await runtime().index.count_active(TASKS_COUNTED)
    return {"unfinished": unfinished, "retrying": waiting, **({"nextAttemptAt": iso(earliest)} if earliest else {})}


CHECKS = {
    "configuration": Check(_configuration, "the configuration could not be read in time", "the configuration is invalid"),
    "storage": Check(_storage, "storage did not answer", "storage refused the request"),
    "graphPermissions": Check(_graph_permissions, "the managed identity endpoint did not answer", "could not get a token"),
    "protectedUsers": Check(
        _protection, "Microsoft Graph did not answer", "PROTECTED_USERS could not be resolved: nobody is signed out"
    ),
    "tasks": Check(_tasks, "storage did not answer", "storage refused the request"),
}


def _failure(name: str, check: Check, exc: Exception) -> dict[str, Any]:
    log.warning("health: %s check failed: %s", name, type(exc).__name__)  # the type only: messages may hold URLs
    if isinstance(exc, SettingsError):
        return {"ok": False, "state": "failing", "error": exc.public, **({"setting": exc.setting} if exc.setting else {})}
    if isinstance(exc, CheckFailedError):
        text = str(exc)
    elif isinstance(exc, SILENT):
        text = check.silent
    elif isinstance(exc, HttpResponseError):  # azure-identity's ClientAuthenticationError too
        text = check.refused
    else:
        text = f"the {name} check failed"
    return {"ok": False, "state": "failing", "error": text}


def _discard(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned probe's late failure is not an asyncio error


class Health:
    """Runs the checks together, each within `timeout`, and keeps each result for `ttl` seconds."""

    def __init__(
        self,
        checks: dict[str, Check],
        timeout: float = CHECK_TIMEOUT_SECONDS,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks, self.timeout, self.ttl, self.clock = checks, timeout, ttl, clock
        self._rounds: dict[str, tuple[float, asyncio.Future[dict[str, Any]]]] = {}

    async def report(self) -> dict[str, Any]:
        results = await asyncio.gather(*(self._result(name) for name in self.checks))
        checks = dict(zip(self.checks, results, strict=True))
        return {"status": "healthy" if all(check["ok"] for check in results) else "unhealthy", "checks": checks}

    async def _result(self, name: str) -> dict[str, Any]:
        now, loop = self.clock(), asyncio.get_running_loop()
        started, round_ = self._rounds.get(name, (0.0, None))
        if round_ is None or now - started >= self.ttl or round_.get_loop() is not loop:
            round_ = asyncio.ensure_future(self._run(name, self.checks[name]))
            self._rounds[name] = (now, round_)
        return dict(await asyncio.shield(round_))  # probes waiting on a round never cancel it

    async def _run(self, name: str, check: Check) -> dict[str, Any]:
        probe = asyncio.ensure_future(check.probe())
        done, _ = await asyncio.wait({probe}, timeout=self.timeout)
        if not done:
            # Cancelled, not awaited: a probe that ignores cancellation must not hold health up.
            probe.cancel()
            probe.add_done_callback(_discard)
            log.warning("health: %s check timed out after %.1f s", name, self.timeout)
            return {"ok": False, "state": "timeout", "error": check.silent}
        try:
            details = dict(probe.result())
        except Exception as exc:  # noqa: BLE001 - report, never raise: health must answer when things are broken
            return _failure(name, check, exc)
        ok = details.pop("ok", True)  # the permission report says whether the required roles are there
        return {"ok": ok, "state": "ok" if ok else "failing", **details}


_health = Health(CHECKS)


async def check_health() -> dict[str, Any]:
    return await _health.report()
