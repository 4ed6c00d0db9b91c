"""The one structured log line per task state change (the audit trail in Application Insights);
never tokens, keys, URLs with secrets in them, or message bodies."""

from __future__ import annotations

import logging

from shared.domain.tasks import TaskRecord

log = logging.getLogger("signout.task")


def state_change(record: TaskRecord, note: str = "", graph_request_id: str | None = None) -> None:
    fields = {
        "taskId": record.id,
        "status": record.status.value,
        "user": record.user,
        "correlationId": record.correlation_id,
        "attempts": record.attempts,
        "graphRequestId": graph_request_id or (record.error.graph_request_id if record.error else None),
        "errorCategory": record.error.category.value if record.error else None,
    }
    present = {key: value for key, value in fields.items() if value is not None}
    # repr() for anything unprintable: no value can start a forged log line.
    text = " ".join(f"{key}={value if str(value).isprintable() else repr(value)}" for key, value in present.items())
    level = logging.WARNING if record.status.value == "failed" else logging.INFO
    log.log(level, "task %s%s", text, f" ({note})" if note else "", extra={"custom_dimensions": present})
