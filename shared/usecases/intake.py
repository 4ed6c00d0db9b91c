"""Accepting sign-out requests: one durable task per user, idempotent, coalescing queued ones.

Order per user, so that a 202 always means "durably queued" and a failure leaves nothing
half-done: claim the user's pending slot -> put the message on the queue *invisible* -> mark
the task active (the sweeper's safety net) -> write the record -> make the message visible.
If the record surely was not written the message is withdrawn (if even that fails, it surfaces
after ACCEPT_WINDOW and the worker drops it because no record exists); if storage cannot say,
the caller gets 503 and retries (joining the task if it did land). A record that lands after its
message was dropped (a write slower than ACCEPT_WINDOW) is re-driven by the sweeper.

A request for a user whose task is still queued joins that task: it is recorded on the task
(who asked, why, its correlation id) and its callback is called when the task ends.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from shared.domain.alerts import AlertUsers
from shared.domain.identifiers import UserRef
from shared.domain.messages import CallbackMessage, TaskMessage, new_token
from shared.domain.principal import Principal
from shared.domain.problems import ProblemError
from shared.domain.requests import MAX_DESCRIPTION, SignoutRequest
from shared.domain.tasks import TaskRecord, TaskStatus, iso, utcnow
from shared.settings import Settings
from shared.usecases.audit_log import state_change
from shared.usecases.ports import IdempotencyStore, Pending, PendingStore, TaskIndex, TaskStore, WorkQueue
from shared.usecases.tracing import current_traceparent, tracer

log = logging.getLogger("signout.intake")
T = TypeVar("T")

ACCEPT_WINDOW = timedelta(seconds=60)  # a message hidden this long has its record decided
IDEMPOTENCY_TTL = timedelta(hours=24)
IN_PROGRESS_STALE = timedelta(seconds=60)  # longer than three Graph calls at their timeout
QUEUED_STALE = timedelta(minutes=5)  # a first attempt not started by then lost its message
_PARALLEL_USERS = 32
ANONYMOUS_SCOPE = "anonymous-key"  # callers known only by a function key share one scope
SWEEP_AFTER_ACCEPT = ACCEPT_WINDOW + timedelta(seconds=60)  # the message has surely surfaced by then


class IntakeDeps(Protocol):
    """The ports intake uses."""

    @property
    def settings(self) -> Settings: ...
    @property
    def tasks(self) -> TaskStore: ...
    @property
    def index(self) -> TaskIndex: ...
    @property
    def pending(self) -> PendingStore: ...
    @property
    def idempotency(self) -> IdempotencyStore: ...
    @property
    def queue(self) -> WorkQueue: ...


def idempotency_scope(endpoint: str, requested_by: Principal | None, key: str) -> str:
    """An Idempotency-Key belongs to its caller and endpoint: nobody can claim (or replay) another
    caller's key, and no header can reach the alerts' own keys (`alert:` prefix)."""
    principal = (requested_by.object_id or requested_by.app_id if requested_by else None) or ANONYMOUS_SCOPE
    return f"api:{endpoint}:{principal}:{key}"


@dataclass(frozen=True)
class Accepted:
    tasks: list[TaskRecord]
    replayed: bool = False


class PartlyAcceptedError(Exception):
    """Storage failed for some users: their sign-outs were not accepted; the others were."""

    def __init__(self, accepted: list[TaskRecord], failed_users: list[str]) -> None:
        super().__init__(f"{len(failed_users)} user(s) not accepted")
        self.accepted = accepted
        self.failed_users = failed_users


class BusyError(Exception):
    """Another request is accepting the same thing right now; the caller should retry."""


async def accept(
    rt: IntakeDeps, request: SignoutRequest, idempotency_key: str | None, requested_by: Principal | None
) -> Accepted:
    if idempotency_key is None:
        return Accepted(await _accept_all(rt, request, requested_by))
    return await _accept_once(rt, request, idempotency_scope("signouts", requested_by, idempotency_key), requested_by)


async def accept_alert(rt: IntakeDeps, alert: AlertUsers, requested_by: Principal | None) -> list[TaskRecord]:
    """One task per alerted user, idempotent on alert id + user: an action group's retry, or a
    Sentinel incident updated with more entities, never revokes the same user twice for it."""

    async def one(user: UserRef) -> TaskRecord:
        request = SignoutRequest((user,), alert.name[:MAX_DESCRIPTION], source=alert.kind, alert_id=alert.alert_id)
        key = f"alert:{alert.kind}:{alert.alert_id}:{user.key}"
        accepted = await _accept_once(rt, request, key, requested_by, fingerprint=user.key)
        return accepted.tasks[0]

    return list(await asyncio.gather(*(one(user) for user in alert.users)))


async def _accept_once(
    rt: IntakeDeps, request: SignoutRequest, key: str, requested_by: Principal | None, fingerprint: str | None = None
) -> Accepted:
    async def run() -> tuple[list[str], list[TaskRecord]]:
        tasks = await _accept_all(rt, request, requested_by)
        return [task.id for task in tasks], tasks

    ids, tasks = await idempotent(rt, key, fingerprint or request.fingerprint(), run)
    if tasks is None:
        return Accepted(await rt.tasks.get_many(ids), replayed=True)
    return Accepted(tasks)


async def idempotent(
    rt: IntakeDeps, key: str, fingerprint: str, run: Callable[[], Awaitable[tuple[list[str], T]]]
) -> tuple[list[str], T | None]:
    """Run `run` once per key within 24 hours. Returns the ids it produced, and its result when it
    ran now (None when this is a replay of an earlier request with the same key and body)."""
    entry = await rt.idempotency.get(key)
    if entry and utcnow() - entry.created_at < IDEMPOTENCY_TTL:
        if entry.body_hash != fingerprint:
            raise ProblemError(
                422, "Idempotency-Key reused", "this Idempotency-Key was used with a different request body in the last 24 hours"
            )
        if entry.completed:
            return list(entry.task_ids), None
        if utcnow() - entry.created_at < ACCEPT_WINDOW:
            raise ProblemError(
                409,
                "Request in progress",
                "a request with this Idempotency-Key is still being accepted",
                headers={"Retry-After": "1"},
            )
    claim = await rt.idempotency.claim(key, fingerprint, entry)
    if claim is None:
        raise ProblemError(
            409, "Request in progress", "a request with this Idempotency-Key is being accepted", headers={"Retry-After": "1"}
        )
    try:
        ids, result = await run()
    except BaseException:
        await _quietly(rt.idempotency.release(key, claim), "release idempotency key")
        raise
    # The tasks exist: a key that could not be completed (taken over after ACCEPT_WINDOW) must
    # not turn this accepted request into an error.
    await _quietly(rt.idempotency.complete(key, claim, ids), "complete idempotency key")
    return ids, result


async def _accept_all(rt: IntakeDeps, request: SignoutRequest, requested_by: Principal | None) -> list[TaskRecord]:
    limit = asyncio.Semaphore(_PARALLEL_USERS)

    async def one(user: UserRef) -> TaskRecord:
        async with limit:
            return await accept_user(rt, user, request, requested_by)

    outcomes = await asyncio.gather(*(one(user) for user in request.users), return_exceptions=True)
    failed = [
        (user, outcome) for user, outcome in zip(request.users, outcomes, strict=True) if isinstance(outcome, BaseException)
    ]
    if failed:
        accepted = [outcome for outcome in outcomes if isinstance(outcome, TaskRecord)]
        if not accepted:
            raise failed[0][1]
        raise PartlyAcceptedError(accepted, [user.value for user, _ in failed]) from failed[0][1]
    return [outcome for outcome in outcomes if isinstance(outcome, TaskRecord)]


async def accept_user(rt: IntakeDeps, user: UserRef, request: SignoutRequest, requested_by: Principal | None) -> TaskRecord:
    previous: Pending | None = None  # most users have no pending slot yet: try to create it first
    for _ in range(5):
        record = _new_record(user, request, requested_by)
        if await rt.pending.claim(user, record, previous):
            return await _create(rt, user, record)
        previous = await rt.pending.get(user)
        if previous is not None:
            covering = await _covering_task(rt, previous)
            if covering is not None:
                return await _join(rt, covering, request, requested_by)
    raise BusyError(f"could not accept a sign-out for {user.value}: too many concurrent requests")


async def _join(rt: IntakeDeps, task: TaskRecord, request: SignoutRequest, requested_by: Principal | None) -> TaskRecord:
    """Record the request on the task it joins; its callback is delivered when the task ends."""
    joined = {
        "requestedBy": requested_by.as_api() if requested_by else None,
        "correlationId": request.correlation_id,
        "description": request.description,
        "source": request.source,
        "alertId": request.alert_id,
        "callbackUrl": request.callback_url,
        "joinedAt": iso(utcnow()),
    }
    await rt.tasks.add_join(task.id, {key: value for key, value in joined.items() if value})
    if request.correlation_id:
        await rt.index.add_correlation(request.correlation_id, task)
    state_change(task, "a new request joined this task: its revocation is still to come")
    if request.callback_url:  # the task may have ended meanwhile, its callbacks already sent
        latest = await rt.tasks.get(task.id)
        if latest is not None and latest.status.is_terminal:
            await rt.queue.put(rt.settings.signout_queue, CallbackMessage(task.id, task.token).to_text())
    return task


def _new_record(user: UserRef, request: SignoutRequest, requested_by: Principal | None) -> TaskRecord:
    now = utcnow()
    return TaskRecord(
        id=str(uuid.uuid4()),
        user=user.value,
        status=TaskStatus.QUEUED,
        created_at=now,
        updated_at=now,
        description=request.description,
        source=request.source,
        alert_id=request.alert_id,
        callback_url=request.callback_url,
        requested_by=requested_by,
        correlation_id=request.correlation_id,
        token=new_token(),
    )


async def _covering_task(rt: IntakeDeps, pending: Pending) -> TaskRecord | None:
    """The user's pending task if its revocation is still to come, so it covers this request.

    The worker deletes the pending slot right before it calls revokeSignInSessions: a slot we
    could read therefore names a task that has not revoked yet (queued, or in progress and
    still resolving the user). An in-progress task older than IN_PROGRESS_STALE crashed and
    waits for redelivery; a new task is quicker.
    """
    for _ in range(20):
        record = await rt.tasks.get(pending.task_id)
        if record is not None:
            age = utcnow() - record.updated_at
            waiting = record.status is TaskStatus.QUEUED and (record.attempts > 0 or age < QUEUED_STALE)
            covers = waiting or (record.status is TaskStatus.IN_PROGRESS and age < IN_PROGRESS_STALE)
            return record if covers else None
        if utcnow() - pending.claimed_at > ACCEPT_WINDOW:
            return None  # its request failed before writing the record
        await asyncio.sleep(0.1)  # being accepted by a concurrent request right now
    raise BusyError("a sign-out for this user is being accepted by another request")


@tracer.start_as_current_span("signout.accept", kind=SpanKind.PRODUCER)
async def _create(rt: IntakeDeps, user: UserRef, record: TaskRecord) -> TaskRecord:
    trace.get_current_span().set_attributes({"signout.task_id": record.id, "signout.source": record.source})
    message = TaskMessage(record.id, user, record.token, current_traceparent()).to_text()
    try:
        receipt = await rt.queue.put(rt.settings.signout_queue, message, ACCEPT_WINDOW.total_seconds())
        await rt.index.mark_active(record.id, utcnow() + SWEEP_AFTER_ACCEPT)
    except BaseException:
        await _quietly(rt.pending.release(user, record.id), "free the pending slot")
        raise
    try:
        record = await rt.tasks.create(record)
    except BaseException:
        # The record may have been written before the failure (its log row failed, or the
        # answer was lost). Then the task exists and must run; otherwise nothing may remain.
        # When storage cannot even say, the caller gets 503: a 202 must mean durably queued.
        written = await _written(rt, record.id)
        if written is False:
            await _quietly(rt.queue.withdraw(receipt), "withdraw message of unwritten task")
            await _quietly(rt.index.clear_active(record.id), "clear the active row of an unwritten task")
            await _quietly(rt.pending.release(user, record.id), "free the pending slot")
        if not written:
            raise
        await _quietly(rt.index.add_log_rows([record]), "write the remediation-log row")
    # Released now; if this fails the message still surfaces when ACCEPT_WINDOW ends.
    await _quietly(rt.queue.release(receipt), "release message")
    state_change(record)
    return record


async def _written(rt: IntakeDeps, task_id: str) -> bool | None:
    """Whether the task record exists; None when storage cannot say (the hidden message then
    surfaces after ACCEPT_WINDOW and the worker runs it if, and only if, the record exists)."""
    try:
        return await rt.tasks.get(task_id) is not None
    except Exception:  # noqa: BLE001 - any failure means storage cannot say
        return None


async def _quietly(step: object, what: str) -> None:
    try:
        await step  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001 - best effort: the design tolerates this step failing
        log.warning("could not %s: %s", what, type(exc).__name__)
