"""The use case: process one sign-out task end to end (no Azure Functions types here).

resolve the user -> refuse protected accounts -> revokeSignInSessions -> read back
signInSessionsValidFromDateTime -> record the outcome. Transient failures reschedule the
task on the queue with a visibility delay (Retry-After when Graph sends one) until the retry
budget (RETRY_BUDGET_MINUTES) is spent. Each attempt has a deadline; the sweeper re-drives a
task whose attempt outlived it (a crashed instance) or whose message went missing.

Queue messages are untrusted input: each queue takes only its own kinds, and a task message
must carry its task's token, so a message written by anyone else changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from http import HTTPStatus
from typing import Any, Protocol

from opentelemetry.trace import SpanKind

from shared.domain.directory import TOKEN_TIMEOUT_SECONDS, GraphError, GraphUser
from shared.domain.errors import TaskExistsError
from shared.domain.identifiers import UserRef, parse_user
from shared.domain.messages import (
    CallbackMessage,
    DirectRequest,
    InvalidMessageError,
    JobPageMessage,
    Message,
    TaskMessage,
    decode_message,
    new_token,
    token_matches,
)
from shared.domain.pacing import WritePacer
from shared.domain.retry import retry_delay
from shared.domain.tasks import ErrorCategory, TaskError, TaskRecord, TaskStatus, utcnow
from shared.usecases.audit_log import state_change
from shared.usecases.bulk import BulkDeps, CancelChecks, count_task, page_poisoned, process_page
from shared.usecases.callbacks import CallbackDeps, callbacks_pending, deliver_callbacks
from shared.usecases.ports import PendingStore
from shared.usecases.protection import ProtectedAccounts
from shared.usecases.tracing import (
    PACER_RATE,
    POISON_MESSAGES,
    THROTTLED,
    TIME_TO_REVOKE,
    current_traceparent,
    lane_name,
    links_to_current,
    parent_from,
    tracer,
)

log = logging.getLogger("signout.worker")
_TOKEN_FIELD = re.compile(rb'"token"\s*:\s*"[^"]*"?')

MAX_PACING_WAIT_SECONDS = 5.0  # longer waits reschedule the task instead of holding a worker
STORAGE_MARGIN_SECONDS = 15.0  # the attempt's own table writes
SWEEP_GRACE = timedelta(seconds=30)  # after its due time, the sweeper re-drives a task
GUEST_WARNING = (
    "Guest (B2B) account: Microsoft Entra ID does not apply revokeSignInSessions to external users' "
    "home-tenant sessions; revoke them in the user's home tenant as well."
)
UNVERIFIED_WARNING = (
    "signInSessionsValidFromDateTime read back is earlier than the request; Graph may apply the "
    "revocation with a delay of a few minutes."
)
NOT_READ_BACK_WARNING = "Graph did not return signInSessionsValidFromDateTime, so the revocation could not be verified."
PERMISSION_HINT = (
    "Grant the Function App's managed identity the Microsoft Graph application permission {permission} "
    "(admin consent required); see README, Deployment."
)
POISONED = (
    "gave up: its queue message failed repeatedly and was moved to the poison queue, "
    "and the retry budget (RETRY_BUDGET_MINUTES) is spent"
)


class WorkerDeps(BulkDeps, CallbackDeps, Protocol):
    """The ports the queue workers use (a worker also runs bulk pages and callback deliveries)."""

    @property
    def pending(self) -> PendingStore: ...
    @property
    def pacer(self) -> WritePacer: ...
    @property
    def protected(self) -> ProtectedAccounts: ...
    @property
    def cancel_checks(self) -> CancelChecks: ...


class Priority(str, Enum):
    """Graph's `x-ms-throttle-priority`: single and alert-driven work is throttled last."""

    HIGH = "high"
    LOW = "low"


@dataclass(frozen=True)
class Lane:
    """A queue, the message kinds it takes, and the throttle priority its Graph calls carry."""

    queue: str
    priority: Priority
    accepts: tuple[type, ...]

    @property
    def high(self) -> bool:
        return self.priority is Priority.HIGH


class DeferredError(Exception):
    """The write pacer has no token for a while: put the task back instead of waiting."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"paced: next write in {seconds:.1f}s")
        self.seconds = seconds


def single_lane(rt: WorkerDeps) -> Lane:
    return Lane(rt.settings.signout_queue, Priority.HIGH, (TaskMessage, DirectRequest, CallbackMessage))


def bulk_lane(rt: WorkerDeps) -> Lane:
    return Lane(rt.settings.bulk_queue, Priority.LOW, (TaskMessage,))


def page_lane(rt: WorkerDeps) -> Lane:
    return Lane(rt.settings.bulk_page_queue, Priority.LOW, (JobPageMessage,))


def lane_of(rt: WorkerDeps, record: TaskRecord) -> Lane:
    return bulk_lane(rt) if record.job_id else single_lane(rt)


def attempt_seconds(rt: WorkerDeps) -> float:
    """An attempt's bounded steps: a token, three Graph calls, a pacing wait and its table writes."""
    return TOKEN_TIMEOUT_SECONDS + 3 * rt.settings.graph_timeout_seconds + MAX_PACING_WAIT_SECONDS + STORAGE_MARGIN_SECONDS


@dataclass(frozen=True)
class Outcome:
    status: TaskStatus
    changes: dict[str, Any] = field(default_factory=dict)


def decode_for(raw: bytes, message_id: str, lane: Lane) -> Message | None:
    """The message if this queue takes its kind; anything else is logged (safely) and dropped."""
    try:
        message = decode_message(raw)
    except InvalidMessageError as exc:
        # repr() keeps control characters in the excerpt from forging log lines.
        log.error("dropped invalid queue message %s on %s: %r; starts with %r", message_id, lane.queue, exc.reason, _excerpt(raw))
        return None
    if not isinstance(message, lane.accepts):
        log.error(
            "dropped %s %s on %s: this queue does not take that kind of message", type(message).__name__, message_id, lane.queue
        )
        return None
    return message


def _excerpt(raw: bytes) -> bytes:
    """The start of a message for the log, without any token it carries (a token lets its holder
    write messages this service accepts)."""
    text = raw.strip()
    if not text.startswith(b"{"):  # a base64-encoded message: show (and redact) what it says
        with suppress(binascii.Error, ValueError):
            text = base64.b64decode(text[:4096], validate=True) or text
    return _TOKEN_FIELD.sub(b'"token":"(redacted)"', text[:160])[:120]


async def process_message(rt: WorkerDeps, raw: bytes, message_id: str, lane: Lane) -> None:
    message = decode_for(raw, message_id, lane)
    if isinstance(message, DirectRequest):
        await adopt_direct_request(rt, message, message_id)
    elif isinstance(message, JobPageMessage):
        await process_page(rt, message)
    elif isinstance(message, CallbackMessage):
        await deliver_callbacks(rt, message)
    elif isinstance(message, TaskMessage):
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
        token=new_token(),
    )


async def adopt_direct_request(rt: WorkerDeps, request: DirectRequest, message_id: str) -> None:
    """Turn a message put straight on the queue into a task (once per queue message) and queue
    it as a task message, so its retries and its poison copy carry the task id and token."""
    record = _direct_record(request, message_id, TaskStatus.QUEUED)
    await rt.index.mark_active(record.id, utcnow() + SWEEP_GRACE)  # first: the sweeper covers a crash below
    try:
        record = await rt.tasks.create(record, request.user)
        state_change(record)
    except TaskExistsError:  # a redelivery after the record was written: queue it (again) below
        record = await rt.tasks.get(record.id) or record
    message = TaskMessage(record.id, request.user, record.token, current_traceparent())
    await rt.queue.put(rt.settings.signout_queue, message.to_text())


async def process_task(rt: WorkerDeps, message: TaskMessage, lane: Lane, message_id: str = "") -> None:
    """One attempt, traced as a child of the request that queued it (the message's traceparent)."""
    attributes = {"signout.task_id": message.task_id, "messaging.destination.name": lane.queue}
    context, links = parent_from(message.traceparent), links_to_current()
    with tracer.start_as_current_span("signout.attempt", context, SpanKind.CONSUMER, attributes, links):
        await _process_task(rt, message, lane, message_id)


async def _process_task(rt: WorkerDeps, message: TaskMessage, lane: Lane, message_id: str) -> None:
    record = await rt.tasks.get(message.task_id)
    if record is None:
        log.warning(
            "dropped message for task %s: no record (the sweeper re-drives it if its record lands later)", message.task_id
        )
        return
    if not _belongs(record, message, lane):
        return
    if record.status.is_terminal:
        log.info("task %s is already %s; redelivered message ignored", record.id, record.status.value)
        await count_task(rt, record)  # in case the last run stopped between the two
        await finish(rt, record)
        return
    if await _settled_without_an_attempt(rt, record, message, lane, message_id):
        return
    # A task rescheduled after a failure always gets its attempt (the budget was checked then);
    # one whose last attempt ended without a result (a crash) counts against the budget here.
    crashed = record.status is TaskStatus.IN_PROGRESS
    retry_since = record.retry_since or (utcnow() if crashed else None)
    if crashed and retry_since and _budget_spent(rt, retry_since):
        reason = record.error.message if record.error else "the task's attempts ended without a result"
        await _give_up(rt, record, reason, record.error)
        return
    if not lane.high and not _protected_locally(rt, record, message.user):
        try:
            await _pace(rt)
        except DeferredError as deferred:  # the record stays queued; only the message moves
            await rt.queue.put(lane.queue, message.to_text(), deferred.seconds)
            return
    await _attempt(rt, record, message, lane, message_id, retry_since)


async def _settled_without_an_attempt(
    rt: WorkerDeps, record: TaskRecord, message: TaskMessage, lane: Lane, message_id: str
) -> bool:
    """A copy of the message while another attempt runs looks again later; a task of a cancelled
    job is skipped. True when this delivery is done."""
    if (remaining := _attempt_running_elsewhere(record, message_id)) is not None:
        log.info("task %s: its attempt runs under another message; this copy looks again later", record.id)
        await rt.queue.put(lane.queue, message.to_text(), max(1.0, remaining))
        return True
    if record.job_id and record.status is TaskStatus.QUEUED and await rt.cancel_checks.cancelled(record.job_id):
        reason = f"not signed out: bulk job {record.job_id} was cancelled before this task started"
        await move(rt, record, TaskStatus.SKIPPED, error=TaskError(ErrorCategory.CANCELLED, reason))
        return True
    return False


def _belongs(record: TaskRecord, message: TaskMessage, lane: Lane) -> bool:
    """Whether this message may run this task: the service wrote it (token) for this user, on
    the task's own queue. Otherwise it is dropped, and the task it names is left as it is."""
    if not token_matches(record.token, message.token):
        reason = "its token does not match (it was not written by this service)"
    elif record.user.lower() != message.user.key:
        reason = "it names another user than the task"
    elif (record.job_id is None) != lane.high:
        reason = f"task {'of a bulk job' if record.job_id else 'not of a bulk job'} on queue {lane.queue}"
    else:
        return True
    log.error("dropped message for task %s: %s", record.id, reason)
    return False


async def _attempt(
    rt: WorkerDeps, record: TaskRecord, message: TaskMessage, lane: Lane, message_id: str, retry_since: datetime | None
) -> None:
    budget = attempt_seconds(rt)
    deadline = utcnow() + timedelta(seconds=budget)
    await rt.index.mark_active(record.id, deadline + SWEEP_GRACE)  # first: a crash from here on is swept
    record = await move(
        rt,
        record,
        TaskStatus.IN_PROGRESS,
        attempts=record.attempts + 1,
        next_attempt_at=None,
        attempt_message_id=message_id,
        attempt_deadline=deadline,
        retry_since=retry_since,
    )
    try:
        async with asyncio.timeout(budget - STORAGE_MARGIN_SECONDS):
            outcome = await revoke(rt, record, message.user, lane)
    except GraphError as failure:
        await _after_failure(rt, record, message, failure, lane)
        return
    except TimeoutError:
        overran = GraphError("the attempt did not finish before its deadline", code="AttemptDeadline", transient=True)
        await _after_failure(rt, record, message, overran, lane)
        return
    await move(rt, record, outcome.status, **outcome.changes)


def _attempt_running_elsewhere(record: TaskRecord, message_id: str) -> float | None:
    """Seconds until the attempt under way under another message (a duplicate copy of a redelivered
    page or direct request) has surely ended; None when no other attempt is running. A redelivery of
    the attempt's own message means that attempt ended (crashed)."""
    if record.status is not TaskStatus.IN_PROGRESS or record.attempt_message_id in (None, message_id):
        return None
    deadline = record.attempt_deadline or record.updated_at + timedelta(minutes=5)  # records from before deadlines
    remaining = (deadline - utcnow()).total_seconds()
    return remaining if remaining > 0 else None


def _budget_spent(rt: WorkerDeps, retry_since: datetime) -> bool:
    return utcnow() - retry_since >= rt.settings.retry_budget


def _protected_locally(rt: WorkerDeps, record: TaskRecord, user: UserRef) -> bool:
    """Protected by what is known without Graph: spend no write token on it."""
    known = {user.key, (record.resolved_id or "").lower(), (record.resolved_upn or "").lower()}
    return bool(known & rt.settings.protected_users)


async def revoke(rt: WorkerDeps, record: TaskRecord, user: UserRef, lane: Lane) -> Outcome:
    if user.key in rt.settings.protected_users:
        return _protected(user.value)
    target = await _resolve(rt, record, user, lane)
    resolved = {"resolved_id": target.id, "resolved_upn": target.user_principal_name, "user_type": target.user_type}
    # Compared by object id with PROTECTED_USERS resolved through Graph: whatever the message,
    # page or caller spelled. Undecided (Graph down) raises a transient failure: no revoke.
    protected = await rt.protected.current()
    if protected.covers(target.id, target.user_principal_name):
        return _protected(user.value, resolved)
    if lane.high:
        rt.pacer.reserve(high_priority=True)  # never waits; bulk writes yield to it
    if record.job_id is None:  # from here on a new request for this user is not covered by this task
        await rt.pending.release(user, record.id)
    try:
        revoked = await rt.graph.revoke_sessions(target.id, record.id, lane.priority.value)
    except GraphError as failure:
        if failure.status == 429:
            rt.pacer.throttled(failure.retry_after)
            PACER_RATE.set(rt.pacer.rate)
        raise
    TIME_TO_REVOKE.record((utcnow() - record.created_at).total_seconds(), {"lane": lane_name(record.job_id)})
    rt.pacer.observed(revoked.limit_percentage)
    PACER_RATE.set(rt.pacer.rate)
    valid_from, warnings = await _read_back(rt, record, target.id, lane)
    guest = (target.user_type or "").lower() == "guest"
    verified = not guest and valid_from is not None and valid_from >= record.created_at.replace(microsecond=0)
    if guest:
        warnings.append(GUEST_WARNING)
    elif valid_from is not None and not verified:
        warnings.append(UNVERIFIED_WARNING)
    elif valid_from is None and not warnings:
        warnings.append(NOT_READ_BACK_WARNING)
    changes = {**resolved, "sessions_valid_from": valid_from, "verified": verified, "warnings": tuple(warnings), "error": None}
    return Outcome(TaskStatus.SUCCEEDED, {**changes, "graph_request_id": revoked.request_id})


async def _resolve(rt: WorkerDeps, record: TaskRecord, user: UserRef, lane: Lane) -> GraphUser:
    """Bulk tasks were resolved by their enumeration page (a link the job itself holds); others
    are looked up now."""
    if record.job_id and record.resolved_id:
        return GraphUser(record.resolved_id, record.resolved_upn, record.user_type, None)
    return (await rt.graph.get_user(user.value, record.id, lane.priority.value)).value


async def _pace(rt: WorkerDeps) -> None:
    """Wait for a bulk write token; a long wait reschedules the task instead."""
    wait = rt.pacer.reserve(high_priority=False)
    if wait > MAX_PACING_WAIT_SECONDS:
        rt.pacer.refund()
        raise DeferredError(wait)
    if wait > 0:
        await asyncio.sleep(wait)


async def _read_back(rt: WorkerDeps, record: TaskRecord, user_id: str, lane: Lane) -> tuple[datetime | None, list[str]]:
    """The revocation already happened: a failed read-back must not repeat it."""
    try:
        after = await rt.graph.get_user(user_id, record.id, lane.priority.value)
    except GraphError as failure:
        return None, [f"could not read signInSessionsValidFromDateTime back: {failure.message}"]
    return after.value.sessions_valid_from, []


def _protected(user: str, resolved: dict[str, Any] | None = None) -> Outcome:
    error = TaskError(ErrorCategory.PROTECTED_ACCOUNT, f"{user} is a protected account (PROTECTED_USERS); it was not signed out")
    return Outcome(TaskStatus.SKIPPED, {**(resolved or {}), "error": error})


def classify(failure: GraphError) -> TaskError:
    """Map a Graph failure to the task's error category."""

    def error(category: ErrorCategory, hint: str | None = None) -> TaskError:
        return TaskError(category, failure.message, failure.code, failure.request_id, failure.status, hint)

    if failure.transient:
        return error(ErrorCategory.TRANSIENT)
    if failure.status == HTTPStatus.FORBIDDEN:
        return error(
            ErrorCategory.PERMISSION_DENIED, PERMISSION_HINT.format(permission=failure.permission or "User.RevokeSessions.All")
        )
    if failure.status == HTTPStatus.NOT_FOUND:
        return error(ErrorCategory.USER_NOT_FOUND)
    return error(ErrorCategory.INVALID_REQUEST)


async def _after_failure(rt: WorkerDeps, record: TaskRecord, message: TaskMessage, failure: GraphError, lane: Lane) -> None:
    error = classify(failure)
    if failure.status == 429:
        THROTTLED.add(1, {"scope": failure.permission or "unknown"})
    if error.category is not ErrorCategory.TRANSIENT:
        await move(rt, record, TaskStatus.FAILED, error=error)
        return
    since = record.retry_since or utcnow()
    if _budget_spent(rt, since):
        await _give_up(rt, record, failure.message, error)
        return
    delay = retry_delay(failure.retry_after, record.attempts, rt.settings.retry_base_seconds)
    next_at = utcnow() + timedelta(seconds=delay)
    await rt.index.mark_active(record.id, next_at + SWEEP_GRACE, next_attempt_at=next_at)
    await move(rt, record, TaskStatus.QUEUED, error=error, next_attempt_at=next_at, retry_since=since)
    if record.job_id is None:
        await rt.pending.claim(message.user, record, None)  # queued again: it covers new requests
    # If this put fails the exception makes the host redeliver the original message instead.
    await rt.queue.put(lane.queue, message.to_text(), delay)


async def _give_up(rt: WorkerDeps, record: TaskRecord, reason: str, last: TaskError | None = None) -> None:
    budget = f"{rt.settings.retry_budget_minutes:g} minute(s)"
    message = f"gave up after {record.attempts} attempt(s) over the retry budget of {budget}; last error: {reason}"
    error = TaskError(ErrorCategory.GAVE_UP, message, *((last.code, last.graph_request_id, last.http_status) if last else ()))
    await move(rt, record, TaskStatus.FAILED, error=error)


async def process_poison(rt: WorkerDeps, raw: bytes, message_id: str, lane: Lane) -> None:
    """A message the host gave up on after maxDequeueCount deliveries (storage down, a bug). Its
    task is re-driven while its retry budget lasts, then failed; a message this service did not
    write (no matching token) changes nothing."""
    POISON_MESSAGES.add(1, {"queue": f"{lane.queue}-poison"})
    decoded = decode_for(raw, message_id, lane)
    if isinstance(decoded, JobPageMessage):
        await page_poisoned(rt, decoded)
    elif isinstance(decoded, DirectRequest):  # it never became a task: record that it failed
        failed = _direct_record(decoded, message_id, TaskStatus.FAILED, TaskError(ErrorCategory.GAVE_UP, POISONED))
        with suppress(TaskExistsError):
            state_change(await rt.tasks.create(failed, decoded.user))
    elif isinstance(decoded, CallbackMessage):
        log.error("callback message for task %s was poisoned; its callbacks stay as recorded", decoded.task_id)
    elif isinstance(decoded, TaskMessage):
        await _task_poisoned(rt, decoded, lane)


async def _task_poisoned(rt: WorkerDeps, message: TaskMessage, lane: Lane) -> None:
    record = await rt.tasks.get(message.task_id)
    if record is None or record.status.is_terminal or not _belongs(record, message, lane):
        return
    if record.retry_since is None:  # the budget starts now
        record = await rt.tasks.save(record, replace(record, retry_since=utcnow(), updated_at=utcnow()))
    elif _budget_spent(rt, record.retry_since):
        await move(rt, record, TaskStatus.FAILED, error=TaskError(ErrorCategory.GAVE_UP, POISONED))
        return
    delay = retry_delay(None, record.attempts + 1, max(rt.settings.retry_base_seconds, 5.0))
    log.warning("task %s: its message was poisoned; queued again in %.0f s (retry budget left)", record.id, delay)
    await rt.queue.put(lane.queue, message.to_text(), delay)


async def redrive(rt: WorkerDeps, record: TaskRecord) -> None:
    """Queue the task again (the sweeper: its attempt outlived its deadline, or its message went
    missing). A duplicate message is harmless: a second copy waits for a running attempt, and
    revoking a user twice changes nothing; leaving a user signed in is what must not happen."""
    lane = lane_of(rt, record)
    await rt.index.mark_active(record.id, utcnow() + timedelta(seconds=attempt_seconds(rt)) + SWEEP_GRACE)
    retry = TaskMessage(record.id, parse_user(record.user), record.token, current_traceparent())
    await rt.queue.put(lane.queue, retry.to_text())
    log.warning("task %s (%s) re-driven by the sweeper", record.id, record.status.value)


async def move(rt: WorkerDeps, record: TaskRecord, status: TaskStatus, **changes: Any) -> TaskRecord:
    saved = await rt.tasks.save(record, record.moved_to(status, **changes))
    state_change(saved)
    await count_task(rt, saved)
    if saved.status.is_terminal:
        await finish(rt, saved)
    return saved


async def finish(rt: WorkerDeps, record: TaskRecord) -> None:
    """After the terminal save: queue the callbacks (theirs is a message of its own, so a crash
    here cannot lose them: the active row stays and the sweeper calls this again), then leave
    the active set."""
    if record.job_id is None and await callbacks_pending(rt, record):
        await rt.queue.put(rt.settings.signout_queue, CallbackMessage(record.id, record.token).to_text())
    if record.attempts or record.job_id is None:  # bulk tasks are active only once started
        await rt.index.clear_active(record.id)
