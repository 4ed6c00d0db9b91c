"""Before a mass sign-out starts: a preview of what a bulk job would do, a size limit, and a second
person's approval.

A bulk request is counted first (Graph's `$count`, one call, no enumeration). At or above
BULK_APPROVAL_THRESHOLD users, and for every all-users job while app roles are enforced, the job
is created `awaiting_approval`: nothing is read or revoked until a different principal holding
SignOuts.Approve approves it, and it expires after BULK_APPROVAL_TTL_SECONDS. Approvals need
identities: without enforced app roles such a request is refused. Whatever was approved, the job
stops if the target turns out larger than it was counted (`Job.user_limit`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any, Protocol

from shared.domain.directory import GraphError
from shared.domain.errors import ConcurrentUpdateError
from shared.domain.jobs import Job, estimated_minutes, needs_approval, principal_key, user_limit
from shared.domain.principal import Principal
from shared.domain.requests import BulkRequest
from shared.domain.tasks import utcnow
from shared.usecases.bulk import BulkDeps, create_job, get_job, start_job
from shared.usecases.protection import ProtectedAccounts

log = logging.getLogger("signout.approvals")

SAMPLE_SIZE = 20  # users a preview shows: the first page's first 20
_ATTEMPTS = 10  # ETag races with a concurrent decision or poll


class ApprovalDeps(BulkDeps, Protocol):
    """The ports approvals use: those of bulk jobs, and the protected accounts."""

    @property
    def protected(self) -> ProtectedAccounts: ...


class ApprovalRefusedError(Exception):
    """The request or decision cannot pass the two-person rule; the message says why and what to do."""


class JobDecidedError(Exception):
    """The job does not wait for a decision (any more); the message says what it is instead."""


async def preview(rt: ApprovalDeps, request: BulkRequest, roles_enforced: bool) -> dict[str, Any]:
    """What the job would do, from four reads and no enumeration; creates nothing. Raises
    GraphError when Graph cannot answer (or protection cannot be decided)."""
    group, request_id = request.group_id, str(uuid.uuid4())
    protected = await rt.protected.current()
    total, guests, shielded, first = await asyncio.gather(
        rt.graph.count_users(group, request_id),
        rt.graph.count_users(group, request_id, guests=True),
        rt.graph.count_users(group, request_id, among=protected.object_ids),
        rt.graph.list_users(group, None, request_id, SAMPLE_SIZE),
    )
    settings = rt.settings
    return {
        "target": {"group": group} if group else {"allUsers": True},
        "count": total.value,
        "protectedSkipped": shielded.value,
        "guests": guests.value,
        "sample": [user.user_principal_name or user.id for user in first.value.users[:SAMPLE_SIZE]],
        "estimatedMinutes": estimated_minutes(total.value - shielded.value, settings.graph_writes_per_second),
        "approvalRequired": needs_approval(total.value, group is None, settings.bulk_approval_threshold, roles_enforced),
    }


async def request_job(rt: ApprovalDeps, request: BulkRequest, requested_by: Principal | None, roles_enforced: bool) -> Job:
    """Count the target, then create the job: started, waiting for approval, or failed when Graph
    cannot read the target. Raises ApprovalRefusedError when it needs an approval nobody could give,
    and a transient GraphError when the count is unavailable (nothing is created: unknown size must
    not start)."""
    settings = rt.settings
    all_users = request.group_id is None
    fields = (request.group_id, request.description, request.correlation_id, requested_by)
    if settings.bulk_approval_threshold <= 0 and not (all_users and roles_enforced):
        return await create_job(rt, *fields)  # the size rule is off (unsafe, documented)
    try:
        count = (await rt.graph.count_users(request.group_id, str(uuid.uuid4()))).value
    except GraphError as failure:
        if failure.transient:
            raise
        return await create_job(rt, *fields, error=f"the target could not be read: {describe(failure)}")
    approval = needs_approval(count, all_users, settings.bulk_approval_threshold, roles_enforced)
    if approval and not roles_enforced:
        raise ApprovalRefusedError(
            f"this job would sign out {count} users, at or above BULK_APPROVAL_THRESHOLD ({settings.bulk_approval_threshold}), "
            "so a second person must approve it, and approvals need signed-in callers: turn on App Service "
            "Authentication with REQUIRE_APP_ROLES=true and give approvers the app role SignOuts.Approve, or target "
            f"a smaller group (fewer than {settings.bulk_approval_threshold} users)"
        )
    expires = utcnow() + timedelta(seconds=settings.bulk_approval_ttl_seconds) if approval else None
    limit = user_limit(count, approval, settings.bulk_approval_threshold)
    return await create_job(rt, *fields, count=count, user_limit=limit, approval_expires_at=expires)


def describe(failure: GraphError) -> str:
    hint = f" (the managed identity needs {failure.permission})" if failure.status == 403 and failure.permission else ""
    return f"Graph answered {failure.status} {failure.code}: {failure.message}{hint}"


async def approve(rt: ApprovalDeps, job: Job, approver: Principal | None, comment: str | None, roles_enforced: bool) -> Job:
    """A second person lets the job start. Idempotent; never by the requester."""
    for _ in range(_ATTEMPTS):
        _two_persons(job, approver, roles_enforced)
        if job.approved_at:
            return job
        _still_undecided(job)
        try:
            job = await rt.jobs.replace(replace(job, approved_at=utcnow(), approved_by=approver, decision_comment=comment))
        except ConcurrentUpdateError:  # a poll recorded an expiry, or someone decided meanwhile
            job = await get_job(rt, job.id) or job
            continue
        await start_job(rt, job)
        log.warning("job %s approved by %s: %s users", job.id, principal_key(approver), job.count)
        return job
    raise ConcurrentUpdateError(job.id)


async def reject(rt: ApprovalDeps, job: Job, rejecter: Principal | None, comment: str | None) -> Job:
    """The job ends `rejected`, nobody signed out. Idempotent; the requester may withdraw their own."""
    for _ in range(_ATTEMPTS):
        if job.rejected_at:
            return job
        _still_undecided(job)
        now = utcnow()
        try:
            job = await rt.jobs.replace(
                replace(job, rejected_at=now, rejected_by=rejecter, decision_comment=comment, finished_at=now)
            )
        except ConcurrentUpdateError:
            job = await get_job(rt, job.id) or job
            continue
        log.warning("job %s rejected by %s", job.id, principal_key(rejecter))
        return job
    raise ConcurrentUpdateError(job.id)


def _two_persons(job: Job, approver: Principal | None, roles_enforced: bool) -> None:
    if not roles_enforced or principal_key(approver) is None:
        raise ApprovalRefusedError(
            "approving needs a signed-in caller with the app role SignOuts.Approve: turn on App Service "
            "Authentication with REQUIRE_APP_ROLES=true"
        )
    requester = principal_key(job.requested_by)
    if requester is None or requester == principal_key(approver):
        raise ApprovalRefusedError(
            "the requester of a bulk job cannot approve it: another person (or app) holding SignOuts.Approve must"
        )


def _still_undecided(job: Job) -> None:
    now = utcnow()
    if not job.approval_expires_at:
        raise JobDecidedError(f"bulk job {job.id} needed no approval")
    if job.undecided() and not job.expired(now) and not job.error:
        return
    if job.approved_at:
        raise JobDecidedError(f"bulk job {job.id} was approved at {job.approved_at.isoformat()}; cancel it to stop it")
    what = "rejected" if job.rejected_at else "cancelled" if job.cancelled_at else "failed" if job.error else "expired"
    raise JobDecidedError(f"bulk job {job.id} was {what}: nothing ran; request a new job if it is still needed")
