"""Admin queries: one task by id, and the remediation log (newest first, paginated)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from shared.domain.identifiers import InvalidIdentifierError, UserRef, parse_user
from shared.domain.messages import is_task_id
from shared.domain.problems import ProblemError, field_error, pointer_to
from shared.domain.tasks import ErrorCategory, TaskRecord, TaskStatus, iso, parse_iso
from shared.usecases.ports import TaskIndex, TaskStore

T = TypeVar("T")
DEFAULT_TOP = 50
MAX_TOP = 100
SCAN_BUDGET = 1000  # index rows read per page at most when a status filter is selective
_ROW_KEY = re.compile(r"\d{13}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FILTERS = ("user", "correlationId", "jobId", "source", "requestedBy", "status", "verified", "category", "since", "until")
KNOWN_PARAMS = frozenset({*FILTERS, "top", "continuationToken", "format", "code"})
# Where a task came from: the API, each alert kind, the poison/queue path and bulk jobs.
SOURCES = ("api", "azure_monitor", "sentinel_alert", "sentinel_incident", "defender_xdr", "queue", "bulk")
MAX_CORRELATION_ID = 128
JOINS_SHOWN = 20


class QueryDeps(Protocol):
    """The ports queries use."""

    @property
    def tasks(self) -> TaskStore: ...
    @property
    def index(self) -> TaskIndex: ...


@dataclass(frozen=True)
class LogQuery:
    user: UserRef | None = None
    correlation_id: str | None = None
    status: TaskStatus | None = None
    verified: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    top: int = DEFAULT_TOP
    after: str | None = None
    job_id: str | None = None
    source: str | None = None
    requested_by: str | None = None  # an object id or an app id
    category: ErrorCategory | None = None

    def matches(self, task: TaskRecord) -> bool:
        """The filters read from the task record, over the bounded scan of one index partition."""
        return (
            (self.status is None or task.status is self.status)
            and (self.verified is None or bool(task.verified) is self.verified)
            and (self.job_id is None or task.job_id == self.job_id)
            and (self.source is None or task.source == self.source)
            and (self.requested_by is None or _requested_by(task) & {self.requested_by} != set())
            and (self.category is None or (task.error is not None and task.error.category is self.category))
        )

    def as_params(self) -> dict[str, str]:
        params = {
            "user": self.user.value if self.user else None,
            "correlationId": self.correlation_id,
            "jobId": self.job_id,
            "source": self.source,
            "requestedBy": self.requested_by,
            "status": self.status.value if self.status else None,
            "verified": None if self.verified is None else str(self.verified).lower(),
            "category": self.category.value if self.category else None,
            "since": iso(self.since),
            "until": iso(self.until),
            "top": str(self.top),
        }
        return {key: value for key, value in params.items() if value}


@dataclass(frozen=True)
class LogResult:
    tasks: list[TaskRecord]
    continuation_token: str | None


async def get_task(rt: QueryDeps, task_id: str) -> TaskRecord:
    if not is_task_id(task_id):
        raise ProblemError(400, "Invalid task id", "a task id is a lowercase GUID", [field_error("/id", "is not a task id")])
    task = await rt.tasks.get(task_id)
    if task is None:
        raise ProblemError(404, "Task not found", f"no sign-out task {task_id}")
    return task


async def joined_requests(rt: QueryDeps, task: TaskRecord) -> dict[str, object]:
    """The requests that joined the task while it was queued (the first 20) and their count.
    Their callback URLs carry a secret (`sig`): only their delivery state is shown."""
    joins, count = await rt.tasks.joins(task.id, JOINS_SHOWN)
    shown = [{key: value for key, value in joined.items() if key != "callbackUrl"} for _, joined in joins]
    return {"joinedRequests": shown, "joinedCount": count}


def parse_log_query(params: dict[str, str]) -> LogQuery:
    errors = [field_error(pointer_to(name), "is not a known query parameter") for name in sorted(set(params) - KNOWN_PARAMS)]
    user = _parse(params, "user", parse_user, (InvalidIdentifierError,), errors)
    correlation_id = _parse(
        params, "correlationId", _correlation_id, (ValueError,), errors, f"must be 1-{MAX_CORRELATION_ID} printable characters"
    )
    if user is not None and correlation_id is not None:
        errors.append(field_error("/correlationId", "give either user or correlationId, not both"))
    verified = _parse(params, "verified", _boolean, (ValueError,), errors, "must be true or false")
    status = _parse(
        params, "status", TaskStatus, (ValueError,), errors, f"must be one of {', '.join(s.value for s in TaskStatus)}"
    )
    since = _parse(
        params, "since", _moment, (ValueError, OverflowError), errors, "must be an ISO 8601 date-time from 1970 to 2285"
    )
    until = _parse(
        params, "until", _moment, (ValueError, OverflowError), errors, "must be an ISO 8601 date-time from 1970 to 2285"
    )
    job_id = _parse(params, "jobId", _guid, (ValueError,), errors, "must be a GUID")
    source = _parse(params, "source", _source, (ValueError,), errors, f"must be one of {', '.join(SOURCES)}")
    requested_by = _parse(params, "requestedBy", _guid, (ValueError,), errors, "must be an object id or app id (a GUID)")
    category = _parse(
        params, "category", ErrorCategory, (ValueError,), errors, f"must be one of {', '.join(c.value for c in ErrorCategory)}"
    )
    _parse(params, "format", _format, (ValueError,), errors, "must be json or csv")
    top, after = page_params(params, errors)
    return LogQuery(user, correlation_id, status, verified, since, until, top, after, job_id, source, requested_by, category)


def page_params(params: dict[str, str], errors: list[dict[str, Any]]) -> tuple[int, str | None]:
    """`top` and `continuationToken`, the paging every list endpoint shares; raises the 400
    problem with every error found in the query so far."""
    top = _parse(params, "top", int, (ValueError,), errors, f"must be an integer from 1 to {MAX_TOP}")
    if top is not None and not 1 <= top <= MAX_TOP:
        errors.append(field_error("/top", f"must be an integer from 1 to {MAX_TOP}"))
    after = _parse(params, "continuationToken", _decode_token, (ValueError,), errors, "is not a token this API issued")
    if errors:
        raise ProblemError(400, "Invalid query", f"{len(errors)} problem(s) in the query", errors)
    return top or DEFAULT_TOP, after


async def read_log(rt: QueryDeps, query: LogQuery) -> LogResult:
    tasks: list[TaskRecord] = []
    after, scanned = query.after, 0
    while len(tasks) < query.top and scanned < SCAN_BUDGET:
        page = await rt.index.log_page(query.user, query.correlation_id, query.until, query.since, after, query.top - len(tasks))
        scanned += len(page.task_ids)
        records = await rt.tasks.get_many(page.task_ids)
        tasks += [task for task in records if query.matches(task)]
        after = page.last_row_key
        if after is None:
            break
    return LogResult(tasks, _encode_token(after) if after else None)


def _parse(
    params: dict[str, str],
    name: str,
    convert: Callable[[str], T],
    errors_to_catch: tuple[type[Exception], ...],
    errors: list[dict[str, Any]],
    message: str | None = None,
) -> T | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return convert(raw)
    except errors_to_catch as exc:
        errors.append(field_error(f"/{name}", message or str(exc)))
        return None


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2286, 1, 1, tzinfo=UTC)  # the log's time keys hold 13 digits of milliseconds


def _correlation_id(text: str) -> str:
    if len(text) > MAX_CORRELATION_ID or not text.isprintable():
        raise ValueError(text)
    return text


def _guid(text: str) -> str:
    guid = text.lower()  # object ids, app ids and job ids: a GUID in either case
    if not is_task_id(guid):
        raise ValueError(text)
    return guid


def _source(text: str) -> str:
    if text not in SOURCES:
        raise ValueError(text)
    return text


def _format(text: str) -> str:
    if text not in ("json", "csv"):
        raise ValueError(text)
    return text


def _requested_by(task: TaskRecord) -> set[str]:
    by = task.requested_by
    return {(by.object_id or "").lower(), (by.app_id or "").lower()} if by else set()


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def _moment(text: str) -> datetime:
    moment = parse_iso(text)
    if moment is None or not EARLIEST <= moment < LATEST:
        raise ValueError(text)
    return moment


def _encode_token(row_key: str) -> str:
    return base64.urlsafe_b64encode(row_key.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        row_key = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(token) from exc
    if not _ROW_KEY.fullmatch(row_key):
        raise ValueError(token)
    return row_key
