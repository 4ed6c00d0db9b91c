"""Storage account access from the Functions connection `AzureWebJobsStorage`.

Either a connection string (Azurite locally) or, in Azure, identity-based settings
(`AzureWebJobsStorage__queueServiceUri`, `__tableServiceUri` or `__accountName`, with
`__clientId`), exactly as the Functions host reads them for the queue trigger.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueServiceClient

from shared.settings import STORAGE_CONNECTION, SettingsError

CONNECTION = STORAGE_CONNECTION
# Fail within seconds, not minutes, when storage is down: the caller gets a 503 and retries,
# and the queue worker's own message is simply redelivered.
# Typed as Any: the SDKs take these as **kwargs, which their signatures do not spell out.
_QUEUE_RETRY: dict[str, Any] = {"initial_backoff": 0.3, "increment_base": 2, "retry_total": 3, "random_jitter_range": 0.2}
_TABLE_RETRY: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.3, "retry_backoff_max": 3}
_TIMEOUTS: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 20}


@dataclass(frozen=True)
class StorageConnection:
    connection_string: str | None = None
    queue_uri: str | None = None
    table_uri: str | None = None
    client_id: str | None = None


def read_connection(env: dict[str, str] | None = None) -> StorageConnection:
    env = dict(os.environ if env is None else env)
    if env.get(CONNECTION, "").strip():
        return StorageConnection(connection_string=env[CONNECTION].strip())
    account = env.get(f"{CONNECTION}__accountName", "").strip()
    queue_uri = env.get(f"{CONNECTION}__queueServiceUri", "").strip() or (
        f"https://{account}.queue.core.windows.net" if account else ""
    )
    table_uri = env.get(f"{CONNECTION}__tableServiceUri", "").strip() or (
        f"https://{account}.table.core.windows.net" if account else ""
    )
    if not (queue_uri and table_uri):
        raise SettingsError(
            f"{CONNECTION} is not configured: set a connection string, or "
            f"{CONNECTION}__queueServiceUri and {CONNECTION}__tableServiceUri (or __accountName)"
        )
    client_id = env.get(f"{CONNECTION}__clientId", "").strip() or env.get("AZURE_CLIENT_ID", "").strip() or None
    return StorageConnection(queue_uri=queue_uri, table_uri=table_uri, client_id=client_id)


def _storage_credential(connection: StorageConnection) -> AsyncTokenCredential:
    from azure.identity.aio import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=connection.client_id)


def queue_service(connection: StorageConnection) -> QueueServiceClient:
    if connection.connection_string:
        return QueueServiceClient.from_connection_string(connection.connection_string, **_QUEUE_RETRY, **_TIMEOUTS)
    return QueueServiceClient(connection.queue_uri or "", credential=_storage_credential(connection), **_QUEUE_RETRY, **_TIMEOUTS)


def table_service(connection: StorageConnection) -> TableServiceClient:
    if connection.connection_string:
        return TableServiceClient.from_connection_string(connection.connection_string, **_TABLE_RETRY, **_TIMEOUTS)
    return TableServiceClient(connection.table_uri or "", credential=_storage_credential(connection), **_TABLE_RETRY, **_TIMEOUTS)
