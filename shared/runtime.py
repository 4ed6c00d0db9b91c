"""The composition root: builds the adapters once per process (inside the event loop that uses
them), owns their lifecycle (`aclose()`), the per-process caches and the logging policy. Use cases
receive this object as the ports they declare; nothing else builds a client."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from shared.adapters.callback_http import CallbackHttp
from shared.adapters.queues import StorageQueues
from shared.adapters.storage import queue_service, read_connection, table_service
from shared.adapters.tables.counters import CounterTable
from shared.adapters.tables.idempotency import IdempotencyTable
from shared.adapters.tables.indexes import TaskIndex
from shared.adapters.tables.jobs import JobTable
from shared.adapters.tables.pending import PendingSlots
from shared.adapters.tables.table import Table
from shared.adapters.tables.tasks import TaskTable
from shared.domain.pacing import WritePacer
from shared.settings import Settings, get_settings
from shared.usecases.bulk import CancelChecks
from shared.usecases.job_counts import JobCounts

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.adapters.graph import GraphGateway
    from shared.usecases.protection import ProtectedAccounts

# Loggers that write request URLs or token responses: Logic Apps callback URLs carry their `sig`
# secret in the query, status URLs the function key. The Functions Python worker sets the root
# logger to DEBUG and leaves filtering to host.json, so these are set here, for every path.
QUIET_LOGGERS = (
    "httpx",  # INFO "HTTP Request: POST <full URL>" for every request
    "httpcore",  # DEBUG connection and request traces
    "azure",  # the SDKs' per-request noise, azure-identity's token requests
    "azure.core.pipeline.policies.http_logging_policy",  # INFO request URL and headers
    "aiohttp",  # aiohttp.access, aiohttp.client, aiohttp.server, ... (azure-core's async transport)
    "urllib3",  # DEBUG '"POST /path?query HTTP/1.1" 200'
    "msal",  # DEBUG "IMDS emits unexpected payload: <response body>"
)


def apply_logging_policy() -> None:
    """Quiet every logger that can print a URL or a token to WARNING; called once, when the app
    is imported, before anything else runs (not as a side effect of building one client)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_telemetry() -> tuple[str, ...]:
    """Export traces, metrics and logs where the environment says (nothing by default); called
    once, when the app is imported, after the logging policy."""
    from shared.adapters.telemetry import configure_telemetry as configure

    return configure()


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def table(self) -> Table:
        return Table(table_service(read_connection()), self.settings.status_table)

    @cached_property
    def tasks(self) -> TaskTable:
        return TaskTable(self.table)

    @cached_property
    def index(self) -> TaskIndex:
        return TaskIndex(self.table)

    @cached_property
    def pending(self) -> PendingSlots:
        return PendingSlots(self.table)

    @cached_property
    def jobs(self) -> JobTable:
        return JobTable(self.table)

    @cached_property
    def counters(self) -> CounterTable:
        return CounterTable(self.table)

    @cached_property
    def idempotency(self) -> IdempotencyTable:
        return IdempotencyTable(self.table)

    @cached_property
    def job_counts(self) -> JobCounts:
        return JobCounts(self.counters)

    @cached_property
    def cancel_checks(self) -> CancelChecks:
        """Which jobs were cancelled, read at most every few seconds per process."""
        return CancelChecks(self.jobs)

    @cached_property
    def queue(self) -> StorageQueues:
        return StorageQueues(queue_service(read_connection()))

    @cached_property
    def pacer(self) -> WritePacer:
        return WritePacer(ceiling=self.settings.graph_writes_per_second)

    @cached_property
    def callbacks(self) -> CallbackHttp:
        return CallbackHttp()

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

    async def aclose(self) -> None:
        """Close every client this runtime built (those never built are left alone)."""
        built = self.__dict__
        if "table" in built:
            await self.table.close()
        if "queue" in built:
            await self.queue.close()
        if "callbacks" in built:
            await self.callbacks.aclose()
        if "credential" in built:
            await self.credential.close()


def warm_up() -> None:
    """Load what msgraph-sdk imports lazily on first use, once at worker start-up."""
    from shared.adapters.graph import warm_up as warm_up_graph

    warm_up_graph()


_runtimes: dict[asyncio.AbstractEventLoop, Runtime] = {}


def runtime() -> Runtime:
    """The process's runtime for the running event loop (async clients are bound to a loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _runtimes:
        _runtimes.clear()  # a new loop (tests) makes the old clients unusable anyway
        _runtimes[loop] = Runtime(get_settings())
    return _runtimes[loop]
