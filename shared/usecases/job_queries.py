"""Admin query of bulk jobs: newest first, optionally in one state (`awaiting_approval`: what
waits for an approver), paginated like the remediation log, from the jobs index partition."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.domain.jobs import JOB_STATES, Job
from shared.domain.problems import field_error, pointer_to
from shared.domain.tasks import iso, utcnow
from shared.usecases.bulk import BulkDeps, job_report
from shared.usecases.queries import DEFAULT_TOP, _encode_token, _parse, page_params

KNOWN_PARAMS = frozenset({"state", "top", "continuationToken", "code"})
SCAN_BUDGET = 500  # jobs read per page at most when a state filter is selective


@dataclass(frozen=True)
class JobQuery:
    state: str | None = None
    top: int = DEFAULT_TOP
    after: str | None = None

    def as_params(self) -> dict[str, str]:
        params = {"state": self.state, "top": str(self.top)}
        return {key: value for key, value in params.items() if value}


def parse_job_query(params: dict[str, str]) -> JobQuery:
    errors = [field_error(pointer_to(name), "is not a known query parameter") for name in sorted(set(params) - KNOWN_PARAMS)]
    state = _parse(params, "state", _state, (ValueError,), errors, f"must be one of {', '.join(JOB_STATES)}")
    top, after = page_params(params, errors)
    return JobQuery(state, top, after)


def _state(text: str) -> str:
    if text not in JOB_STATES:
        raise ValueError(text)
    return text


async def read_jobs(rt: BulkDeps, query: JobQuery) -> tuple[list[dict[str, Any]], str | None]:
    """Job reports newest first, and the continuation token when there may be more."""
    reports: list[dict[str, Any]] = []
    after, scanned = query.after, 0
    while len(reports) < query.top and scanned < SCAN_BUDGET:
        page = await rt.jobs.index_page(after, query.top - len(reports))
        scanned += len(page.job_ids)
        jobs = [job for job in await asyncio.gather(*(rt.jobs.get(job_id) for job_id in page.job_ids)) if job]
        reports += [report for report in await asyncio.gather(*(_report(rt, job) for job in jobs)) if _wanted(report, query)]
        after = page.last_row_key
        if after is None:
            break
    return reports, _encode_token(after) if after else None


async def _report(rt: BulkDeps, job: Job) -> dict[str, Any]:
    report = (await job_report(rt, job))[0]
    return with_progress(report, rt.settings.graph_writes_per_second)


_MOVING = frozenset({"enumerating", "running", "cancelling"})


def with_progress(report: dict[str, Any], writes_per_second: float, now: datetime | None = None) -> dict[str, Any]:
    """`total`, `done`, `percent` and, while the job moves, `estimatedFinish` at the configured
    Graph write rate (the pacer's ceiling: the earliest it can finish, not a promise)."""
    counts = report["counts"]
    total = max(report["count"] or 0, counts["discovered"])
    done = sum(counts[outcome] for outcome in ("succeeded", "failed", "skipped"))
    moving = report["state"] in _MOVING
    percent = 100 if report["state"] == "finished" else (100 * done // total if total else 0)
    eta = None
    if moving:
        eta = iso((now or utcnow()) + timedelta(seconds=max(total - done, 0) / writes_per_second))
    return {**report, "total": total, "done": done, "percent": min(percent, 100), "estimatedFinish": eta}


def _wanted(report: dict[str, Any], query: JobQuery) -> bool:
    return query.state is None or report["state"] == query.state
