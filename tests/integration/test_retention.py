"""Retention: records older than RETENTION_DAYS are deleted with their index rows; newer stay."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from azure.data.tables import TableClient

from shared.adapters.tables.keys import correlation_partition, time_key
from shared.domain.identifiers import parse_user
from shared.domain.tasks import TaskRecord, TaskStatus, utcnow
from shared.runtime import Runtime
from shared.settings import load_settings
from shared.usecases.retention import apply_retention
from tests.app_functions import registered_functions
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration


def test_old_records_are_deleted_and_recent_ones_kept(
    stack: LocalStack, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", stack.azurite.connection_string)
    user = parse_user(f"retention-{uuid.uuid4().hex[:8]}@contoso.com")
    now = utcnow()

    def record(age_days: int) -> TaskRecord:
        created = now - timedelta(days=age_days)
        return TaskRecord(
            id=str(uuid.uuid4()), user=user.value, status=TaskStatus.SUCCEEDED, created_at=created, updated_at=created
        )

    old, recent = record(400), record(300)

    async def scenario() -> int:
        rt = Runtime(replace(load_settings({}), retention_days=365))
        try:
            for task in (old, recent):
                await rt.tasks.create(task, user)
            return await apply_retention(rt, now)
        finally:
            await rt.aclose()

    deleted = asyncio.run(scenario())
    assert deleted >= 1
    assert api.get(f"/api/signouts/{old.id}").status_code == 404
    assert api.get(f"/api/signouts/{recent.id}").status_code == 200
    assert [t["id"] for t in api.get("/api/signouts", params={"user": user.value}).json()["tasks"]] == [recent.id]


def test_retention_runs_hourly_on_a_timer() -> None:
    trigger = registered_functions()["retention"].get_trigger()
    assert trigger.type == "timerTrigger"
    assert trigger.schedule == "0 17 * * * *"


def test_every_row_kind_of_an_old_task_job_and_key_is_deleted(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust issue #12: jobs, their page links and counters, joined requests, correlation and
    pending rows, idempotency keys: nothing a task or job created outlives RETENTION_DAYS."""
    monkeypatch.setenv("AzureWebJobsStorage", stack.azurite.connection_string)
    table = TableClient.from_connection_string(stack.azurite.connection_string, "signouttasks")
    user = parse_user(f"retention-all-{uuid.uuid4().hex[:8]}@contoso.com")
    now = utcnow()
    old = now - timedelta(days=400)
    task = TaskRecord(
        id=str(uuid.uuid4()),
        user=user.value,
        status=TaskStatus.SUCCEEDED,
        created_at=old,
        updated_at=old,
        correlation_id=f"CORR-{uuid.uuid4()}",
    )
    job_id, key = str(uuid.uuid4()), f"retention-{uuid.uuid4()}"

    async def scenario() -> None:
        rt = Runtime(replace(load_settings({}), retention_days=365))
        try:
            await rt.pending.claim(user, task, None)
            await rt.tasks.create(task)
            await rt.tasks.add_join(task.id, {"correlationId": "joined"})
            await (await rt.table.client()).upsert_entity({"PartitionKey": job_id, "RowKey": "job", "CreatedAt": old})
            await (await rt.table.client()).upsert_entity(
                {"PartitionKey": job_id, "RowKey": "page-000002", "Link": "https://graph.microsoft.com/v1.0/users"}
            )
            await (await rt.table.client()).upsert_entity(
                {"PartitionKey": f"jobcount-{job_id}", "RowKey": "count-00", "started": 1}
            )
            await (await rt.table.client()).upsert_entity(
                {"PartitionKey": "jobs", "RowKey": f"{time_key(old)}-{job_id}", "JobId": job_id}
            )
            entry = await rt.idempotency.claim(key, "hash", None)
            assert entry is not None
            await apply_retention(rt, now + timedelta(days=400))  # the key is old by then too
        finally:
            await rt.aclose()

    asyncio.run(scenario())
    partitions = [task.id, user.partition, "log", job_id, f"jobcount-{job_id}", correlation_partition(task.correlation_id or "")]
    left = [
        row
        for partition in partitions
        for row in table.query_entities("PartitionKey eq @pk", parameters={"pk": partition})
        if task.id in str(dict(row)) or partition != "log"
    ]
    assert left == []
    assert list(table.query_entities("PartitionKey eq 'jobs' and JobId eq @id", parameters={"id": job_id})) == []
    idem = "idem-" + hashlib.sha256(f"{key}".encode()).hexdigest()
    assert list(table.query_entities("PartitionKey eq @pk", parameters={"pk": idem})) == []
