"""Bulk job counts against Azurite: group commits count every marker exactly once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.adapters.storage import StorageConnection, table_service
from shared.adapters.tables.counters import CounterTable
from shared.adapters.tables.table import Table
from shared.usecases.job_counts import JobCounts
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration


async def counted(stack: LocalStack, additions: list[list[tuple[str, str]]]) -> dict[str, int]:
    """Run each inner list as one burst of concurrent additions, bursts one after another."""
    table = Table(table_service(StorageConnection(connection_string=stack.azurite.connection_string)), "jobcountstest")
    job_id = str(uuid.uuid4())
    try:
        counters = CounterTable(table)
        counts = JobCounts(counters)
        for burst in additions:
            await asyncio.gather(*(counts.add(job_id, marker, name) for marker, name in burst))
        return await counters.totals(job_id)
    finally:
        await table.close()


def test_a_burst_is_counted_once_per_marker_even_with_copies(stack: LocalStack) -> None:
    burst = [(f"done-{i}", "succeeded" if i % 3 else "failed") for i in range(250)]  # more than one transaction
    burst += burst[:10]  # two copies of the same message at once
    assert asyncio.run(counted(stack, [burst])) == {"succeeded": 166, "failed": 84}


def test_redelivered_markers_among_new_ones_count_only_the_new(stack: LocalStack) -> None:
    first = [(f"start-{i}", "started") for i in range(20)]
    again = first[5:15] + [(f"start-{i}", "started") for i in range(20, 40)]
    assert asyncio.run(counted(stack, [first, again])) == {"started": 40}
