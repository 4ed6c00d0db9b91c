"""Task records and the requests that joined them (partition = task id)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.tables.keys import JOIN_END, JOIN_PREFIX, LOG_PARTITION, TASK_ROW, correlation_partition, index_row
from shared.adapters.tables.table import Table, etag_of
from shared.domain.errors import ConcurrentUpdateError, TaskExistsError
from shared.domain.identifiers import UserRef
from shared.domain.principal import Principal
from shared.domain.tasks import ErrorCategory, TaskError, TaskRecord, TaskStatus, utcnow

MAX_JOINS_COUNTED = 1000


class TaskTable:
    def __init__(self, table: Table) -> None:
        self._table = table

    async def create(self, record: TaskRecord, user: UserRef | None = None) -> TaskRecord:
        """Write a new task record and its remediation-log row (and correlation row), and its
        user's row unless that came with a pending-slot claim."""
        table = await self._table.client()
        try:
            metadata = await table.create_entity(task_to_entity(record))
        except ResourceExistsError as exc:
            raise TaskExistsError(record.id) from exc
        partitions = [LOG_PARTITION] + ([user.partition] if user else [])
        if record.correlation_id:
            partitions.append(correlation_partition(record.correlation_id))
        await asyncio.gather(*(table.upsert_entity(index_row(partition, record)) for partition in partitions))
        return replace(record, etag=etag_of(metadata))

    async def get(self, task_id: str) -> TaskRecord | None:
        table = await self._table.client()
        try:
            entity = await table.get_entity(task_id, TASK_ROW)
        except ResourceNotFoundError:
            return None
        return task_from_entity(dict(entity), etag=etag_of(entity.metadata))

    async def get_many(self, task_ids: list[str]) -> list[TaskRecord]:
        records = await asyncio.gather(*(self.get(task_id) for task_id in task_ids))
        return [record for record in records if record is not None]

    async def save(self, current: TaskRecord, updated: TaskRecord) -> TaskRecord:
        """Replace `current` with `updated` only if nobody changed it since it was read."""
        table = await self._table.client()
        try:
            metadata = await table.update_entity(
                task_to_entity(updated), mode=UpdateMode.REPLACE, etag=current.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrentUpdateError(current.id) from exc
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise ConcurrentUpdateError(current.id) from exc
            raise
        return replace(updated, etag=etag_of(metadata))

    async def create_bulk_task(self, record: TaskRecord, user: UserRef) -> tuple[TaskRecord, bool]:
        """A bulk task record and its user row (log rows come per page): the record as stored,
        and whether it is new. A record that existed (a redelivered page) gets its user row
        again, in case the last run stopped between the two writes."""
        table = await self._table.client()
        try:
            stored, created = replace(record, etag=etag_of(await table.create_entity(task_to_entity(record)))), True
        except ResourceExistsError:
            existing = await self.get(record.id)
            if existing is None:  # deleted by retention meanwhile: nothing to index
                return record, False
            stored, created = existing, False
        await table.upsert_entity(index_row(user.partition, stored))
        return stored, created

    async def add_join(self, task_id: str, joined: dict[str, Any]) -> str:
        table = await self._table.client()
        row_key = f"{JOIN_PREFIX}{int(utcnow().timestamp() * 1000):013d}-{uuid.uuid4()}"
        await table.create_entity({"PartitionKey": task_id, "RowKey": row_key, "Request": json.dumps(joined)})
        return row_key

    async def joins(self, task_id: str, limit: int) -> tuple[list[tuple[str, dict[str, Any]]], int]:
        """The first `limit` joined requests, oldest first, and how many there are (counted up to 1,000)."""
        table = await self._table.client()
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        found: list[tuple[str, dict[str, Any]]] = []
        count = 0
        async for entity in table.query_entities(query, parameters={"pk": task_id, "low": JOIN_PREFIX, "high": JOIN_END}):
            count += 1
            if len(found) < limit:
                found.append((entity["RowKey"], json.loads(entity["Request"])))
            if count == MAX_JOINS_COUNTED:
                break
        return found, count

    async def save_join(self, task_id: str, row_key: str, joined: dict[str, Any]) -> None:
        table = await self._table.client()
        await table.upsert_entity(
            {"PartitionKey": task_id, "RowKey": row_key, "Request": json.dumps(joined)}, mode=UpdateMode.REPLACE
        )


def task_to_entity(record: TaskRecord) -> dict[str, Any]:
    """Table storage keeps flat, typed columns; nested values are JSON text."""
    error = asdict(record.error) if record.error else None
    if error:
        error["category"] = record.error.category.value if record.error else None
    entity: dict[str, Any] = {
        "PartitionKey": record.id,
        "RowKey": TASK_ROW,
        "User": record.user,
        "Status": record.status.value,
        "CreatedAt": record.created_at,
        "UpdatedAt": record.updated_at,
        "Description": record.description,
        "Source": record.source,
        "RequestedBy": json.dumps(record.requested_by.as_api()) if record.requested_by else None,
        "CorrelationId": record.correlation_id,
        "AlertId": record.alert_id,
        "JobId": record.job_id,
        "CallbackUrl": record.callback_url,
        "Callback": json.dumps(record.callback) if record.callback else None,
        "ResolvedId": record.resolved_id,
        "ResolvedUpn": record.resolved_upn,
        "UserType": record.user_type,
        "CompletedAt": record.completed_at,
        "Attempts": record.attempts,
        "NextAttemptAt": record.next_attempt_at,
        "AttemptMessageId": record.attempt_message_id,
        "AttemptDeadline": record.attempt_deadline,
        "RetrySince": record.retry_since,
        "MessageToken": record.token,
        "Error": json.dumps(error) if error else None,
        "GraphRequestId": record.graph_request_id,
        "SessionsValidFrom": record.sessions_valid_from,
        "Verified": record.verified,
        "Warnings": json.dumps(list(record.warnings)) if record.warnings else None,
    }
    return {key: value for key, value in entity.items() if value is not None}


def task_from_entity(entity: dict[str, Any], etag: str | None = None) -> TaskRecord:
    error = json.loads(entity["Error"]) if entity.get("Error") else None
    return TaskRecord(
        id=entity["PartitionKey"],
        user=entity["User"],
        status=TaskStatus(entity["Status"]),
        created_at=_aware(entity["CreatedAt"]),
        updated_at=_aware(entity["UpdatedAt"]),
        description=entity.get("Description", ""),
        source=entity.get("Source", "api"),
        requested_by=Principal.from_api(json.loads(entity["RequestedBy"])) if entity.get("RequestedBy") else None,
        correlation_id=entity.get("CorrelationId"),
        alert_id=entity.get("AlertId"),
        job_id=entity.get("JobId"),
        callback_url=entity.get("CallbackUrl"),
        callback=json.loads(entity["Callback"]) if entity.get("Callback") else None,
        resolved_id=entity.get("ResolvedId"),
        resolved_upn=entity.get("ResolvedUpn"),
        user_type=entity.get("UserType"),
        completed_at=_aware(entity.get("CompletedAt")),
        attempts=int(entity.get("Attempts", 0)),
        next_attempt_at=_aware(entity.get("NextAttemptAt")),
        attempt_message_id=entity.get("AttemptMessageId"),
        attempt_deadline=_aware(entity.get("AttemptDeadline")),
        retry_since=_aware(entity.get("RetrySince")),
        token=entity.get("MessageToken"),
        error=TaskError(**{**error, "category": ErrorCategory(error["category"])}) if error else None,
        graph_request_id=entity.get("GraphRequestId"),
        sessions_valid_from=_aware(entity.get("SessionsValidFrom")),
        verified=entity.get("Verified"),
        warnings=tuple(json.loads(entity["Warnings"])) if entity.get("Warnings") else (),
        etag=etag,
    )


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
