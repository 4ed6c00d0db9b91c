"""The use case: process one sign-out task end to end (no Azure Functions types here).

resolve the user -> refuse protected accounts -> revokeSignInSessions -> read back
signInSessionsValidFromDateTime -> record the outcome. Transient failures reschedule the
task on the queue with a visibility delay (Retry-After when Graph sends one).
"""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.callbacks import deliver
from shared.graph import GraphFailure, GraphUser
from shared.identifiers import UserRef
from shared.logs import state_change
from shared.jobs import count_task, job_cancelled, page_poisoned, process_page
from shared.messages import DirectRequest, InvalidMessage, JobPageMessage, TaskMessage, decode_message
from shared.models import ErrorCategory, TaskError, TaskRecord, TaskStatus, utcnow
from shared.runtime import Runtime
from shared.status_store import TaskExists

log = logging.getLogger("signout.worker")

MAX_PACING_WAIT_SECONDS = 5.0  # longer waits reschedule the task instead of holding a worker
# Longer than any attempt lasts (a token and three Graph calls within GRAPH_TIMEOUT_SECONDS <= 60,
# a pacing wait) and shorter than the host's 10-minute message lease, after which a crashed
# attempt's own message returns.
ATTEMPT_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class Lane:
    """Which queue a task travels on and the Graph throttle priority its calls carry."""

    queue: str
    priority: str  # "high": single and alert-driven (throttled last); "low": bulk

    @property
    def high(self) -> bool:
        return self.priority == "high"


class Deferred(Exception):
    """The write pacer has no token for a while: put the task back instead of waiting."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"paced: next write in {seconds:.1f}s")
        self.seconds = seconds


def single_lane(rt: Runtime) -> Lane:
    return Lane(rt.settings.signout_queue, "high")


def bulk_lane(rt: Runtime) -> Lane:
    return Lane(rt.settings.bulk_queue, "low")
MAX_RETRY_DELAY_SECONDS = 300.0
GUEST_WARNING = (
    "Guest (B2B) account: Microsoft Entra ID does not apply revokeSignInSessions to external users' "
    "home-tenant sessions; revoke them in the user's home tenant as well."
)
UNVERIFIED_WARNING = (
    "signInSessionsValidFromDateTime read back is earlier than the request; Graph may apply the "
    "revocation with a delay of a few minutes."
)
PERMISSION_HINT = (
    "Grant the Function App's managed identity the Microsoft Graph application permission {permission} "
    "(admin consent required); see README, Deployment."
)


@dataclass(frozen=True)
class Outcome:
    status: TaskStatus
    changes: dict[str, Any] = field(default_factory=dict)
    graph_request_id: str | None = None


async def process_message(rt: Runtime, raw: bytes, message_id: str, lane: Lane | None = None) -> None:
    try:
        message = decode_message(raw)
    except InvalidMessage as exc:
        # repr() keeps control characters in the excerpt from forging log lines.
        log.error("dropped invalid queue message %s: %r; starts with %r", message_id, exc.reason, raw[:120])
        if exc.task_id:
            await fail_task(rt, exc.task_id, TaskError(ErrorCategory.INVALID_REQUEST, f"invalid queue message: {exc.reason}"))
        return
    lane = lane or single_lane(rt)
    if isinstance(message, DirectRequest):
        await adopt_direct_request(rt, message, message_id)
    elif isinstance(message, JobPageMessage):
        await process_page(rt, message)
    else:
        await process_task(rt, message, lane, message_id)


def _direct_record(request: DirectRequest, message_id: str, status: TaskStatus, error: TaskError | None = None) -> TaskRecord:
    now = utcnow()
    return TaskRecord(
        id=DirectRequest.task_id(message_id),
        user=request.user.value,
        status=status,
        created_at=now,
        updated_at=now,
        completed_at=now if status.is_terminal else None,
        description=request.description,
        source="queue",
        correlation_id=request.correlation_id,
        error=error,
    )


async def adopt_direct_request(rt: Runtime, request: DirectRequest, message_id: str) -> None:
    """Turn a message put straight on the queue into a task (once per queue message) and queue
    it as a task message, so its retries and its poison copy carry the task id."""
    record = _direct_record(request, message_id, TaskStatus.QUEUED)
    try:
        state_change(await rt.store.create(record, request.user))
    except TaskExists:
        pass  # a redelivery after the record was written: queue it (again) below
    await rt.queue.put(rt.settings.signout_queue, TaskMessage(record.id, request.user).to_text())


async def process_task(rt: Runtime, message: TaskMessage, lane: Lane, message_id: str = "") -> None:
    record = await rt.store.get(message.task_id)
    if record is None:
        log.warning("dropped message for task %s: no record (its request was not accepted)", message.task_id)
        return
    if record.status.is_terminal:
        log.info("task %s is already %s; redelivered message ignored", record.id, record.status.value)
        await count_task(rt, record)  # in case the last run stopped between the two
        return
    if record.user.lower() != message.user.key:
        await _move(rt, record, TaskStatus.FAILED, error=TaskError(ErrorCategory.INVALID_REQUEST, "queue message names another user than the task"))
        return
    if _attempt_running_elsewhere(record, message_id):
        log.info("task %s: its attempt runs under another message; this copy looks again later", record.id)
        remaining = ATTEMPT_GRACE - (utcnow() - record.updated_at)  # when that attempt counts as ended
        await rt.queue.put(lane.queue, message.to_text(), max(1.0, remaining.total_seconds()))
        return
    if record.job_id and record.status is TaskStatus.QUEUED and await job_cancelled(rt, record.job_id):
        error = TaskError(ErrorCategory.CANCELLED, f"not signed out: bulk job {record.job_id} was cancelled before this task started")
        await _move(rt, record, TaskStatus.SKIPPED, error=error)
        return
    if record.attempts >= rt.settings.max_attempts:  # crashed mid-attempt too often
        await _give_up(rt, record, "the task's attempts ended without a result")
        return
    if not lane.high and not _protected_locally(rt, record, message.user):
        try:
            await _pace(rt)
        except Deferred as deferred:  # the record stays queued; only the message moves
            await rt.queue.put(lane.queue, message.to_text(), deferred.seconds)
            return
    record = await _move(rt, record, TaskStatus.IN_PROGRESS, attempts=record.attempts + 1, next_attempt_at=None, attempt_message_id=message_id)
    try:
        outcome = await revoke(rt, record, message.user, lane)
    except GraphFailure as failure:
        await _after_failure(rt, record, message, failure, lane)
        return
    await _move(rt, record, outcome.status, graph_request_id=outcome.graph_request_id, **outcome.changes)


def _attempt_running_elsewhere(record: TaskRecord, message_id: str) -> bool:
    """A duplicate message (a redelivered page or direct request queued its task twice) while
    another message's attempt is under way. A redelivery of the attempt's own message means that
    attempt ended (crashed), and so does an attempt older than any attempt can last."""
    return (
        record.status is TaskStatus.IN_PROGRESS
        and record.attempt_message_id not in (None, message_id)
        and utcnow() - record.updated_at < ATTEMPT_GRACE
    )


def _protected_locally(rt: Runtime, record: TaskRecord, user: UserRef) -> bool:
    """Protected by what is known without Graph (bulk tasks come resolved): spend no write token."""
    known = {user.key, (record.resolved_id or "").lower(), (record.resolved_upn or "").lower()}
    return bool(known & rt.settings.protected_users)


async def revoke(rt: Runtime, record: TaskRecord, user: UserRef, lane: Lane) -> Outcome:
    if user.key in rt.settings.protected_users:
        return _protected(user.value)
    target = await _resolve(rt, record, user, lane)
    resolved = {"resolved_id": target.id, "resolved_upn": target.user_principal_name, "user_type": target.user_type}
    if {target.id.lower(), (target.user_principal_name or "").lower()} & rt.settings.protected_users:
        return _protected(user.value, resolved)
    if lane.high:
        rt.pacer.reserve(high_priority=True)  # never waits; bulk writes yield to it
    if record.job_id is None:  # from here on a new request for this user is not covered by this task
        await rt.store.release_pending(user, record.id)
    try:
        revoked = await rt.graph.revoke_sessions(target.id, record.id, lane.priority)
    except GraphFailure as failure:
        if failure.status == 429:
            rt.pacer.throttled(failure.retry_after)
        raise
    rt.pacer.observed(revoked.limit_percentage)
    valid_from, warnings = await _read_back(rt, record, target.id, lane)
    guest = (target.user_type or "").lower() == "guest"
    verified = not guest and valid_from is not None and valid_from >= record.created_at.replace(microsecond=0)
    if guest:
        warnings.append(GUEST_WARNING)
    elif valid_from is not None and not verified:
        warnings.append(UNVERIFIED_WARNING)
    changes = {**resolved, "sessions_valid_from": valid_from, "verified": verified, "warnings": tuple(warnings), "error": None}
    return Outcome(TaskStatus.SUCCEEDED, changes, revoked.request_id)


async def _resolve(rt: Runtime, record: TaskRecord, user: UserRef, lane: Lane) -> GraphUser:
    """Bulk tasks were resolved by their enumeration page; others are looked up now."""
    if record.job_id and record.resolved_id:
        return GraphUser(record.resolved_id, record.resolved_upn, record.user_type, None)
    return (await rt.graph.get_user(user.value, record.id, lane.priority)).value


async def _pace(rt: Runtime) -> None:
    """Wait for a bulk write token; a long wait reschedules the task instead."""
    wait = rt.pacer.reserve(high_priority=False)
    if wait > MAX_PACING_WAIT_SECONDS:
        rt.pacer.refund()
        raise Deferred(wait)
    if wait > 0:
        await asyncio.sleep(wait)


async def _read_back(rt: Runtime, record: TaskRecord, user_id: str, lane: Lane) -> tuple[datetime | None, list[str]]:
    """The revocation already happened: a failed read-back must not repeat it."""
    try:
        after = await rt.graph.get_user(user_id, record.id, lane.priority)
    except GraphFailure as failure:
        return None, [f"could not read signInSessionsValidFromDateTime back: {failure.message}"]
    return after.value.sessions_valid_from, []


def _protected(user: str, resolved: dict[str, Any] | None = None) -> Outcome:
    error = TaskError(ErrorCategory.PROTECTED_ACCOUNT, f"{user} is a protected account (PROTECTED_USERS); it was not signed out")
    return Outcome(TaskStatus.SKIPPED, {**(resolved or {}), "error": error})


def classify(failure: GraphFailure) -> TaskError:
    """Map a Graph failure to the task's error category."""
    common = {"code": failure.code, "graph_request_id": failure.request_id, "http_status": failure.status}
    if failure.transient:
        return TaskError(ErrorCategory.TRANSIENT, failure.message, **common)
    if failure.status == 403:
        hint = PERMISSION_HINT.format(permission=failure.permission or "User.RevokeSessions.All")
        return TaskError(ErrorCategory.PERMISSION_DENIED, failure.message, hint=hint, **common)
    if failure.status == 404:
        return TaskError(ErrorCategory.USER_NOT_FOUND, failure.message, **common)
    return TaskError(ErrorCategory.INVALID_REQUEST, failure.message, **common)


def retry_delay(retry_after: float | None, attempt: int, base_seconds: float) -> float:
    """Retry-After when Graph gives one; else exponential backoff with jitter. Never below 1 s."""
    if retry_after is not None and retry_after > 0:
        return min(max(retry_after, 1.0), MAX_RETRY_DELAY_SECONDS)
    backoff = min(base_seconds * 2 ** max(attempt - 1, 0), MAX_RETRY_DELAY_SECONDS)
    return max(1.0, random.uniform(backoff / 2, backoff))


async def _after_failure(rt: Runtime, record: TaskRecord, message: TaskMessage, failure: GraphFailure, lane: Lane) -> None:
    error = classify(failure)
    if error.category is not ErrorCategory.TRANSIENT:
        await _move(rt, record, TaskStatus.FAILED, error=error)
        return
    if record.attempts >= rt.settings.max_attempts:
        await _give_up(rt, record, failure.message, error)
        return
    delay = retry_delay(failure.retry_after, record.attempts, rt.settings.retry_base_seconds)
    next_at = utcnow() + timedelta(seconds=delay)
    await _move(rt, record, TaskStatus.QUEUED, error=error, next_attempt_at=next_at)
    if record.job_id is None:
        await rt.store.claim_pending(message.user, record, None)  # queued again: it covers new requests
    # If this put fails the exception makes the host redeliver the original message instead.
    await rt.queue.put(lane.queue, message.to_text(), delay)


async def _give_up(rt: Runtime, record: TaskRecord, reason: str, last: TaskError | None = None) -> None:
    message = f"gave up after {record.attempts} attempt(s); last error: {reason}"
    details = {"code": last.code, "graph_request_id": last.graph_request_id, "http_status": last.http_status} if last else {}
    await _move(rt, record, TaskStatus.FAILED, error=TaskError(ErrorCategory.GAVE_UP, message, **details))


async def fail_task(rt: Runtime, task_id: str, error: TaskError) -> None:
    """Mark a task failed unless it already finished (poison and invalid messages)."""
    record = await rt.store.get(task_id)
    if record is None or record.status.is_terminal:
        return
    await _move(rt, record, TaskStatus.FAILED, error=error)


POISONED = "gave up: its queue message failed repeatedly and was moved to the poison queue"


async def process_poison(rt: Runtime, raw: bytes, message_id: str) -> None:
    try:
        decoded = decode_message(raw)
    except InvalidMessage as exc:
        await _fail_poisoned(rt, exc.task_id, message_id)
        return
    if isinstance(decoded, JobPageMessage):
        await page_poisoned(rt, decoded)
        return
    if isinstance(decoded, DirectRequest):  # it never became a task: record that it failed
        failed = _direct_record(decoded, message_id, TaskStatus.FAILED, TaskError(ErrorCategory.GAVE_UP, POISONED))
        with suppress(TaskExists):
            state_change(await rt.store.create(failed, decoded.user))
        return
    await _fail_poisoned(rt, decoded.task_id, message_id)


async def _fail_poisoned(rt: Runtime, task_id: str | None, message_id: str) -> None:
    if task_id is None:
        log.error("poison message %s names no task; dropped", message_id)
        return
    await fail_task(rt, task_id, TaskError(ErrorCategory.GAVE_UP, POISONED))


async def _move(rt: Runtime, record: TaskRecord, status: TaskStatus, **changes: Any) -> TaskRecord:
    saved = await rt.store.save(record, record.moved_to(status, **changes))
    state_change(saved)
    await count_task(rt, saved)
    if saved.status.is_terminal and saved.callback_url:
        saved = await _call_back(rt, saved)
    return saved


async def _call_back(rt: Runtime, record: TaskRecord) -> TaskRecord:
    """Tell the Logic App waiting on its HTTP Webhook action; the outcome goes on the record."""
    outcome = await deliver(rt.http, record.callback_url or "", record.to_api())
    log.info("callback for task %s: %s after %s attempt(s)", record.id, outcome["status"], outcome["attempts"])
    return await rt.store.save(record, replace(record, callback=outcome, updated_at=utcnow()))
