"""Index rows of tasks: the remediation log, per-user and per-correlation-id logs, and the active
set the sweeper reads. Retention deletes a task with every row that names it."""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.tables.keys import (
    ACTIVE_PARTITION,
    JOIN_END,
    JOIN_PREFIX,
    LOG_PARTITION,
    TASK_ROW,
    correlation_partition,
    index_row,
    time_key,
)
from shared.adapters.tables.pending import PendingSlots
from shared.adapters.tables.table import BATCH, Table
from shared.adapters.tables.tasks import TaskTable
from shared.domain.identifiers import InvalidIdentifierError, UserRef, parse_user
from shared.domain.tasks import TaskRecord
from shared.usecases.ports import LogPage


class TaskIndex:
    def __init__(self, table: Table) -> None:
        self._table = table

    async def add_correlation(self, correlation_id: str, record: TaskRecord) -> None:
        """Find `record` by this correlation id too (a request that joined it)."""
        table = await self._table.client()
        await table.upsert_entity(index_row(correlation_partition(correlation_id), record))

    async def add_log_rows(self, records: list[TaskRecord]) -> None:
        """Remediation-log rows in transactions of 100 (one partition): a page costs 10 calls."""
        table = await self._table.client()
        for start in range(0, len(records), BATCH):
            await table.submit_transaction(
                [("upsert", index_row(LOG_PARTITION, record)) for record in records[start : start + BATCH]]
            )

    async def log_page(
        self,
        user: UserRef | None,
        correlation_id: str | None,
        newest: datetime | None,
        oldest: datetime | None,
        after: str | None,
        limit: int,
    ) -> LogPage:
        """Task ids newest first, within [oldest, newest], starting after row key `after`, from the
        remediation log, a user's log or a correlation id's."""
        table = await self._table.client()
        partition = user.partition if user else correlation_partition(correlation_id) if correlation_id else LOG_PARTITION
        low = time_key(newest) if newest else "0"
        high = time_key(oldest) + "." if oldest else ":"  # row keys: 13 digits, '-', id; '.' sorts after '-'
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        parameters: dict[str, Any] = {"pk": partition, "low": low, "high": high}
        if after:
            query += " and RowKey gt @after"
            parameters["after"] = after
        ids: list[str] = []
        last: str | None = None
        async for entity in table.query_entities(
            query, parameters=parameters, results_per_page=limit, select=["RowKey", "TaskId"]
        ):
            ids.append(entity["TaskId"])
            last = entity["RowKey"]
            if len(ids) == limit:
                return LogPage(ids, last)
        return LogPage(ids, None)

    # --- the active set (unfinished tasks), for the sweeper -------------------------------------
    async def mark_active(self, task_id: str, due: datetime, next_attempt_at: datetime | None = None) -> None:
        """The task must have moved on by `due`, or the sweeper re-drives it; `next_attempt_at`:
        it waits to be retried (health shows the earliest)."""
        table = await self._table.client()
        row = {"PartitionKey": ACTIVE_PARTITION, "RowKey": task_id, "Due": due, "NextAttemptAt": next_attempt_at}
        await table.upsert_entity({key: value for key, value in row.items() if value is not None}, mode=UpdateMode.REPLACE)

    async def clear_active(self, task_id: str) -> None:
        await self._table.delete_row(ACTIVE_PARTITION, task_id)

    async def overdue(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Active tasks whose due time has passed (one partition: as many rows as unfinished tasks)."""
        table = await self._table.client()
        rows: list[tuple[str, datetime]] = []
        query = "PartitionKey eq @pk and Due lt @now"
        async for entity in table.query_entities(
            query, parameters={"pk": ACTIVE_PARTITION, "now": now}, select=["RowKey", "Due"]
        ):
            rows.append((entity["RowKey"], entity["Due"]))
            if len(rows) == limit:
                break
        return rows

    async def count_active(self, limit: int) -> tuple[int, int, datetime | None]:
        """Unfinished tasks (counted up to `limit`), how many of them wait to be retried, and the
        earliest of their next attempts."""
        table = await self._table.client()
        count, waiting, earliest = 0, 0, None
        async for entity in table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": ACTIVE_PARTITION}, select=["NextAttemptAt"]
        ):
            count += 1
            if (next_at := entity.get("NextAttemptAt")) is not None:
                waiting += 1
                earliest = next_at if earliest is None or next_at < earliest else earliest
            if count == limit:
                break
        return count, waiting, earliest

    # --- retention -------------------------------------------------------------------------------
    async def expired_tasks(self, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
        return await self._table.expired(LOG_PARTITION, time_key(cutoff), limit)

    async def delete_task(self, log_row: dict[str, Any]) -> None:
        """Delete a task record and every row that names it (joined requests, its correlation
        row, its user's row and pending slot, its active row); the log row goes last, so an
        interrupted deletion is found and finished by the next run."""
        task_id, row_key = log_row["TaskId"], log_row["RowKey"]
        record = await TaskTable(self._table).get(task_id)
        await self._table.delete_rows(task_id, JOIN_PREFIX, JOIN_END)
        if record and record.correlation_id:
            await self._table.delete_row(correlation_partition(record.correlation_id), row_key)
        with suppress(InvalidIdentifierError):
            user = parse_user(log_row["User"])
            await PendingSlots(self._table).release(user, task_id)
            await self._table.delete_row(user.partition, row_key)
        await self._table.delete_row(task_id, TASK_ROW)
        await self._table.delete_row(ACTIVE_PARTITION, task_id)
        table = await self._table.client()
        with suppress(ResourceNotFoundError):
            await table.delete_entity(LOG_PARTITION, row_key)
