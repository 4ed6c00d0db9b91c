"""The row-key scheme of the one table, in one place.

| row              | PartitionKey            | RowKey                     | serves                                  |
|------------------|-------------------------|----------------------------|-----------------------------------------|
| task record      | <task id>               | "task"                     | point read by id, ETag-guarded updates  |
| joined request   | <task id>               | join-<time>-<uuid>         | requests coalesced into the task        |
| remediation log  | "log"                   | <inv. time>-<task id>      | newest first, time range by key         |
| per-user log     | user-<sha256(user)>     | <inv. time>-<task id>      | a user's tasks, newest first            |
| pending slot     | user-<sha256(user)>     | "pending"                  | the user's task still `queued`, if any  |
| correlation log  | corr-<sha256(id)>       | <inv. time>-<task id>      | tasks by (joined) correlation id        |
| active task      | "active"                | <task id>                  | the sweeper: when it must have moved on |
| idempotency key  | idem-<sha256(scope:key)>| "request"                  | replays within 24 h                     |
| idempotency log  | "idemlog"               | <inv. time>-<idem partition>| retention of keys                      |
| bulk job         | <job id>                | "job"; page-<n>            | the job (ETag-guarded); each page's link |
| job index        | "jobs"                  | <inv. time>-<job id>       | retention of jobs                       |
| job counters     | jobcount-<job id>       | start-/done-<task>, count-<shard> | exact counts                     |

Index rows are written once and never change; the task record is the only mutable truth of a
task. Every filter is parameterised (no OData built from input).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from shared.domain.tasks import TaskRecord

LOG_PARTITION = "log"
ACTIVE_PARTITION = "active"
IDEMPOTENCY_LOG = "idemlog"
JOBS_PARTITION = "jobs"
JOIN_PREFIX = "join-"
JOIN_END = "join."  # '.' sorts right after '-': the end of the join rows' range
TASK_ROW = "task"
JOB_ROW = "job"
PENDING_ROW = "pending"
IDEMPOTENCY_ROW = "request"
_MAX_MS = 9_999_999_999_999  # 13 digits: inverted epoch milliseconds sort newest first


def time_key(moment: datetime) -> str:
    return f"{_MAX_MS - int(moment.timestamp() * 1000):013d}"


def index_row_key(created_at: datetime, row_id: str) -> str:
    return f"{time_key(created_at)}-{row_id}"


def correlation_partition(correlation_id: str) -> str:
    return "corr-" + hashlib.sha256(correlation_id.encode()).hexdigest()[:40]


def idempotency_partition(key: str) -> str:
    return "idem-" + hashlib.sha256(key.encode()).hexdigest()


def counter_partition(job_id: str) -> str:
    return f"jobcount-{job_id}"


def page_row(page: int) -> str:
    return f"page-{page:06d}"


def index_row(partition: str, record: TaskRecord) -> dict[str, Any]:
    return {
        "PartitionKey": partition,
        "RowKey": index_row_key(record.created_at, record.id),
        "TaskId": record.id,
        "User": record.user,
    }
