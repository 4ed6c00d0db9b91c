"""Retention: status records are the audit trail, kept RETENTION_DAYS, then deleted in bounded
batches by an hourly timer, with every row that names them: joined requests, index rows, pending
slots; bulk jobs with their page links and counters; idempotency keys once they are useless
(after IDEMPOTENCY_TTL). Nothing else ever deletes them. Each kind is found through an index
partition ordered by time, so a run never scans the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from shared.usecases.intake import IDEMPOTENCY_TTL
from shared.usecases.bulk import JOBS_PARTITION
from shared.domain.tasks import utcnow
from shared.runtime import Runtime
from shared.adapters.tables.store import IDEMPOTENCY_LOG, LOG_PARTITION

log = logging.getLogger("signout.retention")

BATCH = 100
# Per kind and run, well inside the function timeout; the next hourly run continues. 24 runs a
# day keep up with 480,000 tasks a day (a 100,000-user job is four rows' worth of work per user).
MAX_PER_RUN = 20_000


async def apply_retention(rt: Runtime, now: datetime | None = None) -> int:
    now = now or utcnow()
    cutoff = now - timedelta(days=rt.settings.retention_days)
    tasks = await _expire(rt, LOG_PARTITION, cutoff, rt.store.delete_task)
    jobs = await _expire(rt, JOBS_PARTITION, cutoff, lambda row: _delete_job(rt, row))
    idem_cutoff = now - 2 * IDEMPOTENCY_TTL  # a margin over the TTL: a replay is still answered
    keys = await _expire(rt, IDEMPOTENCY_LOG, idem_cutoff, lambda row: rt.store.delete_idempotency(row, idem_cutoff))
    log.info("retention: deleted %d task(s) and %d job(s) created before %s (RETENTION_DAYS=%d), %d idempotency key(s)",
             tasks, jobs, cutoff.isoformat(), rt.settings.retention_days, keys)  # fmt: skip
    return tasks + jobs + keys


async def _expire(rt: Runtime, partition: str, cutoff: datetime, delete: Callable[[dict[str, Any]], Awaitable[None]]) -> int:
    deleted = 0
    while deleted < MAX_PER_RUN:
        rows = await rt.store.expired_index(partition, cutoff, BATCH)
        if not rows:
            break
        await asyncio.gather(*(delete(row) for row in rows))
        deleted += len(rows)
    return deleted


async def _delete_job(rt: Runtime, index_row: dict[str, Any]) -> None:
    """A job's row and page links, then its counters, then its index row (last: a run that stops
    part-way finds it again)."""
    job_id = index_row["JobId"]
    await rt.store.delete_partition(job_id)
    await rt.store.delete_partition(f"jobcount-{job_id}")
    await rt.store.delete_row(JOBS_PARTITION, index_row["RowKey"])
