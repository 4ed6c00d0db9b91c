"""Retention: status records are the audit trail, kept RETENTION_DAYS, then deleted in bounded
batches by a daily timer. Nothing else ever deletes them."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from shared.models import utcnow
from shared.runtime import Runtime

log = logging.getLogger("signout.retention")

BATCH = 100
MAX_PER_RUN = 20_000  # well inside the function timeout; the next run continues


async def apply_retention(rt: Runtime, now: datetime | None = None) -> int:
    cutoff = (now or utcnow()) - timedelta(days=rt.settings.retention_days)
    deleted = 0
    while deleted < MAX_PER_RUN:
        rows = await rt.store.expired(cutoff, BATCH)
        if not rows:
            break
        await asyncio.gather(*(rt.store.delete_task(row) for row in rows))
        deleted += len(rows)
    log.info("retention: deleted %d task(s) created before %s (RETENTION_DAYS=%d)", deleted, cutoff.isoformat(), rt.settings.retention_days)
    return deleted
