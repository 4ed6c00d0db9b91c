"""The one structured log record per task state change (the audit trail in Application Insights);
never tokens, keys, URLs with secrets in them, or message bodies.

Each field is a top-level attribute of the record (`extra`), which OpenTelemetry's logging handler
exports as a log attribute: a column of customDimensions in Application Insights. The Functions
worker's own handler forwards only the message text, so the text repeats the fields."""

from __future__ import annotations

import hashlib
import logging
import os

from shared.domain.tasks import TaskRecord
from shared.usecases.tracing import TASKS, lane_name

log = logging.getLogger("signout.task")

# The attributes a state-change record may carry: the workbook's queries are checked against them.
STATE_CHANGE_ATTRIBUTES = (
    "taskId",
    "status",
    "user",
    "userHash",
    "correlationId",
    "jobId",
    "source",
    "requestedBy",
    "alertId",
    "attempts",
    "graphRequestId",
    "errorCategory",
    "timeToRevokeSeconds",
)


def user_fields(user: str) -> dict[str, str]:
    """LOG_USER_IDENTIFIERS=upn logs the user as requested; anything else logs only a hash (fail
    closed: a mistyped setting never logs more than asked)."""
    digest = hashlib.sha256(user.strip().lower().encode()).hexdigest()[:16]
    if os.environ.get("LOG_USER_IDENTIFIERS", "upn").strip().lower() == "upn":
        return {"user": user, "userHash": digest}
    return {"userHash": digest}


def _requested_by(record: TaskRecord) -> str | None:
    who = record.requested_by
    return (who.object_id or who.app_id or who.display_name) if who else None


def _seconds_to_succeed(record: TaskRecord) -> float | None:
    """Accepted to recorded as succeeded (the revoke and its read-back): the percentiles the
    workbook and the p95 alert compute (a histogram reaches Application Insights pre-aggregated)."""
    if record.status.value != "succeeded":
        return None
    return round(((record.completed_at or record.updated_at) - record.created_at).total_seconds(), 3)


def state_change_fields(record: TaskRecord, graph_request_id: str | None = None) -> dict[str, str | int | float]:
    error = record.error
    who = user_fields(record.user)
    fields: dict[str, str | int | float | None] = {
        "taskId": record.id,
        "status": record.status.value,
        "user": who.get("user"),
        "correlationId": record.correlation_id,
        "jobId": record.job_id,
        "source": record.source,
        "requestedBy": _requested_by(record),
        "alertId": record.alert_id,
        "attempts": record.attempts,
        # the revoke's request-id on success, the failed call's on an error
        "graphRequestId": graph_request_id or record.graph_request_id or (error.graph_request_id if error else None),
        "errorCategory": error.category.value if error else None,
        "userHash": who["userHash"],
        "timeToRevokeSeconds": _seconds_to_succeed(record),
    }
    return {key: value for key, value in fields.items() if value is not None}


def _count(record: TaskRecord) -> None:
    """signout.tasks: one per task that ended (its terminal state change is logged once)."""
    category = record.error.category.value if record.error else "none"
    lane = lane_name(record.job_id)
    TASKS.add(1, {"outcome": record.status.value, "category": category, "source": record.source, "lane": lane})


def state_change(record: TaskRecord, note: str = "", graph_request_id: str | None = None) -> None:
    present = state_change_fields(record, graph_request_id)
    # repr() for anything unprintable: no value can start a forged log line.
    text = " ".join(f"{key}={value if str(value).isprintable() else repr(value)}" for key, value in present.items())
    if record.status.is_terminal:
        _count(record)
    level = logging.WARNING if record.status.value == "failed" else logging.INFO
    log.log(level, "task %s%s", text, f" ({note})" if note else "", extra={**present, "custom_dimensions": present})
