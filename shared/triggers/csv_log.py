"""The remediation log as CSV (RFC 4180) for an incident report: one row per task, cells a
spreadsheet never evaluates as a formula."""

from __future__ import annotations

import csv
import io
from typing import Any

from shared.domain.tasks import TaskRecord

COLUMNS = (
    "id",
    "createdAt",
    "user",
    "resolvedUpn",
    "resolvedId",
    "status",
    "source",
    "requestedBy",
    "requestedById",
    "description",
    "correlationId",
    "alertId",
    "jobId",
    "attempts",
    "completedAt",
    "graphRequestId",
    "sessionsValidFrom",
    "verified",
    "errorCategory",
    "errorCode",
    "errorMessage",
    "errorHint",
    "warnings",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection: what a spreadsheet evaluates


def wants_csv(params: dict[str, str], accept: str | None) -> bool:
    """`format=csv`, or no `format` and an Accept header that names text/csv."""
    if "format" in params:
        return params["format"] == "csv"
    return "text/csv" in (accept or "").lower()


def render(tasks: list[TaskRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180: CRLF, quotes doubled
    writer.writerow(COLUMNS)
    writer.writerows([safe_cell(cell) for cell in _row(task.to_api())] for task in tasks)
    return out.getvalue()


def safe_cell(value: object) -> str:
    """The cell's text; one that a spreadsheet would read as a formula gets a leading quote."""
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _row(task: dict[str, Any]) -> list[object]:
    by = task["requestedBy"] or {}
    resolved = task["resolvedUser"] or {}
    error = task["error"] or {}
    return [
        task["id"],
        task["createdAt"],
        task["user"],
        resolved.get("userPrincipalName"),
        resolved.get("id"),
        task["status"],
        task["source"],
        by.get("displayName"),
        by.get("objectId") or by.get("appId"),
        task["description"],
        task["correlationId"],
        task["alertId"],
        task["jobId"],
        task["attempts"],
        task["completedAt"],
        task["graphRequestId"],
        task["sessionsValidFrom"],
        task["verified"],
        error.get("category"),
        error.get("code"),
        error.get("message"),
        error.get("hint"),
        "; ".join(task["warnings"]),
    ]
