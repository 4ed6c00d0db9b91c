"""Clients of this worker process: created lazily, once, inside the event loop that uses them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import httpx

from shared.usecases.job_counts import JobCounts
from shared.domain.pacing import WritePacer
from shared.settings import Settings, get_settings
from shared.adapters.tables.store import StatusStore
from shared.adapters.storage import queue_service, read_connection, table_service
from shared.adapters.queues import WorkQueue

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.adapters.graph import GraphGateway
    from shared.usecases.protection import ProtectedAccounts


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def store(self) -> StatusStore:
        return StatusStore(table_service(read_connection()), self.settings.status_table)

    @cached_property
    def counts(self) -> JobCounts:
        return JobCounts(self.store)

    @cached_property
    def queue(self) -> WorkQueue:
        return WorkQueue(queue_service(read_connection()))

    @cached_property
    def pacer(self) -> WritePacer:
        return WritePacer(ceiling=self.settings.graph_writes_per_second)

    @cached_property
    def http(self) -> httpx.AsyncClient:
        """Outbound calls other than Graph and storage (Logic Apps callbacks)."""
        return httpx.AsyncClient(follow_redirects=False)

    @cached_property
    def credential(self) -> AsyncTokenCredential:
        from shared.adapters.credentials import create_credential

        return create_credential()

    @cached_property
    def graph(self) -> GraphGateway:
        from shared.adapters.graph import GraphGateway, create_graph_client

        client = create_graph_client(self.settings, self.credential)
        return GraphGateway(client, self.settings.graph_timeout_seconds, self.credential, self.settings.graph_scope)

    @cached_property
    def protected(self) -> ProtectedAccounts:
        """PROTECTED_USERS resolved to object ids, cached for the process (refreshed hourly)."""
        from shared.usecases.protection import ProtectedAccounts

        return ProtectedAccounts(self.settings.protected_users, self.graph.get_user)


_runtimes: dict[asyncio.AbstractEventLoop, Runtime] = {}


def runtime() -> Runtime:
    """The process's runtime for the running event loop (async clients are bound to a loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _runtimes:
        _runtimes.clear()  # a new loop (tests) makes the old clients unusable anyway
        _runtimes[loop] = Runtime(get_settings())
    return _runtimes[loop]
