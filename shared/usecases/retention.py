"""Retention: status records are the audit trail, kept RETENTION_DAYS, then deleted in bounded
batches by an hourly timer, with every row that names them: joined requests, index rows, pending
slots; bulk jobs with their page links and counters; idempotency keys once they are useless
(after IDEMPOTENCY_TTL). Nothing else ever deletes them. Each kind is found through an index
ordered by time, so a run never scans the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.domain.tasks import utcnow
from shared.settings import Settings
from shared.usecases.intake import IDEMPOTENCY_TTL
from shared.usecases.ports import IdempotencyStore, JobStore, TaskIndex

log = logging.getLogger("signout.retention")

BATCH = 100
# Per kind and run, well inside the function timeout; the next hourly run continues. 24 runs a
# day keep up with 480,000 tasks a day (a 100,000-user job is a fifth of that).
MAX_PER_RUN = 20_000

Expired = Callable[[datetime, int], Awaitable[list[dict[str, Any]]]]
Delete = Callable[[dict[str, Any]], Awaitable[None]]


class RetentionDeps(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def index(self) -> TaskIndex: ...
    @property
    def jobs(self) -> JobStore: ...
    @property
    def idempotency(self) -> IdempotencyStore: ...


async def apply_retention(rt: RetentionDeps, now: datetime | None = None) -> int:
    now = now or utcnow()
    cutoff = now - timedelta(days=rt.settings.retention_days)
    tasks = await _expire(cutoff, rt.index.expired_tasks, rt.index.delete_task)
    jobs = await _expire(cutoff, rt.jobs.expired, rt.jobs.delete)
    keys_cutoff = now - 2 * IDEMPOTENCY_TTL  # a margin over the TTL: a replay is still answered

    async def delete_key(row: dict[str, Any]) -> None:
        await rt.idempotency.delete(row, keys_cutoff)

    keys = await _expire(keys_cutoff, rt.idempotency.expired, delete_key)
    log.info(
        "retention: deleted %d task(s) and %d job(s) created before %s (RETENTION_DAYS=%d), %d idempotency key(s)",
        tasks,
        jobs,
        cutoff.isoformat(),
        rt.settings.retention_days,
        keys,
    )
    return tasks + jobs + keys


async def _expire(cutoff: datetime, expired: Expired, delete: Delete) -> int:
    deleted = 0
    while deleted < MAX_PER_RUN:
        rows = await expired(cutoff, BATCH)
        if not rows:
            break
        await asyncio.gather(*(delete(row) for row in rows))
        deleted += len(rows)
    return deleted
