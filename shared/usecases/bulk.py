"""Bulk sign-out jobs: a group's transitive members, or every user of the tenant.

Fan-out scales to any tenant: the job's first page message is queued when the job is created;
each page invocation reads one Graph page (999 users), creates that page's tasks (ids derived
from job + user, so a redelivered page creates no duplicates), records the page on the job
(ETag-guarded), then queues the next page. No invocation runs long and memory stays flat; a
crash resumes at the page that was not recorded. A page is read only while the bulk queue holds
fewer than BULK_BACKLOG_PAGES pages of messages, so enumeration keeps just ahead of the paced
workers. Tasks go to the bulk queue, apart from the alert-driven ones, and their Graph calls say
`x-ms-throttle-priority: low`. A job can be cancelled; its unstarted tasks are then skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from shared.domain.directory import GraphError, PageUser, UserPage
from shared.domain.errors import ConcurrentUpdateError
from shared.domain.identifiers import parse_user
from shared.domain.jobs import Job
from shared.domain.messages import JobPageMessage, TaskMessage, new_token, token_matches
from shared.domain.principal import Principal
from shared.domain.retry import retry_delay
from shared.domain.tasks import TaskRecord, TaskStatus, iso, utcnow
from shared.settings import Settings
from shared.usecases.job_counts import JobCounts
from shared.usecases.ports import CounterStore, Graph, JobStore, TaskIndex, TaskStore, WorkQueue
from shared.usecases.tracing import current_traceparent

log = logging.getLogger("signout.jobs")


class BulkDeps(Protocol):
    """The ports bulk jobs use."""

    @property
    def settings(self) -> Settings: ...
    @property
    def jobs(self) -> JobStore: ...
    @property
    def tasks(self) -> TaskStore: ...
    @property
    def index(self) -> TaskIndex: ...
    @property
    def queue(self) -> WorkQueue: ...
    @property
    def graph(self) -> Graph: ...
    @property
    def job_counts(self) -> JobCounts: ...
    @property
    def counters(self) -> CounterStore: ...


OUTCOMES = ("succeeded", "failed", "skipped")
# Task creation runs beside the workers in the same process: a few calls at a time keep its share
# of the CPU small (bench.quota --users 2000, before the backlog limit: 4 in flight gave 0.92 of
# the quota, 32 gave 0.87).
_PARALLEL = 4


async def create_job(
    rt: BulkDeps,
    group_id: str | None,
    description: str,
    correlation_id: str | None,
    requested_by: Principal | None,
    *,
    count: int | None = None,
    user_limit: int | None = None,
    approval_expires_at: datetime | None = None,
    error: str | None = None,
) -> Job:
    """A job that starts now; or, with `approval_expires_at`, waits for a second person's approval
    (nothing is read or revoked until then); or, with `error`, has failed already."""
    now = utcnow()
    job = Job(
        str(uuid.uuid4()),
        group_id,
        description,
        correlation_id,
        requested_by,
        now,
        token=new_token(),
        count=count,
        user_limit=user_limit,
        approval_expires_at=approval_expires_at,
        error=error,
        finished_at=now if error else None,
    )
    job = await rt.jobs.create(job)
    if approval_expires_at is None and error is None:
        await start_job(rt, job)
    target = f"group {group_id}" if group_id else "all users"
    state = "failed" if error else "awaiting approval" if approval_expires_at else "started"
    log.info("job %s created: target=%s count=%s %s", job.id, target, count, state)
    return job


async def start_job(rt: BulkDeps, job: Job) -> None:
    """Queue the job's first page: enumeration begins."""
    await rt.queue.put(rt.settings.bulk_page_queue, JobPageMessage(job.id, 1, job.token).to_text())


async def get_job(rt: BulkDeps, job_id: str) -> Job | None:
    return await rt.jobs.get(job_id)


async def process_page(rt: BulkDeps, message: JobPageMessage) -> None:
    """Record the page on the job, create its tasks, then queue the next page, which is read once
    the bulk queue's backlog allows (without a backlog limit the next page is queued first and
    enumeration runs ahead of its tasks). A redelivered page reads its users again from the link
    stored for it and creates whatever is missing (task ids are per job+user). The link is never
    taken from the message: the job row holds the next one, and each page's own row holds its."""
    job = await get_job(rt, message.job_id)
    if job is None or not token_matches(job.token, message.token):
        log.error(
            "page %d of job %s dropped: no such job, or the message was not written by this service", message.page, message.job_id
        )
        return
    if not await _page_wanted(rt, job, message):
        return
    link = await _page_link(rt, job, message.page)
    if link is _MISSING:
        log.error("job %s: no link stored for page %d; dropped", job.id, message.page)
        return
    try:
        page = (await rt.graph.list_users(job.group_id, link, job.id, rt.settings.graph_page_size)).value
    except GraphError as failure:
        await _page_failed(rt, job, message, failure)
        return
    if message.page == job.pages_done + 1 and job.over_limit(len(set(page.users))):
        await _stop(rt, job, f"the target has more users than the {job.count} counted when the job was requested")
        return  # a target that grew after it was counted (and approved) must not widen the job
    if message.page == job.pages_done + 1:
        job = await _record_page(rt, job, message.page, link, page)
    if message.page == job.pages_done and not rt.settings.bulk_backlog_pages:
        job = await _queue_next_page(rt, job)
    await _create_tasks(rt, job, list(dict.fromkeys(page.users)))
    if message.page == job.pages_done:
        await _queue_next_page(rt, job)  # after this page's tasks, so that its backlog check sees them


async def _page_wanted(rt: BulkDeps, job: Job, message: JobPageMessage) -> bool:
    if not job.may_enumerate():
        log.error("job %s has not been approved; page %d dropped", job.id, message.page)
        return False
    if job.error:
        log.warning("job %s stopped (%s); page %d dropped", job.id, job.error, message.page)
        return False
    if job.cancelled_at and message.page > job.pages_done:
        log.info("job %s was cancelled; page %d is not read", job.id, message.page)
        return False  # a page recorded before the cancel still gets its tasks: they are skipped
    if message.page > job.pages_done + 1:
        log.warning("job %s: page %d is ahead of page %d; dropped", job.id, message.page, job.pages_done + 1)
        return False
    if message.page == job.pages_done + 1 and (wait := await _backlog_wait(rt)):
        await rt.queue.put(rt.settings.bulk_page_queue, message.to_text(), wait)
        return False
    return True


_MISSING = "missing"  # no link was stored for a page that needs one


async def _page_link(rt: BulkDeps, job: Job, page: int) -> str | None:
    """The link that reads `page`: None for the first page (built from the job's target), the
    job's next link for the page after the last recorded one, else the link stored for it."""
    if page == 1:
        return None
    if page == job.pages_done + 1:
        return job.next_link or _MISSING
    return await rt.jobs.page_link(job.id, page) or _MISSING


async def _record_page(rt: BulkDeps, job: Job, number: int, link: str | None, page: UserPage) -> Job:
    if link is not None:  # first, so that a redelivery of this page finds its link
        await rt.jobs.save_page_link(job.id, number, link)
    job = replace(
        job,
        pages_done=number,
        next_link=page.next_link,
        next_page_queued=False,
        started_at=job.started_at or utcnow(),
        enumerated=page.next_link is None,
        discovered=job.discovered + len(set(page.users)),
        page_failing_since=None,
        page_failures=0,
    )
    job = await rt.jobs.replace(job)
    log.info("job %s: page %d, %d users (%d so far)", job.id, number, len(page.users), job.discovered)
    return job


async def _page_failed(rt: BulkDeps, job: Job, message: JobPageMessage, failure: GraphError) -> None:
    """A transient failure reads the page again later (Retry-After, else backoff) until the
    retry budget is spent; anything else stops the job with the reason."""
    if not failure.transient:
        hint = f" (the managed identity needs {failure.permission})" if failure.status == 403 and failure.permission else ""
        await _stop(rt, job, f"Graph answered {failure.status} {failure.code}: {failure.message}{hint}")
        return
    since = job.page_failing_since or utcnow()
    if utcnow() - since >= rt.settings.retry_budget:
        await _stop(
            rt, job, f"Graph kept failing for the retry budget ({rt.settings.retry_budget_minutes:g} minutes): {failure.message}"
        )
        return
    delay = retry_delay(failure.retry_after, job.page_failures + 1, rt.settings.retry_base_seconds)
    with suppress(ConcurrentUpdateError):  # a concurrent copy recorded it: its own count is as good
        await rt.jobs.replace(replace(job, page_failing_since=since, page_failures=job.page_failures + 1))
    log.warning("job %s: page %d failed (%s); read again in %.0f s", job.id, message.page, failure.code, delay)
    await rt.queue.put(rt.settings.bulk_page_queue, message.to_text(), delay)


async def _backlog_wait(rt: BulkDeps) -> float:
    """Seconds until the next page is worth reading: 0 while the bulk queue holds fewer than
    BULK_BACKLOG_PAGES pages of messages (every job's tasks, waiting, deferred or running). So
    enumeration keeps just ahead of the paced workers: queues stay short, a cancel leaves little
    to skip, and creating tasks does not crowd a job's first minutes."""
    limit = rt.settings.bulk_backlog_pages * rt.settings.graph_page_size
    if not limit:
        return 0.0
    waiting = await rt.queue.approximate_count(rt.settings.bulk_queue)
    if waiting < limit:
        return 0.0
    # Look again when the backlog should be under the limit at the write pace, within a minute.
    return min(60.0, max(1.0, (waiting - limit + 1) / rt.settings.graph_writes_per_second))


async def page_poisoned(rt: BulkDeps, message: JobPageMessage) -> None:
    """A page whose message failed every delivery (storage down, a bug): read again later while
    the retry budget lasts, then the job stops there, and says so. A message this service did not
    write changes nothing."""
    job = await get_job(rt, message.job_id)
    if job is None or not token_matches(job.token, message.token) or job.error or job.enumerated:
        return
    poisoned = GraphError("its page message failed repeatedly and was moved to the poison queue", code="Poisoned", transient=True)
    await _page_failed(rt, job, message, poisoned)


async def _stop(rt: BulkDeps, job: Job, reason: str) -> None:
    """Enumeration stopped for good: the job is failed; tasks already queued still run."""
    error = f"enumeration stopped at page {job.pages_done + 1}: {reason}"
    log.error("job %s: %s", job.id, error)
    with suppress(ConcurrentUpdateError):
        await rt.jobs.replace(replace(job, error=error, finished_at=utcnow()))


async def _queue_next_page(rt: BulkDeps, job: Job) -> Job:
    if job.enumerated or job.next_page_queued:
        return job
    await rt.queue.put(rt.settings.bulk_page_queue, JobPageMessage(job.id, job.pages_done + 1, job.token).to_text())
    queued = replace(job, next_page_queued=True)
    try:
        return await rt.jobs.replace(queued)
    except ConcurrentUpdateError:  # a concurrent copy of this page recorded it
        return queued


async def _create_tasks(rt: BulkDeps, job: Job, users: list[PageUser]) -> None:
    now = utcnow()
    records = [
        TaskRecord(
            id=job.task_id(user.id),
            user=user.id,
            status=TaskStatus.QUEUED,
            created_at=now,
            updated_at=now,
            description=job.description,
            source="bulk",
            job_id=job.id,
            correlation_id=job.correlation_id,
            requested_by=job.requested_by,
            resolved_id=user.id,
            resolved_upn=user.user_principal_name,
            user_type=user.user_type,
            token=new_token(),
        )
        for user in users
    ]
    limit = asyncio.Semaphore(_PARALLEL)

    async def one(record: TaskRecord) -> TaskRecord:
        async with limit:
            user = parse_user(record.user)
            stored, created = await rt.tasks.create_bulk_task(record, user)
            if created or (stored.status is TaskStatus.QUEUED and not stored.attempts):  # never started
                message = TaskMessage(record.id, user, stored.token, current_traceparent())  # the job's trace
                await rt.queue.put(rt.settings.bulk_queue, message.to_text())
            return stored

    stored = await asyncio.gather(*(one(record) for record in records))
    await rt.index.add_log_rows(list(stored))  # keyed by each record's own creation time: upserts


class JobFinishedError(Exception):
    """The job has finished: there is nothing left to cancel."""


async def cancel_job(rt: BulkDeps, job: Job, cancelled_by: Principal | None) -> Job:
    """Stop the job: no further page is read, and its tasks that have not started are skipped
    when their message comes (within CANCEL_CHECK_SECONDS); running ones finish. Idempotent."""
    for _ in range(10):
        if job.cancelled_at:
            return job
        if job.error or job.finished_at or (await job_report(rt, job))[1]:
            raise JobFinishedError(job.id)
        cancelled = replace(job, cancelled_at=utcnow(), cancelled_by=cancelled_by)
        try:
            return await rt.jobs.replace(cancelled)
        except ConcurrentUpdateError:  # a page was recorded meanwhile: look again
            job = await get_job(rt, job.id) or job
    raise ConcurrentUpdateError(job.id)


CANCEL_CHECK_SECONDS = 5.0
MAX_JOBS_REMEMBERED = 1000


class CancelChecks:
    """Whether a job was cancelled, read at most every CANCEL_CHECK_SECONDS per process, so that
    100,000 tasks do not read their job 100,000 times. A cancel is never undone. One per process,
    owned by the composition root."""

    def __init__(self, jobs: JobStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._jobs = jobs
        self._clock = clock
        self._checked: dict[str, tuple[float, bool]] = {}  # job id -> (time read, cancelled)

    async def cancelled(self, job_id: str) -> bool:
        now = self._clock()
        checked = self._checked.get(job_id)
        if checked and (checked[1] or now - checked[0] < CANCEL_CHECK_SECONDS):
            return checked[1]
        job = await self._jobs.get(job_id)
        if len(self._checked) > MAX_JOBS_REMEMBERED:
            self._checked.clear()
        self._checked[job_id] = (now, bool(job and job.cancelled_at))
        return self._checked[job_id][1]


async def count_task(rt: BulkDeps, record: TaskRecord) -> None:
    """Count a bulk task's start and its outcome on its job, exactly once each."""
    if record.job_id is None:
        return
    if record.status is TaskStatus.IN_PROGRESS:
        await rt.job_counts.add(record.job_id, f"start-{record.id}", "started")
    elif record.status.is_terminal:
        done = rt.job_counts.add(record.job_id, f"done-{record.id}", record.status.value)
        if record.attempts == 0:  # finished without starting (cancelled, poisoned): it left the queue too
            await asyncio.gather(rt.job_counts.add(record.job_id, f"start-{record.id}", "started"), done)
        else:
            await done


async def job_report(rt: BulkDeps, job: Job) -> tuple[dict[str, Any], bool]:
    """The job as the API shows it, and whether it has finished."""
    counts = await rt.counters.totals(job.id)
    done = sum(counts.get(outcome, 0) for outcome in OUTCOMES)
    started = max(counts.get("started", 0), done)
    now = utcnow()
    finished = (
        bool(job.error or job.rejected_at)
        or job.expired(now)
        or ((job.enumerated or bool(job.cancelled_at)) and done >= job.discovered)
    )
    if finished and job.finished_at is None:
        job = replace(job, finished_at=now)
        with suppress(ConcurrentUpdateError):  # a concurrent poll (or a decision) recorded it first
            await rt.jobs.replace(job)
    report = {
        "id": job.id,
        "target": {"group": job.group_id} if job.group_id else {"allUsers": True},
        "state": _state(job, finished),
        "error": job.error,
        "description": job.description,
        "correlationId": job.correlation_id,
        "requestedBy": _principal(job.requested_by),
        "count": job.count,
        "userLimit": job.user_limit,
        "counts": {
            "discovered": job.discovered,
            "queued": job.discovered - started,
            "inProgress": started - done,
            **{outcome: counts.get(outcome, 0) for outcome in OUTCOMES},
        },
        "pagesEnumerated": job.pages_done,
        "createdAt": iso(job.created_at),
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.finished_at),
        "cancelledAt": iso(job.cancelled_at),
        "cancelledBy": _principal(job.cancelled_by),
        "approvalExpiresAt": iso(job.approval_expires_at),
        "approvedAt": iso(job.approved_at),
        "approvedBy": _principal(job.approved_by),
        "rejectedAt": iso(job.rejected_at),
        "rejectedBy": _principal(job.rejected_by),
        "decisionComment": job.decision_comment,
    }
    return report, finished


def _principal(principal: Principal | None) -> dict[str, str] | None:
    return principal.as_api() if principal else None


def _state(job: Job, finished: bool) -> str:
    if job.error or job.rejected_at:
        return "failed" if job.error else "rejected"
    if job.cancelled_at:
        return "cancelled" if finished else "cancelling"
    if job.undecided():
        return "expired" if finished else "awaiting_approval"
    if finished:
        return "finished"
    return "running" if job.enumerated else "enumerating"
