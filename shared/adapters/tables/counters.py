"""Exact job counters: marker rows and sharded counts, committed together in one transaction."""

from __future__ import annotations

import random
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from shared.adapters.tables.keys import counter_partition
from shared.adapters.tables.table import Table, etag_of
from shared.domain.errors import AlreadyCountedError, ConcurrentUpdateError

_SHARD_ATTEMPTS = 20
_CONFLICT = 409


class CounterTable:
    def __init__(self, table: Table) -> None:
        self._table = table

    async def add(self, job_id: str, markers: dict[str, str], shards: int) -> None:
        """Add 1 to each marker's field in a random counter shard, and create the marker rows, in
        one transaction (one partition, at most 99 markers): a marker exists only if its count
        does. AlreadyCountedError if one of the markers exists (nothing is counted then)."""
        table = await self._table.client()
        partition = counter_partition(job_id)
        for _ in range(_SHARD_ATTEMPTS):  # another process updated the same shard meanwhile: try again
            shard = f"count-{random.randrange(shards):02d}"  # noqa: S311 - spreading load, not a secret
            try:
                entity = await table.get_entity(partition, shard)
                counts: dict[str, Any] = dict(entity)
                update: tuple[Any, ...] = (
                    "update",
                    counts,
                    {
                        "mode": UpdateMode.REPLACE,
                        "etag": etag_of(entity.metadata),
                        "match_condition": MatchConditions.IfNotModified,
                    },
                )
            except ResourceNotFoundError:
                counts = {"PartitionKey": partition, "RowKey": shard}
                update = ("create", counts)
            for field_name in markers.values():
                counts[field_name] = int(counts.get(field_name, 0)) + 1
            rows = [("create", {"PartitionKey": partition, "RowKey": marker}) for marker in markers]
            try:
                await table.submit_transaction([*rows, update])
            except TableTransactionError as exc:
                if exc.status_code == _CONFLICT:  # a marker, or a shard another process created just now
                    raise AlreadyCountedError(partition) from exc
            else:
                return
        raise ConcurrentUpdateError(partition)

    async def totals(self, job_id: str) -> dict[str, int]:
        table = await self._table.client()
        totals: dict[str, int] = {}
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        async for entity in table.query_entities(
            query, parameters={"pk": counter_partition(job_id), "low": "count-", "high": "count."}
        ):
            for name, value in entity.items():
                if name not in ("PartitionKey", "RowKey") and isinstance(value, int):
                    totals[name] = totals.get(name, 0) + value
        return totals

    async def has_marker(self, job_id: str, marker: str) -> bool:
        table = await self._table.client()
        try:
            await table.get_entity(counter_partition(job_id), marker)
        except ResourceNotFoundError:
            return False
        return True
