"""The only module that talks to Table storage: task records, their indexes, idempotency keys.

Key design (one table):
- task record      PK=<task id>           RK="task"        point read by id, ETag-guarded updates
- remediation log  PK="log"               RK=<inv. time>-<id>   newest first, time-range by key
- per-user log     PK=user-<sha256(user)> RK=<inv. time>-<id>   a user's tasks, newest first
- pending pointer  PK=user-<sha256(user)> RK="pending"     the user's task still `queued`, if any
- idempotency key  PK=idem-<sha256(key)>  RK="request"
- idempotency log  PK="idemlog"           RK=<inv. time>-<sha256(key)>  for retention
- correlation log  PK=corr-<sha256(id)>   RK=<inv. time>-<id>   tasks by (joined) correlation id
- joined request   PK=<task id>           RK=join-<time>-<uuid>  a request coalesced into the task
- active task      PK="active"            RK=<task id>     not finished: due time for the sweeper
- bulk job         PK=<job id>            RK="job"; its page links RK=page-<n>; PK="jobs" index
Index rows are written once and never change; the task record is the only mutable truth.
Every filter is parameterised (no OData built from input).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.domain.identifiers import InvalidIdentifier, UserRef, parse_user
from shared.domain.tasks import TaskRecord, utcnow

LOG_PARTITION = "log"
ACTIVE_PARTITION = "active"
IDEMPOTENCY_LOG = "idemlog"
JOIN_PREFIX = "join-"
TASK_ROW = "task"
PENDING_ROW = "pending"
IDEMPOTENCY_ROW = "request"
_MAX_MS = 9_999_999_999_999  # 13 digits: inverted epoch milliseconds sort newest first


def time_key(moment: datetime) -> str:
    return f"{_MAX_MS - int(moment.timestamp() * 1000):013d}"


def index_row_key(created_at: datetime, task_id: str) -> str:
    return f"{time_key(created_at)}-{task_id}"


def correlation_partition(correlation_id: str) -> str:
    return "corr-" + hashlib.sha256(correlation_id.encode()).hexdigest()[:40]


class TaskExists(Exception):
    """A task with this id was already created (a replayed deterministic id)."""


class AlreadyCounted(Exception):
    """A marker row of the batch exists (or its new counter shard was created meanwhile): count
    the markers one by one and check for each marker row."""


class ConcurrentUpdate(Exception):
    """The record changed since it was read (ETag mismatch): reload and decide again."""


@dataclass(frozen=True)
class Pending:
    task_id: str
    etag: str
    claimed_at: datetime


@dataclass(frozen=True)
class IdempotencyEntry:
    body_hash: str
    task_ids: tuple[str, ...]
    created_at: datetime
    completed: bool
    etag: str


@dataclass(frozen=True)
class LogPage:
    task_ids: list[str]
    last_row_key: str | None  # where the next page starts; None when exhausted


def _etag(metadata: dict[str, Any]) -> str:
    return str(metadata["etag"])


class StatusStore:
    def __init__(self, service: TableServiceClient, table_name: str) -> None:
        self._service = service
        self._table_name = table_name
        self._table: TableClient | None = None

    async def _client(self) -> TableClient:
        if self._table is None:
            try:  # once per process; in Azure the template has already created it
                await self._service.create_table(self._table_name)
            except ResourceExistsError:
                pass
            self._table = self._service.get_table_client(self._table_name)
        return self._table

    # --- task records -------------------------------------------------------------------
    async def create(self, record: TaskRecord, user: UserRef | None = None) -> TaskRecord:
        """Write a new task record and its remediation-log row, and its user's row unless that
        came with a pending-slot claim."""
        table = await self._client()
        try:
            metadata = await table.create_entity(record.to_entity())
        except ResourceExistsError as exc:
            raise TaskExists(record.id) from exc
        partitions = [LOG_PARTITION] + ([user.partition] if user else [])
        if record.correlation_id:
            partitions.append(correlation_partition(record.correlation_id))
        await asyncio.gather(*(table.upsert_entity(_index_row(partition, record)) for partition in partitions))
        return _with_etag(record, metadata)

    async def get(self, task_id: str) -> TaskRecord | None:
        table = await self._client()
        try:
            entity = await table.get_entity(task_id, TASK_ROW)
        except ResourceNotFoundError:
            return None
        return TaskRecord.from_entity(dict(entity), etag=_etag(entity.metadata))

    async def get_many(self, task_ids: list[str]) -> list[TaskRecord]:
        records = await asyncio.gather(*(self.get(task_id) for task_id in task_ids))
        return [record for record in records if record is not None]

    async def save(self, current: TaskRecord, updated: TaskRecord) -> TaskRecord:
        """Replace `current` with `updated` only if nobody changed it since it was read."""
        table = await self._client()
        try:
            metadata = await table.update_entity(
                updated.to_entity(), mode=UpdateMode.REPLACE, etag=current.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrentUpdate(current.id) from exc
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise ConcurrentUpdate(current.id) from exc
            raise
        return _with_etag(updated, metadata)

    async def add_index_row(self, partition: str, record: TaskRecord) -> None:
        table = await self._client()
        await table.upsert_entity(_index_row(partition, record))

    # --- active (unfinished) tasks, for the sweeper -------------------------------------------
    async def mark_active(self, task_id: str, due: datetime, next_attempt_at: datetime | None = None) -> None:
        """The task must have moved on by `due`, or the sweeper re-drives it; `next_attempt_at`:
        it waits to be retried (health shows the earliest)."""
        table = await self._client()
        row = {"PartitionKey": ACTIVE_PARTITION, "RowKey": task_id, "Due": due, "NextAttemptAt": next_attempt_at}
        await table.upsert_entity({key: value for key, value in row.items() if value is not None}, mode=UpdateMode.REPLACE)

    async def clear_active(self, task_id: str) -> None:
        table = await self._client()
        with suppress(ResourceNotFoundError):
            await table.delete_entity(ACTIVE_PARTITION, task_id)

    async def overdue(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        """Active tasks whose due time has passed (one partition: as many rows as unfinished tasks)."""
        table = await self._client()
        query = "PartitionKey eq @pk and Due lt @now"
        rows: list[tuple[str, datetime]] = []
        async for entity in table.query_entities(query, parameters={"pk": ACTIVE_PARTITION, "now": now}, select=["RowKey", "Due"]):
            rows.append((entity["RowKey"], entity["Due"]))
            if len(rows) == limit:
                break
        return rows

    async def count_active(self, limit: int) -> tuple[int, int, datetime | None]:
        """Unfinished tasks (counted up to `limit`), how many of them wait to be retried, and the
        earliest of their next attempts."""
        table = await self._client()
        count, waiting, earliest = 0, 0, None
        async for entity in table.query_entities("PartitionKey eq @pk", parameters={"pk": ACTIVE_PARTITION}, select=["NextAttemptAt"]):
            count += 1
            if (next_at := entity.get("NextAttemptAt")) is not None:
                waiting += 1
                earliest = next_at if earliest is None or next_at < earliest else earliest
            if count == limit:
                break
        return count, waiting, earliest

    # --- requests that joined a queued task -----------------------------------------------------
    async def add_join(self, task_id: str, joined: dict[str, Any]) -> str:
        table = await self._client()
        row_key = f"{JOIN_PREFIX}{int(utcnow().timestamp() * 1000):013d}-{uuid.uuid4()}"
        await table.create_entity({"PartitionKey": task_id, "RowKey": row_key, "Request": json.dumps(joined)})
        return row_key

    async def joins(self, task_id: str, limit: int) -> tuple[list[tuple[str, dict[str, Any]]], int]:
        """The first `limit` joined requests, oldest first, and how many there are (counted up to 1,000)."""
        table = await self._client()
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        parameters = {"pk": task_id, "low": JOIN_PREFIX, "high": JOIN_PREFIX[:-1] + "."}
        found: list[tuple[str, dict[str, Any]]] = []
        count = 0
        async for entity in table.query_entities(query, parameters=parameters):
            count += 1
            if len(found) < limit:
                found.append((entity["RowKey"], json.loads(entity["Request"])))
            if count == 1000:
                break
        return found, count

    async def save_join(self, task_id: str, row_key: str, joined: dict[str, Any]) -> None:
        table = await self._client()
        await table.upsert_entity({"PartitionKey": task_id, "RowKey": row_key, "Request": json.dumps(joined)}, mode=UpdateMode.REPLACE)

    # --- the user's queued task -----------------------------------------------------------
    async def pending(self, user: UserRef) -> Pending | None:
        table = await self._client()
        try:
            entity = await table.get_entity(user.partition, PENDING_ROW)
        except ResourceNotFoundError:
            return None
        return Pending(entity["TaskId"], _etag(entity.metadata), entity["ClaimedAt"])

    async def claim_pending(self, user: UserRef, record: TaskRecord, previous: Pending | None) -> bool:
        """Point the user's pending slot at `record`, and add it to the user's log, atomically
        (one partition, one transaction); False if another request got there first."""
        table = await self._client()
        pointer = {"PartitionKey": user.partition, "RowKey": PENDING_ROW, "TaskId": record.id, "ClaimedAt": utcnow()}
        guarded = {"mode": UpdateMode.REPLACE, "etag": previous.etag, "match_condition": MatchConditions.IfNotModified} if previous else {}
        claim = ("create", pointer) if previous is None else ("update", pointer, guarded)
        try:
            await table.submit_transaction([claim, ("upsert", _index_row(user.partition, record))])
        except TableTransactionError as exc:
            if exc.status_code in (404, 409, 412):
                return False
            raise
        return True

    async def release_pending(self, user: UserRef, task_id: str) -> None:
        """Empty the user's pending slot if it still names `task_id` (its revocation starts now)."""
        table = await self._client()
        try:
            entity = await table.get_entity(user.partition, PENDING_ROW)
            if entity["TaskId"] == task_id:
                await table.delete_entity(user.partition, PENDING_ROW, etag=_etag(entity.metadata), match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            pass  # gone already, or just claimed by a newer request: leave it to that one

    # --- remediation log --------------------------------------------------------------------
    async def log_page(
        self, partition: str | None, newest: datetime | None, oldest: datetime | None, after: str | None, limit: int
    ) -> LogPage:
        """Task ids newest first, within [oldest, newest], starting after row key `after`, from the
        remediation log or from one index partition (a user's, a correlation id's)."""
        table = await self._client()
        low = time_key(newest) if newest else "0"
        high = time_key(oldest) + "." if oldest else ":"  # row keys: 13 digits, '-', id; '.' sorts after '-'
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        parameters: dict[str, Any] = {"pk": partition or LOG_PARTITION, "low": low, "high": high}
        if after:
            query += " and RowKey gt @after"
            parameters["after"] = after
        ids: list[str] = []
        last: str | None = None
        async for entity in table.query_entities(query, parameters=parameters, results_per_page=limit, select=["RowKey", "TaskId"]):
            ids.append(entity["TaskId"])
            last = entity["RowKey"]
            if len(ids) == limit:
                return LogPage(ids, last)
        return LogPage(ids, None)

    # --- bulk jobs ---------------------------------------------------------------------------
    async def create_entity(self, entity: dict[str, Any]) -> str:
        table = await self._client()
        return _etag(await table.create_entity(entity))

    async def get_row(self, partition: str, row: str) -> tuple[dict[str, Any], str] | None:
        table = await self._client()
        try:
            entity = await table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None
        return dict(entity), _etag(entity.metadata)

    async def upsert_row(self, entity: dict[str, Any]) -> None:
        table = await self._client()
        await table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    async def replace_row(self, entity: dict[str, Any], etag: str) -> str:
        """ETag-guarded replace; ConcurrentUpdate when someone changed the row meanwhile."""
        table = await self._client()
        try:
            metadata = await table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrentUpdate(entity["RowKey"]) from exc
        return _etag(metadata)

    async def create_bulk_task(self, record: TaskRecord, user: UserRef) -> tuple[TaskRecord, bool]:
        """A bulk task record and its user row (log rows come per page): the record as stored,
        and whether it is new. A record that existed (a redelivered page) gets its user row
        again, in case the last run stopped between the two writes."""
        table = await self._client()
        try:
            stored, created = _with_etag(record, await table.create_entity(record.to_entity())), True
        except ResourceExistsError:
            existing = await self.get(record.id)
            if existing is None:  # deleted by retention meanwhile: nothing to index
                return record, False
            stored, created = existing, False
        await table.upsert_entity(_index_row(user.partition, stored))
        return stored, created

    async def add_log_rows(self, records: list[TaskRecord]) -> None:
        """Remediation-log rows in transactions of 100 (one partition): a page costs 10 calls."""
        table = await self._client()
        for start in range(0, len(records), 100):
            await table.submit_transaction([("upsert", _index_row(LOG_PARTITION, record)) for record in records[start : start + 100]])

    async def add_counts(self, partition: str, markers: dict[str, str], shards: int) -> None:
        """Add 1 to each marker's field in a random counter shard, and create the marker rows, in
        one transaction (one partition, at most 99 markers): a marker exists only if its count
        does. AlreadyCounted if one of the markers exists (nothing is counted then)."""
        table = await self._client()
        for _ in range(20):  # another process updated the same shard meanwhile: try again
            shard = f"count-{random.randrange(shards):02d}"
            current = await self.get_row(partition, shard)
            counts = current[0] if current else {"PartitionKey": partition, "RowKey": shard}
            for field_name in markers.values():
                counts[field_name] = int(counts.get(field_name, 0)) + 1
            if current:
                update: tuple[Any, ...] = ("update", counts, {"mode": UpdateMode.REPLACE, "etag": current[1], "match_condition": MatchConditions.IfNotModified})
            else:
                update = ("create", counts)
            rows = [("create", {"PartitionKey": partition, "RowKey": marker}) for marker in markers]
            try:
                await table.submit_transaction([*rows, update])
                return
            except TableTransactionError as exc:
                if exc.status_code == 409:  # a marker, or a shard another process created just now
                    raise AlreadyCounted(partition) from exc
        raise ConcurrentUpdate(partition)

    async def sum_counts(self, partition: str) -> dict[str, int]:
        table = await self._client()
        totals: dict[str, int] = {}
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        async for entity in table.query_entities(query, parameters={"pk": partition, "low": "count-", "high": "count."}):
            for name, value in entity.items():
                if name not in ("PartitionKey", "RowKey") and isinstance(value, int):
                    totals[name] = totals.get(name, 0) + value
        return totals

    # --- retention -------------------------------------------------------------------------
    async def delete_task(self, log_row: dict[str, Any]) -> None:
        """Delete a task record and every row that names it (joined requests, its correlation
        row, its user's row and pending slot); the log row goes last, so an interrupted deletion
        is found and finished by the next run."""
        table = await self._client()
        task_id = log_row["TaskId"]
        record = await self.get(task_id)
        await self._delete_rows(task_id, JOIN_PREFIX, JOIN_PREFIX[:-1] + ".")
        with suppress(ResourceNotFoundError):
            if record and record.correlation_id:
                await table.delete_entity(correlation_partition(record.correlation_id), log_row["RowKey"])
        with suppress(InvalidIdentifier):
            user = parse_user(log_row["User"])
            await self.release_pending(user, task_id)
            with suppress(ResourceNotFoundError):
                await table.delete_entity(user.partition, log_row["RowKey"])
        with suppress(ResourceNotFoundError):
            await table.delete_entity(task_id, TASK_ROW)
        with suppress(ResourceNotFoundError):
            await table.delete_entity(ACTIVE_PARTITION, task_id)
        await table.delete_entity(LOG_PARTITION, log_row["RowKey"])

    async def expired_index(self, partition: str, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
        """Rows of a time-keyed index partition older than `cutoff`, at most `limit`."""
        table = await self._client()
        rows: list[dict[str, Any]] = []
        query = "PartitionKey eq @pk and RowKey gt @cutoff"
        async for entity in table.query_entities(query, parameters={"pk": partition, "cutoff": time_key(cutoff)}, results_per_page=limit):
            rows.append(dict(entity))
            if len(rows) == limit:
                break
        return rows

    async def delete_partition(self, partition: str) -> int:
        """Every row of one partition (a job's, its counters'), in transactions of 100."""
        return await self._delete_rows(partition)

    async def _delete_rows(self, partition: str, low: str | None = None, high: str | None = None) -> int:
        table = await self._client()
        query = "PartitionKey eq @pk" + (" and RowKey ge @low and RowKey lt @high" if low is not None else "")
        keys = [(e["PartitionKey"], e["RowKey"]) async for e in table.query_entities(
            query, parameters={"pk": partition, "low": low, "high": high}, select=["PartitionKey", "RowKey"])]  # fmt: skip
        for start in range(0, len(keys), 100):
            batch = [("delete", {"PartitionKey": pk, "RowKey": rk}) for pk, rk in keys[start : start + 100]]
            await table.submit_transaction(batch)
        return len(keys)

    async def delete_row(self, partition: str, row: str) -> None:
        table = await self._client()
        with suppress(ResourceNotFoundError):
            await table.delete_entity(partition, row)

    # --- idempotency keys --------------------------------------------------------------------
    @staticmethod
    def _idempotency_partition(key: str) -> str:
        return "idem-" + hashlib.sha256(key.encode()).hexdigest()

    async def idempotency(self, key: str) -> IdempotencyEntry | None:
        table = await self._client()
        try:
            entity = await table.get_entity(self._idempotency_partition(key), IDEMPOTENCY_ROW)
        except ResourceNotFoundError:
            return None
        return IdempotencyEntry(
            body_hash=entity["BodyHash"],
            task_ids=tuple(json.loads(entity.get("TaskIds", "[]"))),
            created_at=entity["CreatedAt"],
            completed=bool(entity.get("Completed", False)),
            etag=_etag(entity.metadata),
        )

    async def claim_idempotency(self, key: str, body_hash: str, previous: IdempotencyEntry | None) -> IdempotencyEntry | None:
        """Reserve `key` for this request (replacing an expired or abandoned entry); None if taken."""
        table = await self._client()
        entity = {
            "PartitionKey": self._idempotency_partition(key),
            "RowKey": IDEMPOTENCY_ROW,
            "BodyHash": body_hash,
            "CreatedAt": utcnow(),
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
        # Indexed by time so that retention finds it (a key is only useful for IDEMPOTENCY_TTL).
        await table.upsert_entity({"PartitionKey": IDEMPOTENCY_LOG, "RowKey": f"{time_key(entity['CreatedAt'])}-{entity['PartitionKey']}"})
        return IdempotencyEntry(body_hash, (), entity["CreatedAt"], False, _etag(metadata))

    async def complete_idempotency(self, key: str, entry: IdempotencyEntry, task_ids: list[str]) -> None:
        table = await self._client()
        entity = {
            "PartitionKey": self._idempotency_partition(key),
            "RowKey": IDEMPOTENCY_ROW,
            "BodyHash": entry.body_hash,
            "CreatedAt": entry.created_at,
            "Completed": True,
            "TaskIds": json.dumps(task_ids),
        }
        await table.update_entity(entity, mode=UpdateMode.REPLACE, etag=entry.etag, match_condition=MatchConditions.IfNotModified)

    async def delete_idempotency(self, log_row: dict[str, Any], cutoff: datetime) -> None:
        """The key its index row names, unless it was claimed again since `cutoff`; then the row."""
        table = await self._client()
        partition = log_row["RowKey"].split("-", 1)[1]
        with suppress(ResourceNotFoundError, ResourceModifiedError):  # gone, or claimed again just now
            entity = await table.get_entity(partition, IDEMPOTENCY_ROW)
            if entity["CreatedAt"] < cutoff:
                await table.delete_entity(partition, IDEMPOTENCY_ROW, etag=_etag(entity.metadata), match_condition=MatchConditions.IfNotModified)
        await table.delete_entity(IDEMPOTENCY_LOG, log_row["RowKey"])

    async def release_idempotency(self, key: str, entry: IdempotencyEntry) -> None:
        table = await self._client()
        await table.delete_entity(
            self._idempotency_partition(key), IDEMPOTENCY_ROW, etag=entry.etag, match_condition=MatchConditions.IfNotModified
        )

    async def ping(self) -> None:
        table = await self._client()
        try:
            await table.get_entity("health", "probe")
        except ResourceNotFoundError:
            pass

    async def close(self) -> None:
        if self._table is not None:
            await self._table.close()
        await self._service.close()


def _index_row(partition: str, record: TaskRecord) -> dict[str, Any]:
    return {"PartitionKey": partition, "RowKey": index_row_key(record.created_at, record.id), "TaskId": record.id, "User": record.user}


def _with_etag(record: TaskRecord, metadata: dict[str, Any]) -> TaskRecord:
    from dataclasses import replace

    return replace(record, etag=_etag(metadata))
