"""The one table every aggregate module shares: its client, created once per process."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables.aio import TableClient, TableServiceClient

BATCH = 100  # rows per Table transaction (the service's limit)


def etag_of(metadata: Any) -> str:
    return str(metadata["etag"])


class Table:
    def __init__(self, service: TableServiceClient, name: str) -> None:
        self._service = service
        self._name = name
        self._client: TableClient | None = None

    async def client(self) -> TableClient:
        if self._client is None:
            with suppress(ResourceExistsError):  # once per process; in Azure the template created it
                await self._service.create_table(self._name)
            self._client = self._service.get_table_client(self._name)
        return self._client

    async def delete_rows(self, partition: str, low: str | None = None, high: str | None = None) -> int:
        """The rows of one partition (within [low, high) when given), in transactions of 100."""
        table = await self.client()
        query = "PartitionKey eq @pk" + (" and RowKey ge @low and RowKey lt @high" if low is not None else "")
        parameters = {"pk": partition, "low": low, "high": high}
        keys = [
            (e["PartitionKey"], e["RowKey"])
            async for e in table.query_entities(query, parameters=parameters, select=["PartitionKey", "RowKey"])
        ]
        for start in range(0, len(keys), BATCH):
            await table.submit_transaction(
                [("delete", {"PartitionKey": pk, "RowKey": rk}) for pk, rk in keys[start : start + BATCH]]
            )
        return len(keys)

    async def delete_row(self, partition: str, row: str) -> None:
        table = await self.client()
        with suppress(ResourceNotFoundError):
            await table.delete_entity(partition, row)

    async def expired(self, partition: str, cutoff_key: str, limit: int) -> list[dict[str, Any]]:
        """Rows of a time-keyed index partition whose key sorts after `cutoff_key` (older), at most `limit`."""
        table = await self.client()
        rows: list[dict[str, Any]] = []
        query = "PartitionKey eq @pk and RowKey gt @cutoff"
        async for entity in table.query_entities(
            query, parameters={"pk": partition, "cutoff": cutoff_key}, results_per_page=limit
        ):
            rows.append(dict(entity))
            if len(rows) == limit:
                break
        return rows

    async def ping(self) -> None:
        table = await self.client()
        with suppress(ResourceNotFoundError):
            await table.get_entity("health", "probe")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        await self._service.close()
