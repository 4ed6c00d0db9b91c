"""HTTP triggers: parse, call one use-case function, render. No business rules here."""

from __future__ import annotations

import math
from collections.abc import Awaitable
from functools import cache
from pathlib import Path
from typing import TypeVar

import azure.functions as func

from shared.domain.alerts import parse_alert
from shared.domain.directory import GraphError
from shared.domain.jobs import Job
from shared.domain.messages import is_task_id
from shared.domain.principal import Principal
from shared.domain.problems import ProblemError, field_error
from shared.domain.requests import (
    MAX_DECISION_BYTES,
    BulkRequest,
    load_json_object,
    parse_bulk_request,
    parse_decision,
    parse_signout_request,
    require_json,
)
from shared.domain.tasks import TaskRecord
from shared.runtime import Runtime, runtime
from shared.settings import get_settings
from shared.triggers import csv_log
from shared.triggers.auth import APPROVE_ROLE, CREATE_ROLE, READ_ROLE, roles_required
from shared.triggers.health import check_health
from shared.triggers.responses import absolute_url, caller, endpoint, json_response
from shared.usecases import approvals, job_queries, queries
from shared.usecases.bulk import JobFinishedError, cancel_job, get_job, job_report
from shared.usecases.intake import accept, accept_alert, idempotency_scope, idempotent

bp = func.Blueprint()
T = TypeVar("T")

MAX_IDEMPOTENCY_KEY = 200
MAX_ALERT_BYTES = 2 * 1024 * 1024  # Sentinel incidents carry their alerts and entities
OPENAPI_PATH = Path(__file__).parents[1] / "openapi.json"  # published beside the package's layers
POLL_SECONDS = "1"
JOB_POLL_SECONDS = "10"


def status_url(req: func.HttpRequest, task: TaskRecord) -> str:
    return absolute_url(req, f"/api/signouts/{task.id}")


@bp.route(route="signouts", methods=["POST"])
@endpoint(role=CREATE_ROLE)
async def create_signouts(req: func.HttpRequest) -> func.HttpResponse:
    requested_by = caller()
    require_json(req.headers.get("content-type"))
    data = load_json_object(req.get_body())
    key = _idempotency_key(req)
    if "group" in data or "allUsers" in data:
        return await _create_job(req, data, key, requested_by)
    request = parse_signout_request(data, get_settings().callback_allowed_hosts)
    accepted = await accept(runtime(), request, key, requested_by)
    tasks = [{**_summary(task), "statusUrl": status_url(req, task)} for task in accepted.tasks]
    headers = {"Idempotent-Replayed": "true"} if accepted.replayed else {}
    if len(tasks) == 1:
        headers.update({"Location": tasks[0]["statusUrl"], "Retry-After": POLL_SECONDS})
    return json_response({"tasks": tasks}, 202, headers)


@bp.route(route="signouts/{id}", methods=["GET"])
@endpoint(role=READ_ROLE)
async def get_signout(req: func.HttpRequest) -> func.HttpResponse:
    rt = runtime()
    task = await queries.get_task(rt, req.route_params.get("id", ""))
    url = status_url(req, task)
    body = {**task.to_api(url), **await queries.joined_requests(rt, task)}
    if task.status.is_terminal:
        return json_response(body)
    return json_response(body, 202, {"Location": url, "Retry-After": POLL_SECONDS})


@bp.route(route="signouts", methods=["GET"])
@endpoint(role=READ_ROLE)
async def list_signouts(req: func.HttpRequest) -> func.HttpResponse:
    params = dict(req.params)
    query = queries.parse_log_query(params)
    page = await queries.read_log(runtime(), query)
    if csv_log.wants_csv(params, req.headers.get("accept")):
        return _log_csv(req, query, page)
    body: dict[str, object] = {"tasks": [task.to_api(status_url(req, task)) for task in page.tasks]}
    if page.continuation_token:
        body["continuationToken"] = page.continuation_token
        body["nextLink"] = absolute_url(req, "/api/signouts", {**query.as_params(), "continuationToken": page.continuation_token})
    return json_response(body)


def _log_csv(req: func.HttpRequest, query: queries.LogQuery, page: queries.LogResult) -> func.HttpResponse:
    """The same page as CSV; the next page's URL in a Link header (RFC 8288), as CSV has no room for it."""
    headers = {"Content-Disposition": 'attachment; filename="signouts.csv"'}
    if page.continuation_token:
        params = {**query.as_params(), "format": "csv", "continuationToken": page.continuation_token}
        headers["Link"] = f'<{absolute_url(req, "/api/signouts", params)}>; rel="next"'
    body = csv_log.render(page.tasks).encode()
    return func.HttpResponse(body, status_code=200, headers=headers, mimetype="text/csv", charset="utf-8")


async def _create_job(
    req: func.HttpRequest, data: dict[str, object], key: str | None, requested_by: Principal | None
) -> func.HttpResponse:
    request = parse_bulk_request(data, get_settings().allow_all_users)
    rt = runtime()
    if request.preview:  # creates nothing, so no Idempotency-Key is needed or stored
        preview = await _reading_directory(approvals.preview(rt, request, roles_required()))
        return json_response({"preview": preview})

    async def run() -> tuple[list[str], bool]:
        job = await _requesting(rt, request, requested_by)
        return [job.id], True

    if key is None:
        [job_id], created = await run()
    else:  # a retried bulk request must not sign the whole group out twice
        [job_id], fresh = await idempotent(rt, idempotency_scope("signouts", requested_by, key), request.fingerprint(), run)
        created = fresh is not None
    report, _ = await job_report(rt, await _existing_job(job_id))
    url = job_url(req, job_id)
    headers = {"Location": url, "Retry-After": JOB_POLL_SECONDS, **({} if created else {"Idempotent-Replayed": "true"})}
    summary = {"id": job_id, "state": report["state"], "count": report["count"], "statusUrl": url}
    return json_response({"job": summary}, 202, headers)


async def _requesting(rt: Runtime, request: BulkRequest, requested_by: Principal | None) -> Job:
    try:
        return await _reading_directory(approvals.request_job(rt, request, requested_by, roles_required()))
    except approvals.ApprovalRefusedError as refused:
        raise ProblemError(403, "Approval required", str(refused)) from None


async def _reading_directory(call: Awaitable[T]) -> T:
    """Graph failures while sizing a bulk target: transient ones are 503 (nothing was created: a
    target of unknown size never starts), others say what Graph answered."""
    try:
        return await call
    except GraphError as failure:
        if failure.transient:
            retry_after = str(max(1, math.ceil(failure.retry_after or 5)))
            detail = f"Microsoft Graph could not size the target ({failure.code or failure.status}); nothing was created, retry"
            raise ProblemError(503, "Directory unavailable", detail, headers={"Retry-After": retry_after}) from None
        raise ProblemError(422, "Target cannot be read", approvals.describe(failure)) from None


def job_url(req: func.HttpRequest, job_id: str) -> str:
    return absolute_url(req, f"/api/jobs/{job_id}")


@bp.route(route="jobs/{id}", methods=["GET"])
@endpoint(role=READ_ROLE)
async def get_job_status(req: func.HttpRequest) -> func.HttpResponse:
    return await _job_response(req, await _existing_job(req.route_params.get("id", "")))


async def _existing_job(job_id: str) -> Job:
    if not is_task_id(job_id):
        raise ProblemError(400, "Invalid job id", "a job id is a lowercase GUID", [field_error("/id", "is not a job id")])
    job = await get_job(runtime(), job_id)
    if job is None:
        raise ProblemError(404, "Job not found", f"no bulk sign-out job {job_id}")
    return job


async def _job_response(req: func.HttpRequest, job: Job) -> func.HttpResponse:
    """The job report: 202 with Location and Retry-After until it has finished, then 200."""
    rt = runtime()
    report, finished = await job_report(rt, job)
    report = job_queries.with_progress(report, rt.settings.graph_writes_per_second)
    url = job_url(req, job.id)
    report["statusUrl"] = url
    if finished:
        return json_response(report)
    return json_response(report, 202, {"Location": url, "Retry-After": JOB_POLL_SECONDS})


@bp.route(route="jobs/{id}/cancel", methods=["POST"])
@endpoint(role=CREATE_ROLE)
async def cancel_job_request(req: func.HttpRequest) -> func.HttpResponse:
    """Stop a bulk job: no further page is read and tasks that have not started are skipped."""
    requested_by = caller()
    job = await _existing_job(req.route_params.get("id", ""))
    try:
        job = await cancel_job(runtime(), job, requested_by)
    except JobFinishedError:
        raise ProblemError(
            409, "Job already finished", f"bulk job {job.id} has finished; there is nothing left to cancel"
        ) from None
    return await _job_response(req, job)


@bp.route(route="jobs/{id}/approve", methods=["POST"])
@endpoint(role=APPROVE_ROLE)
async def approve_job(req: func.HttpRequest) -> func.HttpResponse:
    """A second person lets a bulk job that waits for approval start."""
    approver = caller()
    comment = _decision_comment(req)
    job = await _existing_job(req.route_params.get("id", ""))
    try:
        job = await approvals.approve(runtime(), job, approver, comment, roles_required())
    except approvals.ApprovalRefusedError as refused:
        raise ProblemError(403, "Approval refused", str(refused)) from None
    except approvals.JobDecidedError as decided:
        raise ProblemError(409, "Job not awaiting approval", str(decided)) from None
    return await _job_response(req, job)


@bp.route(route="jobs/{id}/reject", methods=["POST"])
@endpoint(role=APPROVE_ROLE)
async def reject_job(req: func.HttpRequest) -> func.HttpResponse:
    """A bulk job that waits for approval ends `rejected`: nobody is signed out."""
    rejecter = caller()
    comment = _decision_comment(req)
    job = await _existing_job(req.route_params.get("id", ""))
    try:
        job = await approvals.reject(runtime(), job, rejecter, comment)
    except approvals.JobDecidedError as decided:
        raise ProblemError(409, "Job not awaiting approval", str(decided)) from None
    return await _job_response(req, job)


def _decision_comment(req: func.HttpRequest) -> str | None:
    """An approve or reject body is optional: `{"comment": "..."}`."""
    body = req.get_body()
    if not body:
        return None
    require_json(req.headers.get("content-type"))
    return parse_decision(load_json_object(body, MAX_DECISION_BYTES))


@bp.route(route="jobs", methods=["GET"])
@endpoint(role=READ_ROLE)
async def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    """Bulk jobs newest first; `?state=awaiting_approval` is what waits for an approver."""
    query = job_queries.parse_job_query(dict(req.params))
    reports, token = await job_queries.read_jobs(runtime(), query)
    body: dict[str, object] = {"jobs": [{**report, "statusUrl": job_url(req, report["id"])} for report in reports]}
    if token:
        body["continuationToken"] = token
        body["nextLink"] = absolute_url(req, "/api/jobs", {**query.as_params(), "continuationToken": token})
    return json_response(body)


@bp.route(route="alerts", methods=["POST"])
@endpoint(role=CREATE_ROLE)
async def ingest_alert(req: func.HttpRequest) -> func.HttpResponse:
    """Azure Monitor (common alert schema), Microsoft Sentinel and Defender XDR alerts."""
    requested_by = caller()
    require_json(req.headers.get("content-type"))
    alert = parse_alert(load_json_object(req.get_body(), MAX_ALERT_BYTES), dimension_names=get_settings().alert_user_dimensions)
    summary = {"kind": alert.kind, "alertId": alert.alert_id}
    if alert.resolved:  # the action group calls again when the alert resolves: nothing to do
        return json_response({**summary, "ignored": "resolved"})
    if alert.ignored and not alert.users:  # an activity-log caller the rule did not opt in
        return json_response({**summary, "ignored": "caller not opted in", "reason": alert.ignored})
    if not alert.users:
        errors = [field_error("", f"{item['entity']}: {item['reason']}") for item in alert.unusable]
        raise ProblemError(
            422, "No usable user in the alert", f"{alert.kind} alert {alert.alert_id} names no Entra ID user to sign out", errors
        )
    tasks = await accept_alert(runtime(), alert, requested_by)
    body = {
        **summary,
        "tasks": [{**_summary(task), "statusUrl": status_url(req, task)} for task in tasks],
        "unusable": list(alert.unusable),
    }
    return json_response(body, 202)


@bp.route(route="openapi.json", methods=["GET"])
@endpoint(role=READ_ROLE)
async def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(openapi_document(), mimetype="application/json")


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(role=None)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    report = await check_health()
    return json_response(report, 200 if report["status"] == "healthy" else 503)


@cache
def openapi_document() -> bytes:
    return OPENAPI_PATH.read_bytes()


def _summary(task: TaskRecord) -> dict[str, str]:
    return {"id": task.id, "user": task.user, "status": task.status.value}


def _idempotency_key(req: func.HttpRequest) -> str | None:
    header: str | None = req.headers.get("idempotency-key")
    if header is None:
        return None
    key = header.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ProblemError(400, "Invalid Idempotency-Key", f"must be 1-{MAX_IDEMPOTENCY_KEY} printable characters")
    return key
