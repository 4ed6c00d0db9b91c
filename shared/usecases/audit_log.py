"""Logging policy and the one structured log line per task state change; never tokens, keys,
URLs with secrets in them, or message bodies."""

from __future__ import annotations

import logging

from shared.domain.tasks import TaskRecord

log = logging.getLogger("signout.task")

# Loggers that write request URLs or token responses: Logic Apps callback URLs carry their `sig`
# secret in the query, status URLs the function key. The Functions Python worker sets the root
# logger to DEBUG and leaves filtering to host.json, so these are set here, for every path.
QUIET_LOGGERS = (
    "httpx",  # INFO "HTTP Request: POST <full URL>" for every request
    "httpcore",  # DEBUG connection and request traces
    "azure",  # the SDKs' per-request noise, azure-identity's token requests
    "azure.core.pipeline.policies.http_logging_policy",  # INFO request URL and headers
    "aiohttp",  # aiohttp.access, aiohttp.client, aiohttp.server, ... (azure-core's async transport)
    "urllib3",  # DEBUG '"POST /path?query HTTP/1.1" 200'
    "msal",  # DEBUG "IMDS emits unexpected payload: <response body>"
)


def apply_logging_policy() -> None:
    """Quiet every logger that can print a URL or a token to WARNING; called once, when the app
    is imported, before anything else runs (not as a side effect of building one client)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


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
