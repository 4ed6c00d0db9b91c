"""Idempotency keys (scoped by the use case), with a time index so retention can expire them."""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.tables.keys import IDEMPOTENCY_LOG, IDEMPOTENCY_ROW, idempotency_partition, index_row_key, time_key
from shared.adapters.tables.table import Table, etag_of
from shared.domain.tasks import utcnow
from shared.usecases.ports import IdempotencyEntry


class IdempotencyTable:
    def __init__(self, table: Table) -> None:
        self._table = table

    async def get(self, key: str) -> IdempotencyEntry | None:
        table = await self._table.client()
        try:
            entity = await table.get_entity(idempotency_partition(key), IDEMPOTENCY_ROW)
        except ResourceNotFoundError:
            return None
        return IdempotencyEntry(
            body_hash=entity["BodyHash"],
            task_ids=tuple(json.loads(entity.get("TaskIds", "[]"))),
            created_at=entity["CreatedAt"],
            completed=bool(entity.get("Completed", False)),
            etag=etag_of(entity.metadata),
        )

    async def claim(self, key: str, body_hash: str, previous: IdempotencyEntry | None) -> IdempotencyEntry | None:
        """Reserve `key` for this request (replacing an expired or abandoned entry); None if taken."""
        table = await self._table.client()
        partition = idempotency_partition(key)
        claimed_at = utcnow()
        entity = {
            "PartitionKey": partition,
            "RowKey": IDEMPOTENCY_ROW,
            "BodyHash": body_hash,
            "CreatedAt": claimed_at,
            "Completed": False,
        }
        try:
            if previous is None:
                metadata = await table.create_entity(entity)
            else:
                metadata = await table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=previous.etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return None
        # Indexed by time so that retention finds it (a key is only useful for its TTL).
        await table.upsert_entity({"PartitionKey": IDEMPOTENCY_LOG, "RowKey": index_row_key(claimed_at, partition)})
        return IdempotencyEntry(body_hash, (), claimed_at, completed=False, etag=etag_of(metadata))

    async def complete(self, key: str, entry: IdempotencyEntry, task_ids: list[str]) -> None:
        table = await self._table.client()
        entity = {
            "PartitionKey": idempotency_partition(key),
            "RowKey": IDEMPOTENCY_ROW,
            "BodyHash": entry.body_hash,
            "CreatedAt": entry.created_at,
            "Completed": True,
            "TaskIds": json.dumps(task_ids),
        }
        await table.update_entity(entity, mode=UpdateMode.REPLACE, etag=entry.etag, match_condition=MatchConditions.IfNotModified)

    async def release(self, key: str, entry: IdempotencyEntry) -> None:
        table = await self._table.client()
        await table.delete_entity(
            idempotency_partition(key), IDEMPOTENCY_ROW, etag=entry.etag, match_condition=MatchConditions.IfNotModified
        )

    async def expired(self, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
        return await self._table.expired(IDEMPOTENCY_LOG, time_key(cutoff), limit)

    async def delete(self, log_row: dict[str, Any], cutoff: datetime) -> None:
        """The key its index row names, unless it was claimed again since `cutoff`; then the row."""
        table = await self._table.client()
        partition = log_row["RowKey"].split("-", 1)[1]
        with suppress(ResourceNotFoundError, ResourceModifiedError):  # gone, or claimed again just now
            entity = await table.get_entity(partition, IDEMPOTENCY_ROW)
            if entity["CreatedAt"] < cutoff:
                await table.delete_entity(
                    partition, IDEMPOTENCY_ROW, etag=etag_of(entity.metadata), match_condition=MatchConditions.IfNotModified
                )
        await self._table.delete_row(IDEMPOTENCY_LOG, log_row["RowKey"])
