"""PROTECTED_USERS (break-glass accounts) resolved to object ids, so that protection never
depends on what a page, a message or a caller happens to spell.

Entries are UPNs or object ids. A UPN is looked up in Graph once per process and again at least
hourly (a rename or a re-created account is seen within the hour); an object id needs no lookup.
Every path compares the target's object id with this set right before the revoke call. When the
set cannot be decided (an entry does not resolve, Graph or the identity endpoint is down) nothing
is revoked: the task is retried later like any transient failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.domain.directory import GraphError, GraphResult, GraphUser
from shared.domain.identifiers import is_object_id

log = logging.getLogger("signout.protection")

REFRESH_SECONDS = 3600.0
RETRY_SECONDS = 30.0  # after a failed refresh, the last good set is used while this passes

LookUp = Callable[[str, str, str], Awaitable[GraphResult[GraphUser]]]  # GraphGateway.get_user


@dataclass(frozen=True)
class ProtectedSet:
    object_ids: frozenset[str]
    upns: frozenset[str]

    def covers(self, *identifiers: str | None) -> bool:
        keys = {identifier.lower() for identifier in identifiers if identifier}
        return bool(keys & (self.object_ids | self.upns))


class ProtectedAccounts:
    def __init__(self, entries: frozenset[str], look_up: LookUp, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries = sorted(entries)
        self._look_up = look_up
        self._clock = clock
        self._resolved: ProtectedSet | None = None
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()

    async def current(self) -> ProtectedSet:
        """The resolved set; raises GraphError(transient) when it cannot be decided."""
        if self._resolved is not None and self._clock() < self._fresh_until:
            return self._resolved
        async with self._lock:
            if self._resolved is not None and self._clock() < self._fresh_until:
                return self._resolved
            try:
                self._resolved = await self._resolve()
                self._fresh_until = self._clock() + REFRESH_SECONDS
            except GraphError as failure:
                if self._resolved is None:
                    raise
                # The previous set still protects those accounts; look again soon.
                log.warning("PROTECTED_USERS refresh failed (%s); keeping the set resolved earlier", failure.code)
                self._fresh_until = self._clock() + RETRY_SECONDS
            return self._resolved

    async def _resolve(self) -> ProtectedSet:
        ids = {entry for entry in self._entries if is_object_id(entry)}
        upns = [entry for entry in self._entries if not is_object_id(entry)]
        found = await asyncio.gather(*(self._object_id(position, upn) for position, upn in enumerate(upns, 1)))
        return ProtectedSet(frozenset(ids | set(found)), frozenset(upns))

    async def _object_id(self, position: int, upn: str) -> str:
        try:
            found = await self._look_up(upn, str(uuid.uuid4()), "high")
        except GraphError as failure:
            # Fail closed whatever the reason (404 included: a typo or a deleted account must be
            # fixed, not silently ignored); health names the entry by position, never its value.
            raise GraphError(
                f"protection undecided: PROTECTED_USERS UPN #{position} could not be resolved ({failure.code or failure.status})",
                code="ProtectedUsersUnresolved",
                status=failure.status,
                request_id=failure.request_id,
                retry_after=failure.retry_after,
                transient=True,
            ) from failure
        return str(found.value.id).lower()
