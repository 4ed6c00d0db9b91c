"""A bulk sign-out job: a group's transitive members, or every user of the tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from shared.domain.principal import Principal


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

    def task_id(self, user_id: str) -> str:
        return str(uuid.uuid5(uuid.UUID(self.id), user_id.lower()))
