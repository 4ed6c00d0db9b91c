"""A bulk sign-out job: a group's transitive members, or every user of the tenant; and the rules
that bound its blast radius (who must approve it, how many users it may reach)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from shared.domain.principal import Principal

# Every state a job can be in, as the API shows it.
JOB_STATES = (
    "awaiting_approval",
    "enumerating",
    "running",
    "finished",
    "failed",
    "cancelling",
    "cancelled",
    "rejected",
    "expired",
)
# $count is eventually consistent: a job may meet this many more users than were counted (and
# approved) before it stops, so a group that grows after the count cannot widen the job.
GROWTH_MARGIN = 0.01
MIN_GROWTH_MARGIN = 10


@dataclass(frozen=True)
class Job:
    id: str
    group_id: str | None  # None: every user of the tenant
    description: str
    correlation_id: str | None
    requested_by: Principal | None
    created_at: datetime
    started_at: datetime | None = None  # its first page was read
    pages_done: int = 0
    discovered: int = 0
    next_link: str | None = None
    next_page_queued: bool = False
    enumerated: bool = False
    finished_at: datetime | None = None
    error: str | None = None  # enumeration stopped for good (unknown group, missing permission)
    cancelled_at: datetime | None = None
    cancelled_by: Principal | None = None
    page_failing_since: datetime | None = None  # the next page has failed since then (retry budget)
    page_failures: int = 0
    token: str | None = field(default=None, repr=False)  # carried by the job's own page messages
    etag: str | None = None
    count: int | None = None  # users in the target when it was requested (Graph's $count)
    user_limit: int | None = None  # enumeration stops beyond this many users (None: no limit)
    approval_expires_at: datetime | None = None  # set: the job waits for a second person's approval
    approved_at: datetime | None = None
    approved_by: Principal | None = None
    rejected_at: datetime | None = None
    rejected_by: Principal | None = None
    decision_comment: str | None = None  # what the approver or rejecter said

    def task_id(self, user_id: str) -> str:
        return str(uuid.uuid5(uuid.UUID(self.id), user_id.lower()))

    def undecided(self) -> bool:
        """It needs an approval nobody has given, refused or withdrawn (cancel) yet."""
        return bool(self.approval_expires_at) and not (self.approved_at or self.rejected_at or self.cancelled_at)

    def awaiting_approval(self, now: datetime) -> bool:
        return self.undecided() and self.approval_expires_at is not None and now < self.approval_expires_at

    def expired(self, now: datetime) -> bool:
        return self.undecided() and self.approval_expires_at is not None and now >= self.approval_expires_at

    def may_enumerate(self) -> bool:
        """Its pages may be read: it needed no approval, or got one."""
        return not self.approval_expires_at or bool(self.approved_at)

    def over_limit(self, more_users: int) -> bool:
        return self.user_limit is not None and self.discovered + more_users > self.user_limit


def needs_approval(count: int, all_users: bool, threshold: int, roles_enforced: bool) -> bool:
    """At or above the threshold (0: the size rule is off), and every all-users job while app
    roles are enforced, whatever its size."""
    return (threshold > 0 and count >= threshold) or (all_users and roles_enforced)


def user_limit(count: int, approved: bool, threshold: int) -> int:
    """How many users the job may reach: what was counted (and approved), with a small margin for
    $count's eventual consistency; a job that started without approval stays under the threshold."""
    limit = count + max(MIN_GROWTH_MARGIN, math.ceil(count * GROWTH_MARGIN))
    return limit if approved or threshold <= 0 else min(limit, threshold - 1)


def estimated_minutes(users: int, writes_per_second: float) -> int:
    """Minutes the revocations take at the configured bulk write pace (one write per user)."""
    return math.ceil(max(0, users) / writes_per_second / 60)


def principal_key(principal: Principal | None) -> str | None:
    """Who a principal is, for telling two apart: its object id (a user, or an app's service
    principal), else its app id; None when neither is known."""
    if principal is None:
        return None
    return (principal.object_id or principal.app_id or "").lower() or None
