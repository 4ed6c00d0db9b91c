"""Bulk jobs: the job row (ETag-guarded), the Graph link of each page read, the jobs index (by
creation time: newest first for `GET /api/jobs`, oldest for retention); a job's counters live in
`counters.py`."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.tables.keys import JOB_ROW, JOBS_PARTITION, counter_partition, index_row_key, page_row, time_key
from shared.adapters.tables.table import Table, etag_of
from shared.domain.errors import ConcurrentUpdateError
from shared.domain.jobs import Job
from shared.domain.principal import Principal
from shared.usecases.ports import JobIndexPage


class JobTable:
    def __init__(self, table: Table) -> None:
        self._table = table

    async def create(self, job: Job) -> Job:
        """The job row, then its index row (a job without one is never listed nor expired)."""
        table = await self._table.client()
        job = replace(job, etag=etag_of(await table.create_entity(job_to_entity(job))))
        await table.upsert_entity(
            {"PartitionKey": JOBS_PARTITION, "RowKey": index_row_key(job.created_at, job.id), "JobId": job.id}
        )
        return job

    async def get(self, job_id: str) -> Job | None:
        table = await self._table.client()
        try:
            entity = await table.get_entity(job_id, JOB_ROW)
        except ResourceNotFoundError:
            return None
        return job_from_entity(dict(entity), etag_of(entity.metadata))

    async def replace(self, job: Job) -> Job:
        """ETag-guarded; ConcurrentUpdateError when someone changed the job meanwhile."""
        table = await self._table.client()
        try:
            metadata = await table.update_entity(
                job_to_entity(job), mode=UpdateMode.REPLACE, etag=job.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrentUpdateError(job.id) from exc
        return replace(job, etag=etag_of(metadata))

    async def save_page_link(self, job_id: str, page: int, link: str) -> None:
        table = await self._table.client()
        await table.upsert_entity({"PartitionKey": job_id, "RowKey": page_row(page), "Link": link}, mode=UpdateMode.REPLACE)

    async def page_link(self, job_id: str, page: int) -> str | None:
        table = await self._table.client()
        try:
            return str((await table.get_entity(job_id, page_row(page)))["Link"])
        except ResourceNotFoundError:
            return None

    async def index_page(self, after: str | None, limit: int) -> JobIndexPage:
        """Job ids newest first, starting after row key `after` (one partition, parameterised)."""
        table = await self._table.client()
        query, parameters = "PartitionKey eq @pk", {"pk": JOBS_PARTITION}
        if after:
            query += " and RowKey gt @after"
            parameters["after"] = after
        ids: list[str] = []
        async for entity in table.query_entities(
            query, parameters=parameters, results_per_page=limit, select=["RowKey", "JobId"]
        ):
            ids.append(entity["JobId"])
            if len(ids) == limit:
                return JobIndexPage(ids, entity["RowKey"])
        return JobIndexPage(ids, None)

    async def expired(self, cutoff: datetime, limit: int) -> list[dict[str, Any]]:
        return await self._table.expired(JOBS_PARTITION, time_key(cutoff), limit)

    async def delete(self, index_row: dict[str, Any]) -> None:
        """A job's row and page links, then its counters, then its index row (last: a run that
        stops part-way finds it again)."""
        job_id = index_row["JobId"]
        await self._table.delete_rows(job_id)
        await self._table.delete_rows(counter_partition(job_id))
        await self._table.delete_row(JOBS_PARTITION, index_row["RowKey"])


def job_to_entity(job: Job) -> dict[str, Any]:
    entity = {
        "PartitionKey": job.id,
        "RowKey": JOB_ROW,
        "GroupId": job.group_id,
        "Description": job.description,
        "CorrelationId": job.correlation_id,
        "RequestedBy": _principal(job.requested_by),
        "CreatedAt": job.created_at,
        "StartedAt": job.started_at,
        "PagesDone": job.pages_done,
        "Discovered": job.discovered,
        "NextLink": job.next_link,
        "NextPageQueued": job.next_page_queued,
        "Enumerated": job.enumerated,
        "FinishedAt": job.finished_at,
        "Error": job.error,
        "CancelledAt": job.cancelled_at,
        "CancelledBy": _principal(job.cancelled_by),
        "PageFailingSince": job.page_failing_since,
        "PageFailures": job.page_failures or None,
        "MessageToken": job.token,
        "Count": job.count,
        "UserLimit": job.user_limit,
        "ApprovalExpiresAt": job.approval_expires_at,
        "ApprovedAt": job.approved_at,
        "ApprovedBy": _principal(job.approved_by),
        "RejectedAt": job.rejected_at,
        "RejectedBy": _principal(job.rejected_by),
        "DecisionComment": job.decision_comment,
    }
    return {key: value for key, value in entity.items() if value is not None}


def job_from_entity(entity: dict[str, Any], etag: str) -> Job:
    return Job(
        id=entity["PartitionKey"],
        group_id=entity.get("GroupId"),
        description=entity.get("Description", ""),
        correlation_id=entity.get("CorrelationId"),
        requested_by=_principal_from(entity.get("RequestedBy")),
        created_at=entity["CreatedAt"],
        started_at=entity.get("StartedAt"),
        pages_done=entity.get("PagesDone", 0),
        discovered=entity.get("Discovered", 0),
        next_link=entity.get("NextLink"),
        next_page_queued=entity.get("NextPageQueued", False),
        enumerated=entity.get("Enumerated", False),
        finished_at=entity.get("FinishedAt"),
        error=entity.get("Error"),
        cancelled_at=entity.get("CancelledAt"),
        cancelled_by=_principal_from(entity.get("CancelledBy")),
        page_failing_since=entity.get("PageFailingSince"),
        page_failures=entity.get("PageFailures", 0),
        token=entity.get("MessageToken"),
        etag=etag,
        count=entity.get("Count"),
        user_limit=entity.get("UserLimit"),
        approval_expires_at=entity.get("ApprovalExpiresAt"),
        approved_at=entity.get("ApprovedAt"),
        approved_by=_principal_from(entity.get("ApprovedBy")),
        rejected_at=entity.get("RejectedAt"),
        rejected_by=_principal_from(entity.get("RejectedBy")),
        decision_comment=entity.get("DecisionComment"),
    )


def _principal(principal: Principal | None) -> str | None:
    return json.dumps(principal.as_api()) if principal else None


def _principal_from(stored: str | None) -> Principal | None:
    return Principal.from_api(json.loads(stored)) if stored else None
