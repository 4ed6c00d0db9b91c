"""Bulk job counts, committed in groups.

Each count is a marker row (the task's start or outcome, so a redelivered message never counts
twice) plus 1 in a counter shard, in one Table transaction. Counting each task on its own costs
two storage calls twice per task, a large share of a bulk task's cost; here a process commits
everything that arrived while its previous commit was in flight in one transaction per job
(group commit). Nobody waits for a timer: a lone count commits at once. A caller returns only
once its count is committed, so a finished invocation has always been counted.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

from shared.domain.errors import AlreadyCountedError, ConcurrentUpdateError
from shared.usecases.ports import CounterStore

SHARDS = 16
MAX_MARKERS_PER_COMMIT = 99  # a transaction holds 100 operations: the markers and one shard


@dataclass
class _Count:
    job_id: str
    marker: str
    field_name: str
    done: asyncio.Future[None]


@dataclass
class JobCounts:
    counters: CounterStore
    _waiting: dict[tuple[str, str], _Count] = field(default_factory=dict)  # (job_id, marker)
    _committing: asyncio.Task[None] | None = None

    async def add(self, job_id: str, marker: str, field_name: str) -> None:
        """Count `field_name` once for `marker`; returns when committed. Two copies of one message
        counting at once share one count."""
        count = self._waiting.get((job_id, marker))
        if count is None:
            count = _Count(job_id, marker, field_name, asyncio.get_running_loop().create_future())
            self._waiting[(job_id, marker)] = count
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_waiting())
        await asyncio.shield(count.done)  # a cancelled caller does not cancel the others' commit

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = list(self._waiting.values()), {}
                await asyncio.gather(*(self._commit(group) for group in _groups(batch)))
        finally:
            self._committing = None

    async def _commit(self, group: list[_Count]) -> None:
        markers = {count.marker: count.field_name for count in group}
        try:
            await self.counters.add(group[0].job_id, markers, SHARDS)
        except AlreadyCountedError:  # a redelivery among them: count each on its own
            await asyncio.gather(*(self._commit_one(count) for count in group))
            return
        except Exception as exc:  # noqa: BLE001 - storage failed: each invocation fails and is retried by the host
            _settle(group, exc)
            return
        _settle(group, None)

    async def _commit_one(self, count: _Count) -> None:
        try:
            for _ in range(20):
                try:
                    await self.counters.add(count.job_id, {count.marker: count.field_name}, SHARDS)
                    break
                except AlreadyCountedError:
                    if await self.counters.has_marker(count.job_id, count.marker):
                        break  # counted before
            else:
                raise ConcurrentUpdateError(count.job_id)  # noqa: TRY301 - settled with the other failures below
        except Exception as exc:  # noqa: BLE001 - every failure goes to the waiting invocations
            _settle([count], exc)
            return
        _settle([count], None)


def _groups(batch: list[_Count]) -> list[list[_Count]]:
    """Per job, at most MAX_MARKERS_PER_COMMIT counts per group."""
    by_job: dict[str, list[_Count]] = defaultdict(list)
    for count in batch:
        by_job[count.job_id].append(count)
    return [
        counts[start : start + MAX_MARKERS_PER_COMMIT]
        for counts in by_job.values()
        for start in range(0, len(counts), MAX_MARKERS_PER_COMMIT)
    ]


def _settle(group: list[_Count], error: Exception | None) -> None:
    for count in group:
        if count.done.done():
            continue
        if error is None:
            count.done.set_result(None)
        else:
            count.done.set_exception(error)
