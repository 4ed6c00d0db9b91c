"""Retention: records older than RETENTION_DAYS are deleted with their index rows; newer stay."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from shared.identifiers import parse_user
from shared.models import TaskRecord, TaskStatus, utcnow
from shared.retention import apply_retention
from shared.runtime import Runtime
from shared.settings import load_settings
from tests.app_functions import registered_functions
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration


def test_old_records_are_deleted_and_recent_ones_kept(stack: LocalStack, api: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", stack.azurite.connection_string)
    user = parse_user(f"retention-{uuid.uuid4().hex[:8]}@contoso.com")
    now = utcnow()

    def record(age_days: int) -> TaskRecord:
        created = now - timedelta(days=age_days)
        return TaskRecord(id=str(uuid.uuid4()), user=user.value, status=TaskStatus.SUCCEEDED, created_at=created, updated_at=created)

    old, recent = record(400), record(300)

    async def scenario() -> int:
        rt = Runtime(replace(load_settings({}), retention_days=365))
        try:
            for task in (old, recent):
                await rt.store.create(task, user)
            return await apply_retention(rt, now)
        finally:
            await rt.store.close()

    deleted = asyncio.run(scenario())
    assert deleted >= 1
    assert api.get(f"/api/signouts/{old.id}").status_code == 404
    assert api.get(f"/api/signouts/{recent.id}").status_code == 200
    assert [t["id"] for t in api.get("/api/signouts", params={"user": user.value}).json()["tasks"]] == [recent.id]


def test_retention_runs_daily_on_a_timer() -> None:
    trigger = registered_functions()["retention"].get_trigger()
    assert trigger.type == "timerTrigger"
    assert trigger.schedule == "0 17 3 * * *"
