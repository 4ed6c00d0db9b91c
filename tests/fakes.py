"""In-memory fakes of the ports (`shared/usecases/ports.py`) for the fast test tier.

Each fake keeps what its Azure adapter (`shared/adapters/`) documents: every write gets a new ETag
(a counter) and a write with a stale one raises ConcurrentUpdateError; a duplicate task raises
TaskExistsError; pending-slot and idempotency claims fail (False / None) when the row changed
since it was read; a counter marker counts once (AlreadyCountedError, nothing counted); queue
messages stay hidden for their delay. Where an adapter lets the SDK's error through (a message
gone, a stale idempotency entry) the fake raises the same azure-core exception. Every call yields
to the event loop once, as a round trip would, so concurrent callers interleave as they do for real.

Switches, on every fake: `fail_next(method, error, times, after=...)` makes the next calls raise
(before their effect, or after it: written, but the answer was lost); `before_next(method,
action)` runs `action` just before the next call takes effect (a concurrent writer); `calls`
counts the calls per method. `FakeRuntime` wires them with the real JobCounts, CancelChecks,
ProtectedAccounts and WritePacer on a `FakeClock` that tests advance instead of sleeping.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from shared.adapters.queues import MAX_VISIBILITY_SECONDS
from shared.adapters.tables.keys import (
    IDEMPOTENCY_LOG,
    JOBS_PARTITION,
    JOIN_PREFIX,
    LOG_PARTITION,
    correlation_partition,
    idempotency_partition,
    index_row,
    index_row_key,
    time_key,
)
from shared.adapters.tables.tasks import MAX_JOINS_COUNTED
from shared.domain.directory import GraphError, GraphResult, GraphUser, PageUser, UserPage
from shared.domain.errors import AlreadyCountedError, ConcurrentUpdateError, TaskExistsError
from shared.domain.identifiers import InvalidIdentifierError, UserRef, parse_user
from shared.domain.jobs import Job
from shared.domain.messages import Message, decode_message
from shared.domain.pacing import WritePacer
from shared.domain.page_links import is_own_page_link
from shared.domain.tasks import TaskRecord, utcnow
from shared.settings import Settings
from shared.usecases.bulk import CancelChecks
from shared.usecases.job_counts import MAX_MARKERS_PER_COMMIT, JobCounts
from shared.usecases.ports import IdempotencyEntry, JobIndexPage, LogPage, Pending, Receipt
from shared.usecases.process_task import Lane, bulk_lane, page_lane, process_message, single_lane
from shared.usecases.protection import ProtectedAccounts

if TYPE_CHECKING:
    from shared.usecases.approvals import ApprovalDeps
    from shared.usecases.intake import IntakeDeps
    from shared.usecases.process_task import WorkerDeps
    from shared.usecases.queries import QueryDeps
    from shared.usecases.retention import RetentionDeps

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
T = TypeVar("T")
Action = Callable[[], Any]  # sync, or returning an awaitable

_etags = itertools.count(1)


def new_etag() -> str:
    return f'W/"{next(_etags)}"'


# --- switches ------------------------------------------------------------------------------------
@dataclass
class _Step:
    after: bool
    error: BaseException | None = None
    action: Action | None = None


class Scripted:
    """Counts calls per method, and runs the failures and actions a test scripted for them."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._steps: dict[str, list[_Step]] = defaultdict(list)

    def fail_next(self, method: str, error: BaseException, times: int = 1, *, after: bool = False) -> None:
        """The next `times` calls of `method` raise `error`: before their effect, or after it
        (`after=True`: the write happened, its answer was lost)."""
        self._steps[self._known(method)] += [_Step(after, error=error) for _ in range(times)]

    def before_next(self, method: str, action: Action) -> None:
        """Run `action` (a function, or a coroutine function) right before the next call of `method`."""
        self._steps[self._known(method)].append(_Step(after=False, action=action))

    def _known(self, method: str) -> str:
        if not callable(getattr(self, method, None)):
            raise AttributeError(f"{type(self).__name__} has no method {method}")
        return method

    async def _run_step(self, method: str, *, after: bool) -> None:
        steps = self._steps.get(method)
        if not steps or steps[0].after != after:
            return
        step = steps.pop(0)
        if step.action is not None:
            result = step.action()
            if inspect.isawaitable(result):
                await result
        if step.error is not None:
            raise step.error


def port_call(method: F) -> F:
    """One call to storage or Graph: counted, a yield to the loop (a round trip), scripted steps.
    The body runs without awaiting, so each call is atomic, like one request to the service."""

    @functools.wraps(method)
    async def call(self: Scripted, *args: Any, **kwargs: Any) -> Any:
        self.calls[method.__name__] += 1
        await asyncio.sleep(0)
        await self._run_step(method.__name__, after=False)
        result = await method(self, *args, **kwargs)
        await self._run_step(method.__name__, after=True)
        return result

    return cast("F", call)


@dataclass
class FakeClock:
    """Monotonic seconds the test moves forward (pacer, cancel checks, protection, queue delays)."""

    now: float = 1000.0  # like time.monotonic(): an arbitrary start, never 0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- Table storage -------------------------------------------------------------------------------
class IndexRows:
    """Index partitions of the one table (remediation log, per-user, per-correlation id), keyed as
    `keys.py` keys them; rows are written once and never change."""

    def __init__(self) -> None:
        self.partitions: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)

    def put(self, partition: str, record: TaskRecord) -> None:
        row = index_row(partition, record)
        self.partitions[partition][row["RowKey"]] = row

    def delete(self, partition: str, row_key: str) -> None:
        self.partitions[partition].pop(row_key, None)

    def task_ids(self, partition: str) -> list[str]:
        """Newest first, as the row keys sort."""
        rows = self.partitions[partition]
        return [rows[key]["TaskId"] for key in sorted(rows)]


class FakeTaskStore(Scripted):
    def __init__(self, rows: IndexRows) -> None:
        super().__init__()
        self.rows = rows
        self.records: dict[str, TaskRecord] = {}
        self.join_rows: dict[str, dict[str, str]] = defaultdict(dict)  # task id -> row key -> JSON

    @port_call
    async def create(self, record: TaskRecord, user: UserRef | None = None) -> TaskRecord:
        if record.id in self.records:
            raise TaskExistsError(record.id)
        stored = self.records[record.id] = replace(record, etag=new_etag())
        partitions = [LOG_PARTITION] + ([user.partition] if user else [])
        if record.correlation_id:
            partitions.append(correlation_partition(record.correlation_id))
        for partition in partitions:
            self.rows.put(partition, stored)
        return stored

    @port_call
    async def get(self, task_id: str) -> TaskRecord | None:
        return self.records.get(task_id)

    @port_call
    async def get_many(self, task_ids: list[str]) -> list[TaskRecord]:
        return [self.records[task_id] for task_id in task_ids if task_id in self.records]

    @port_call
    async def save(self, current: TaskRecord, updated: TaskRecord) -> TaskRecord:
        stored = self.records.get(current.id)
        if stored is None or stored.etag != current.etag:
            raise ConcurrentUpdateError(current.id)
        saved = self.records[current.id] = replace(updated, etag=new_etag())
        return saved

    @port_call
    async def create_bulk_task(self, record: TaskRecord, user: UserRef) -> tuple[TaskRecord, bool]:
        existing = self.records.get(record.id)
        if existing is None:
            stored, created = replace(record, etag=new_etag()), True
            self.records[record.id] = stored
        else:
            stored, created = existing, False
        self.rows.put(user.partition, stored)
        return stored, created

    @port_call
    async def add_join(self, task_id: str, joined: dict[str, Any]) -> str:
        row_key = f"{JOIN_PREFIX}{int(utcnow().timestamp() * 1000):013d}-{uuid.uuid4()}"
        self.join_rows[task_id][row_key] = json.dumps(joined)
        return row_key

    @port_call
    async def joins(self, task_id: str, limit: int) -> tuple[list[tuple[str, dict[str, Any]]], int]:
        rows = self.join_rows[task_id]
        keys = sorted(rows)[:MAX_JOINS_COUNTED]
        return [(key, json.loads(rows[key])) for key in keys[:limit]], len(keys)

    @port_call
    async def save_join(self, task_id: str, row_key: str, joined: dict[str, Any]) -> None:
        self.join_rows[task_id][row_key] = json.dumps(joined)

    # for tests
    def update(self, task_id: str, **changes: Any) -> TaskRecord:
        """Another writer changed the record (a new ETag): set up a state, or make a read stale."""
        record = self.records[task_id] = replace(self.records[task_id], etag=new_etag(), **changes)
        return record

    def joined(self, task_id: str) -> list[dict[str, Any]]:
        rows = self.join_rows[task_id]
        return [json.loads(rows[key]) for key in sorted(rows)]


class FakePendingStore(Scripted):
    def __init__(self, rows: IndexRows) -> None:
        super().__init__()
        self.rows = rows
        self.slots: dict[str, Pending] = {}  # user partition -> slot

    @port_call
    async def get(self, user: UserRef) -> Pending | None:
        return self.slots.get(user.partition)

    @port_call
    async def claim(self, user: UserRef, record: TaskRecord, previous: Pending | None) -> bool:
        """Like the adapter's transaction: the slot and the user's log row, or nothing."""
        current = self.slots.get(user.partition)
        unchanged = current is None if previous is None else current is not None and current.etag == previous.etag
        if not unchanged:
            return False
        self.slots[user.partition] = Pending(record.id, new_etag(), utcnow())
        self.rows.put(user.partition, record)
        return True

    @port_call
    async def release(self, user: UserRef, task_id: str) -> None:
        current = self.slots.get(user.partition)
        if current is not None and current.task_id == task_id:
            del self.slots[user.partition]

    def task_of(self, user: UserRef) -> str | None:
        slot = self.slots.get(user.partition)
        return slot.task_id if slot else None


@dataclass(frozen=True)
class ActiveRow:
    due: datetime
    next_attempt_at: datetime | None


class FakeTaskIndex(Scripted):
    def __init__(self, rows: IndexRows, tasks: FakeTaskStore, pending: FakePendingStore) -> None:
        super().__init__()
        self.rows = rows
        self.active: dict[str, ActiveRow] = {}
        self._tasks = tasks
        self._pending = pending

    @port_call
    async def add_correlation(self, correlation_id: str, record: TaskRecord) -> None:
        self.rows.put(correlation_partition(correlation_id), record)

    @port_call
    async def add_log_rows(self, records: list[TaskRecord]) -> None:
        for record in records:
            self.rows.put(LOG_PARTITION, record)

    @port_call
    async def log_page(
        self,
        user: UserRef | None,
        correlation_id: str | None,
        newest: datetime | None,
        oldest: datetime | None,
        after: str | None,
        limit: int,
    ) -> LogPage:
        partition = user.partition if user else correlation_partition(correlation_id) if correlation_id else LOG_PARTITION
        low = time_key(newest) if newest else "0"
        high = time_key(oldest) + "." if oldest else ":"
        rows = self.rows.partitions[partition]
        keys = sorted(key for key in rows if low <= key < high and (not after or key > after))[:limit]
        return LogPage([rows[key]["TaskId"] for key in keys], keys[-1] if len(keys) == limit else None)

    @port_call
    async def mark_active(self, task_id: str, due: datetime, next_attempt_at: datetime | None = None) -> None:
        self.active[task_id] = ActiveRow(due, next_attempt_at)

    @port_call
    async def clear_active(self, task_id: str) -> None:
        self.active.pop(task_id, None)

    @port_call
    async def overdue(self, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        return [(task_id, row.due) for task_id, row in sorted(self.active.items()) if row.due < now][:limit]

    @port_call
    async def count_active(self, limit: int) -> tuple[int, int, datetime | None]:
        rows = [row for _, row in sorted(self.active.items())][:limit]
        waiting = [row.next_attempt_at for row in rows if row.next_attempt_at is not None]
        return len(rows), len(waiting), min(waiting, default=None)

    @port_call
    async def expired_tasks(self, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
        rows = self.rows.partitions[LOG_PARTITION]
        return [{"PartitionKey": LOG_PARTITION, **rows[key]} for key in sorted(rows) if key > time_key(cutoff)][:limit]

    @port_call
    async def delete_task(self, log_row: dict[str, Any]) -> None:
        """The record and every row that names it; the log row last (as the adapter does)."""
        task_id, row_key = log_row["TaskId"], log_row["RowKey"]
        record = self._tasks.records.get(task_id)
        self._tasks.join_rows.pop(task_id, None)
        if record and record.correlation_id:
            self.rows.delete(correlation_partition(record.correlation_id), row_key)
        try:
            user = parse_user(log_row["User"])
        except InvalidIdentifierError:
            pass
        else:
            await self._pending.release(user, task_id)
            self.rows.delete(user.partition, row_key)
        self._tasks.records.pop(task_id, None)
        self.active.pop(task_id, None)
        self.rows.delete(LOG_PARTITION, row_key)

    # for tests
    def log_ids(self) -> list[str]:
        return self.rows.task_ids(LOG_PARTITION)

    def user_ids(self, user: UserRef) -> list[str]:
        return self.rows.task_ids(user.partition)

    def correlation_ids(self, correlation_id: str) -> list[str]:
        return self.rows.task_ids(correlation_partition(correlation_id))


class FakeCounterStore(Scripted):
    def __init__(self) -> None:
        super().__init__()
        self.markers: dict[str, set[str]] = defaultdict(set)
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.transactions: list[tuple[str, dict[str, str]]] = []  # (job id, markers) committed

    @port_call
    async def add(self, job_id: str, markers: dict[str, str], shards: int) -> None:
        if not 1 <= len(markers) <= MAX_MARKERS_PER_COMMIT or shards < 1:
            raise ValueError("a Table transaction holds 1-99 markers and one counter shard")
        if self.markers[job_id] & markers.keys():
            raise AlreadyCountedError(job_id)
        self.markers[job_id] |= markers.keys()
        self.counts[job_id].update(markers.values())
        self.transactions.append((job_id, dict(markers)))

    @port_call
    async def has_marker(self, job_id: str, marker: str) -> bool:
        return marker in self.markers[job_id]

    @port_call
    async def totals(self, job_id: str) -> dict[str, int]:
        return dict(self.counts[job_id])

    def forget(self, job_id: str) -> None:
        self.markers.pop(job_id, None)
        self.counts.pop(job_id, None)


class FakeJobStore(Scripted):
    def __init__(self, counters: FakeCounterStore) -> None:
        super().__init__()
        self.jobs: dict[str, Job] = {}
        self.links: dict[tuple[str, int], str] = {}  # (job id, page) -> the Graph link that read it
        self.index: dict[str, dict[str, Any]] = {}  # row key -> jobs index row
        self._counters = counters

    @port_call
    async def create(self, job: Job) -> Job:
        if job.id in self.jobs:
            raise ResourceExistsError(f"job {job.id} exists")
        stored = self.jobs[job.id] = replace(job, etag=new_etag())
        row_key = index_row_key(job.created_at, job.id)
        self.index[row_key] = {"PartitionKey": JOBS_PARTITION, "RowKey": row_key, "JobId": job.id}
        return stored

    @port_call
    async def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    @port_call
    async def replace(self, job: Job) -> Job:
        stored = self.jobs.get(job.id)
        if stored is None or stored.etag != job.etag:
            raise ConcurrentUpdateError(job.id)
        saved = self.jobs[job.id] = replace(job, etag=new_etag())
        return saved

    @port_call
    async def save_page_link(self, job_id: str, page: int, link: str) -> None:
        self.links[(job_id, page)] = link

    @port_call
    async def page_link(self, job_id: str, page: int) -> str | None:
        return self.links.get((job_id, page))

    @port_call
    async def index_page(self, after: str | None, limit: int) -> JobIndexPage:
        keys = [key for key in sorted(self.index) if not after or key > after][:limit]
        return JobIndexPage([self.index[key]["JobId"] for key in keys], keys[-1] if len(keys) == limit else None)

    @port_call
    async def expired(self, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
        return [dict(self.index[key]) for key in sorted(self.index) if key > time_key(cutoff)][:limit]

    @port_call
    async def delete(self, index_row: dict[str, Any]) -> None:
        job_id = index_row["JobId"]
        self.jobs.pop(job_id, None)
        self.links = {key: link for key, link in self.links.items() if key[0] != job_id}
        self._counters.forget(job_id)
        self.index.pop(index_row["RowKey"], None)

    # for tests
    def update(self, job_id: str, **changes: Any) -> Job:
        """Another writer changed the job (a new ETag)."""
        job = self.jobs[job_id] = replace(self.jobs[job_id], etag=new_etag(), **changes)
        return job


class FakeIdempotencyStore(Scripted):
    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, IdempotencyEntry] = {}  # idempotency partition -> entry
        self.log: dict[str, dict[str, Any]] = {}  # row key -> time index row

    @port_call
    async def get(self, key: str) -> IdempotencyEntry | None:
        return self.entries.get(idempotency_partition(key))

    @port_call
    async def claim(self, key: str, body_hash: str, previous: IdempotencyEntry | None) -> IdempotencyEntry | None:
        partition = idempotency_partition(key)
        current = self.entries.get(partition)
        unchanged = current is None if previous is None else current is not None and current.etag == previous.etag
        if not unchanged:
            return None
        entry = self.entries[partition] = IdempotencyEntry(body_hash, (), utcnow(), completed=False, etag=new_etag())
        row_key = index_row_key(entry.created_at, partition)
        self.log[row_key] = {"PartitionKey": IDEMPOTENCY_LOG, "RowKey": row_key}
        return entry

    @port_call
    async def complete(self, key: str, entry: IdempotencyEntry, task_ids: list[str]) -> None:
        partition = self._guarded(key, entry)
        self.entries[partition] = replace(entry, task_ids=tuple(task_ids), completed=True, etag=new_etag())

    @port_call
    async def release(self, key: str, entry: IdempotencyEntry) -> None:
        del self.entries[self._guarded(key, entry)]

    @port_call
    async def expired(self, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
        return [dict(self.log[key]) for key in sorted(self.log) if key > time_key(cutoff)][:limit]

    @port_call
    async def delete(self, log_row: dict[str, Any], cutoff: datetime) -> None:
        partition = log_row["RowKey"].split("-", 1)[1]
        entry = self.entries.get(partition)
        if entry is not None and entry.created_at < cutoff:
            del self.entries[partition]
        self.log.pop(log_row["RowKey"], None)

    def _guarded(self, key: str, entry: IdempotencyEntry) -> str:
        """The entry's partition if nobody changed it; else what the SDK raises (If-Match)."""
        partition = idempotency_partition(key)
        current = self.entries.get(partition)
        if current is None:
            raise ResourceNotFoundError("idempotency entry gone")
        if current.etag != entry.etag:
            raise ResourceModifiedError("idempotency entry changed")
        return partition


# --- Storage queues ------------------------------------------------------------------------------
@dataclass
class QueuedMessage:
    queue: str
    id: str
    pop_receipt: str
    text: str
    visible_at: float
    dequeue_count: int = 0

    def decoded(self) -> Message:
        return decode_message(self.text.encode())


@dataclass(frozen=True)
class Sent:
    """One put, as the caller asked for it."""

    queue: str
    text: str
    delay: float

    def decoded(self) -> Message:
        return decode_message(self.text.encode())


class FakeQueue(Scripted):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.messages: dict[str, QueuedMessage] = {}  # in the order they were put
        self.sent: list[Sent] = []

    @port_call
    async def put(self, queue: str, text: str, delay_seconds: float = 0) -> Receipt:
        delay = max(0, min(MAX_VISIBILITY_SECONDS, round(delay_seconds)))  # as the adapter sends it
        message = QueuedMessage(queue, str(uuid.uuid4()), str(uuid.uuid4()), text, self.clock() + delay)
        self.messages[message.id] = message
        self.sent.append(Sent(queue, text, delay_seconds))
        return Receipt(queue, message.id, message.pop_receipt)

    @port_call
    async def release(self, receipt: Receipt) -> None:
        message = self._held(receipt)
        message.visible_at = self.clock()
        message.pop_receipt = str(uuid.uuid4())  # an update hands out a new pop receipt

    @port_call
    async def withdraw(self, receipt: Receipt) -> None:
        del self.messages[self._held(receipt).id]

    @port_call
    async def approximate_count(self, queue: str) -> int:
        return len(self.waiting(queue))

    def _held(self, receipt: Receipt) -> QueuedMessage:
        message = self.messages.get(receipt.message_id)
        if message is None or message.pop_receipt != receipt.pop_receipt:
            raise ResourceNotFoundError("message not found (gone, or its pop receipt is stale)")
        return message

    # for tests
    def waiting(self, queue: str) -> list[QueuedMessage]:
        """Every message of `queue`, visible or not."""
        return [message for message in self.messages.values() if message.queue == queue]

    def visible(self, queue: str) -> list[QueuedMessage]:
        now = self.clock()
        return sorted((m for m in self.waiting(queue) if m.visible_at <= now), key=lambda m: m.visible_at)

    def pop(self, queue: str) -> QueuedMessage | None:
        """Take the next visible message off the queue (a delivery that will not come back)."""
        visible = self.visible(queue)
        if not visible:
            return None
        message = self.messages.pop(visible[0].id)
        message.dequeue_count += 1
        return message

    def sent_to(self, queue: str) -> list[Sent]:
        return [sent for sent in self.sent if sent.queue == queue]


# --- Microsoft Graph -----------------------------------------------------------------------------
@dataclass
class FakeUser:
    id: str
    upn: str
    user_type: str = "Member"
    sessions_valid_from: datetime | None = None


@dataclass(frozen=True)
class Revocation:
    user_id: str
    client_request_id: str
    priority: str
    request_id: str


class FakeGraph(Scripted):
    """Users, groups, pages with nextLinks of the job's own collection, revocations; what the
    Graph adapter checks (a link outside the job's collection) it checks too."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url
        self.users: dict[str, FakeUser] = {}  # object id -> user
        self.groups: dict[str, list[str]] = {}  # group id -> member object ids
        self.revocations: list[Revocation] = []
        self.pages_read: list[tuple[str | None, str | None]] = []  # (group id, link) per list_users
        self.counts_read: list[tuple[str | None, bool, frozenset[str] | None]] = []  # (group id, guests, among)
        self.limit_percentage: float | None = None  # x-ms-throttle-limit-percentage on every answer
        self._request_ids = itertools.count(1)

    def add_user(self, upn: str, user_type: str = "Member", user_id: str | None = None) -> FakeUser:
        user = FakeUser(user_id or str(uuid.uuid4()), upn, user_type)
        self.users[user.id] = user
        return user

    def add_group(self, members: list[FakeUser], group_id: str | None = None) -> str:
        group_id = group_id or str(uuid.uuid4())
        self.groups[group_id] = [member.id for member in members]
        return group_id

    def page_link(self, group_id: str | None, page_size: int, start: int) -> str:
        path = "/users" if group_id is None else f"/groups/{group_id}/transitiveMembers/microsoft.graph.user"
        return f"{self.base_url}{path}?$select=id,userPrincipalName,userType&$top={page_size}&$skiptoken=s{start}"

    def revoke_count(self, user: FakeUser) -> int:
        return sum(1 for revocation in self.revocations if revocation.user_id == user.id)

    @port_call
    async def get_user(self, user: str, client_request_id: str, priority: str) -> GraphResult[GraphUser]:
        found = self._find(user, "User.Read.All")
        return self._result(GraphUser(found.id, found.upn, found.user_type, found.sessions_valid_from))

    @port_call
    async def list_users(
        self, group_id: str | None, next_link: str | None, request_id: str, page_size: int
    ) -> GraphResult[UserPage]:
        if next_link is not None and not is_own_page_link(next_link, self.base_url, group_id, page_size):
            raise GraphError("the page link is not the job's own collection", code="UnexpectedNextLink")
        if group_id is not None and group_id not in self.groups:
            raise _not_found(f"group {group_id}", "GroupMember.Read.All")
        self.pages_read.append((group_id, next_link))
        members = sorted(self.users) if group_id is None else self.groups[group_id]
        start = int(next_link.rsplit("$skiptoken=s", 1)[1]) if next_link else 0
        users = [self.users[user_id] for user_id in members[start : start + page_size]]
        following = self.page_link(group_id, page_size, start + page_size) if start + page_size < len(members) else None
        return self._result(UserPage([PageUser(user.id, user.upn, user.user_type) for user in users], following))

    @port_call
    async def count_users(
        self, group_id: str | None, request_id: str, *, guests: bool = False, among: frozenset[str] | None = None
    ) -> GraphResult[int]:
        """$count: no enumeration is recorded in `pages_read`."""
        if group_id is not None and group_id not in self.groups:
            raise _not_found(f"group {group_id}", "GroupMember.Read.All")
        self.counts_read.append((group_id, guests, among))
        members = [self.users[user_id] for user_id in (self.users if group_id is None else self.groups[group_id])]
        wanted = [m for m in members if (not guests or m.user_type == "Guest") and (among is None or m.id in among)]
        return self._result(len(wanted))

    @port_call
    async def revoke_sessions(self, user_id: str, client_request_id: str, priority: str) -> GraphResult[None]:
        user = self._find(user_id, "User.RevokeSessions.All")
        user.sessions_valid_from = utcnow().replace(microsecond=0)  # Graph keeps whole seconds
        result = self._result(None)
        self.revocations.append(Revocation(user.id, client_request_id, priority, str(result.request_id)))
        return result

    def _find(self, user: str, permission: str) -> FakeUser:
        key = user.lower()
        for candidate in self.users.values():
            if key in (candidate.id.lower(), candidate.upn.lower()):
                return candidate
        raise _not_found(f"user {user}", permission)

    def _result(self, value: T) -> GraphResult[T]:
        return GraphResult(value, f"request-{next(self._request_ids)}", self.limit_percentage)


def _not_found(what: str, permission: str) -> GraphError:
    return GraphError(f"{what} does not exist", status=404, code="Request_ResourceNotFound", permission=permission)


def transient(retry_after: float | None = None, status: int = 503) -> GraphError:
    """A Graph failure that trying again later can help (429 or 5xx), as the adapter raises it."""
    code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
    return GraphError(
        f"Graph answered {status}", status=status, code=code, request_id="request-failed", retry_after=retry_after, transient=True
    )


# --- Callbacks -----------------------------------------------------------------------------------
class FakeCallbacks(Scripted):
    """Every POST recorded; answers scripted with `answer_next`, else delivered (200)."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.answers: list[tuple[bool, bool, str, int | None]] = []

    def answer_next(self, delivered: bool, retriable: bool = False, detail: str = "", status: int | None = None) -> None:
        self.answers.append((delivered, retriable, detail, status))

    @port_call
    async def post(self, url: str, body: dict[str, Any]) -> tuple[bool, bool, str, int | None]:
        self.posts.append((url, body))
        return self.answers.pop(0) if self.answers else (True, False, "", 200)


# --- the composition root, in memory -------------------------------------------------------------
@dataclass
class FakeRuntime:
    """What `shared/runtime.py::Runtime` holds, over the fakes: satisfies WorkerDeps, IntakeDeps,
    QueryDeps, RetentionDeps and ApprovalDeps."""

    settings: Settings = field(default_factory=Settings)
    clock: FakeClock = field(default_factory=FakeClock)
    rows: IndexRows = field(init=False)
    tasks: FakeTaskStore = field(init=False)
    pending: FakePendingStore = field(init=False)
    index: FakeTaskIndex = field(init=False)
    counters: FakeCounterStore = field(init=False)
    jobs: FakeJobStore = field(init=False)
    idempotency: FakeIdempotencyStore = field(init=False)
    queue: FakeQueue = field(init=False)
    graph: FakeGraph = field(init=False)
    callbacks: FakeCallbacks = field(init=False)
    job_counts: JobCounts = field(init=False)
    cancel_checks: CancelChecks = field(init=False)
    pacer: WritePacer = field(init=False)
    protected: ProtectedAccounts = field(init=False)

    def __post_init__(self) -> None:
        self.rows = IndexRows()
        self.tasks = FakeTaskStore(self.rows)
        self.pending = FakePendingStore(self.rows)
        self.index = FakeTaskIndex(self.rows, self.tasks, self.pending)
        self.counters = FakeCounterStore()
        self.jobs = FakeJobStore(self.counters)
        self.idempotency = FakeIdempotencyStore()
        self.queue = FakeQueue(self.clock)
        self.graph = FakeGraph(self.settings.graph_base_url)
        self.callbacks = FakeCallbacks()
        self.job_counts = JobCounts(self.counters)
        self.cancel_checks = CancelChecks(self.jobs, self.clock)
        self.pacer = WritePacer(ceiling=self.settings.graph_writes_per_second, clock=self.clock)
        self.protected = ProtectedAccounts(self.settings.protected_users, self.graph.get_user, self.clock)

    def lane(self, queue: str) -> Lane:
        lanes = {lane.queue: lane for lane in (single_lane(self), bulk_lane(self), page_lane(self))}
        return lanes[queue]

    async def deliver(self, queue: str) -> QueuedMessage | None:
        """What the Functions host does: take the next visible message and run its queue trigger."""
        message = self.queue.pop(queue)
        if message is not None:
            await self.redeliver(message)
        return message

    async def redeliver(self, message: QueuedMessage) -> None:
        """Run a message (again): a host redelivery after a crash, or a duplicate copy."""
        await process_message(self, message.text.encode(), message.id, self.lane(message.queue))


def fake_runtime(**settings: Any) -> FakeRuntime:
    """A FakeRuntime with `Settings()` defaults, overridden by keyword (`graph_page_size=2`)."""
    return FakeRuntime(replace(Settings(), **settings))


if TYPE_CHECKING:  # mypy: the fakes satisfy every use case's ports (structural typing)

    def _satisfies_every_deps(rt: FakeRuntime) -> tuple[WorkerDeps, IntakeDeps, QueryDeps, RetentionDeps, ApprovalDeps]:
        return rt, rt, rt, rt, rt
