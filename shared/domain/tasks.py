"""The sign-out task: its statuses, allowed transitions, error categories and record shape."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from shared.domain.principal import Principal


class TaskStatus(str, Enum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED})

# queued -> in_progress when a worker picks it up; in_progress -> in_progress when a
# message is redelivered after a crash; in_progress -> queued when a transient error
# reschedules it; queued/in_progress -> failed when its message is poisoned.
ALLOWED_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.IN_PROGRESS, TaskStatus.FAILED, TaskStatus.SKIPPED}),  # skipped: job cancelled
    TaskStatus.IN_PROGRESS: frozenset(
        {TaskStatus.IN_PROGRESS, TaskStatus.QUEUED, TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED}
    ),
    TaskStatus.SUCCEEDED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.SKIPPED: frozenset(),
}


class InvalidTransitionError(Exception):
    def __init__(self, current: TaskStatus, wanted: TaskStatus) -> None:
        super().__init__(f"cannot move a task from {current.value} to {wanted.value}")
        self.current = current
        self.wanted = wanted


class ErrorCategory(str, Enum):
    PERMISSION_DENIED = "permission_denied"
    USER_NOT_FOUND = "user_not_found"
    INVALID_REQUEST = "invalid_request"
    GAVE_UP = "gave_up"
    PROTECTED_ACCOUNT = "protected_account"
    CANCELLED = "cancelled"  # its bulk job was cancelled before the task started
    TRANSIENT = "transient"  # last error of a task that is being retried


@dataclass(frozen=True)
class TaskError:
    category: ErrorCategory
    message: str
    code: str | None = None
    graph_request_id: str | None = None
    http_status: int | None = None
    hint: str | None = None

    def to_api(self) -> dict[str, Any]:
        data = {
            "category": self.category.value,
            "code": self.code,
            "message": self.message,
            "graphRequestId": self.graph_request_id,
            "httpStatus": self.http_status,
            "hint": self.hint,
        }
        return {key: value for key, value in data.items() if value is not None}


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)  # Python 3.11 reads a trailing Z
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TaskRecord:
    id: str
    user: str
    status: TaskStatus
    created_at: datetime
    updated_at: datetime
    description: str = ""
    source: str = "api"
    requested_by: Principal | None = None
    correlation_id: str | None = None
    alert_id: str | None = None  # the alert or incident that asked for this sign-out
    job_id: str | None = None  # the bulk job this task belongs to
    callback_url: str | None = None  # Logic Apps HTTP Webhook callback, POSTed once terminal
    callback: dict[str, Any] | None = None  # outcome of that POST: {status, attempts, lastError}
    resolved_id: str | None = None
    resolved_upn: str | None = None
    user_type: str | None = None
    completed_at: datetime | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    attempt_message_id: str | None = None  # the queue message running the current attempt
    attempt_deadline: datetime | None = None  # the current attempt has ended (or crashed) by then
    retry_since: datetime | None = None  # first transient failure or crashed attempt: the retry budget starts
    token: str | None = field(default=None, repr=False)  # secret carried by the task's own queue messages; never shown
    error: TaskError | None = None
    graph_request_id: str | None = None  # Graph's request-id of the revoke call
    sessions_valid_from: datetime | None = None
    verified: bool | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    etag: str | None = field(default=None, compare=False)

    def moved_to(self, status: TaskStatus, **changes: Any) -> TaskRecord:
        """The record after a transition; raises InvalidTransitionError for a forbidden one."""
        if status not in ALLOWED_TRANSITIONS[self.status]:
            raise InvalidTransitionError(self.status, status)
        now = utcnow()
        completed = now if status.is_terminal else None
        return replace(self, status=status, updated_at=now, completed_at=completed, **changes)

    def to_api(self, status_url: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "user": self.user,
            "status": self.status.value,
            "description": self.description,
            "source": self.source,
            "requestedBy": self.requested_by.as_api() if self.requested_by else None,
            "correlationId": self.correlation_id,
            "alertId": self.alert_id,
            "jobId": self.job_id,
            "callback": self.callback,
            "resolvedUser": {"id": self.resolved_id, "userPrincipalName": self.resolved_upn, "userType": self.user_type}
            if self.resolved_id
            else None,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "completedAt": iso(self.completed_at),
            "attempts": self.attempts,
            "nextAttemptAt": iso(self.next_attempt_at),
            "error": self.error.to_api() if self.error else None,
            "graphRequestId": self.graph_request_id,
            "sessionsValidFrom": iso(self.sessions_valid_from),
            "verified": self.verified,
            "warnings": list(self.warnings),
        }
        if status_url:
            data["statusUrl"] = status_url
        return data
