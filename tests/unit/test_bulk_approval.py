"""Before a mass sign-out (issue 10): preview, size limit, two-person approval, expiry, the user
limit, and the jobs listing; over the in-memory ports, and through the HTTP functions as the host
calls them (shared/usecases/approvals.py, job_queries.py, shared/triggers/http_api.py)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest

from shared.domain.directory import GraphError
from shared.domain.jobs import Job, estimated_minutes, needs_approval, principal_key, user_limit
from shared.domain.messages import JobPageMessage
from shared.domain.principal import Principal
from shared.domain.problems import PROBLEM_CONTENT_TYPE, ProblemError
from shared.domain.requests import ALL_USERS_CONFIRMATION, BulkRequest, parse_bulk_request
from shared.domain.tasks import utcnow
from shared.triggers import http_api
from shared.usecases import job_queries
from shared.usecases.approvals import ApprovalRefusedError, JobDecidedError, approve, preview, reject, request_job
from shared.usecases.bulk import cancel_job, job_report, process_page
from tests.app_functions import registered_functions
from tests.fakes import FakeRuntime, FakeUser, fake_runtime, transient
from tests.openapi_nulls import without_nulls
from tests.unit.test_openapi import assert_valid

THRESHOLD = 5
ALICE = Principal("0b0c6f6e-0000-4000-8000-00000000a11c", "0a0a0a0a-0000-4000-8000-000000000001", "Alice (SOC)")
BOB = Principal("0b0c6f6e-0000-4000-8000-000000000b0b", None, "Bob (approver)")


@pytest.fixture
def rt() -> FakeRuntime:
    return fake_runtime(bulk_approval_threshold=THRESHOLD, graph_page_size=2, bulk_backlog_pages=0)


def members(rt: FakeRuntime, count: int) -> list[FakeUser]:
    return [rt.graph.add_user(f"member{n}-{uuid.uuid4().hex[:6]}@contoso.com") for n in range(count)]


def group_request(group: str) -> BulkRequest:
    return BulkRequest(group, "INC-9 offboarding", "INC-9")


async def run_job(rt: FakeRuntime) -> None:
    """The workers: every page, then every task, until both queues are empty; a second passes per
    delivery (the write pacer's tokens refill on the fake clock)."""
    while await rt.deliver(rt.settings.bulk_page_queue) or await rt.deliver(rt.settings.bulk_queue):
        rt.clock.advance(1)


def nothing_created(rt: FakeRuntime) -> bool:
    return not rt.jobs.jobs and not rt.tasks.records and not rt.queue.sent


# --- the rules -----------------------------------------------------------------------------------
def test_approval_is_needed_at_the_threshold_and_for_all_users_with_roles() -> None:
    assert not needs_approval(999, False, 1000, True)
    assert needs_approval(1000, False, 1000, False)
    assert not needs_approval(10**6, False, 0, True), "0 turns the size rule off"
    assert needs_approval(3, True, 1000, True), "all users: always, while app roles are enforced"
    assert needs_approval(3, True, 0, True)
    assert not needs_approval(3, True, 1000, False)


def test_the_user_limit_allows_eventual_consistency_but_not_a_wider_job() -> None:
    assert user_limit(100, approved=True, threshold=5) == 110  # at least 10 more
    assert user_limit(5000, approved=True, threshold=1000) == 5050  # 1 % more
    assert user_limit(995, approved=False, threshold=1000) == 999  # never reaches the threshold unapproved
    assert user_limit(50, approved=False, threshold=0) == 60


def test_estimate_and_principal_identity() -> None:
    assert estimated_minutes(100_000, 19.4) == 86 and estimated_minutes(0, 19.4) == 0
    assert principal_key(Principal(None, "APP-ID", None)) == "app-id"
    assert principal_key(Principal("OID", "app", None)) == "oid"  # a user through a client app is the user
    assert principal_key(Principal(None, None, "name only")) is None and principal_key(None) is None


def test_a_preview_needs_no_confirmation_but_a_job_needs_it_exactly() -> None:
    assert parse_bulk_request({"allUsers": True, "preview": True}, allow_all_users=True).preview
    for confirm in (None, "Sign out all users", " sign out all users", "SIGN OUT ALL USERS"):
        with pytest.raises(ProblemError) as caught:
            parse_bulk_request({"allUsers": True, "confirm": confirm}, allow_all_users=True)
        assert [error["pointer"] for error in caught.value.errors] == ["/confirm"]
    assert parse_bulk_request({"allUsers": True, "confirm": ALL_USERS_CONFIRMATION}, allow_all_users=True).group_id is None
    with pytest.raises(ProblemError) as caught:
        parse_bulk_request({"group": str(uuid.uuid4()), "preview": "yes"}, allow_all_users=False)
    assert [error["pointer"] for error in caught.value.errors] == ["/preview"]


# --- preview -------------------------------------------------------------------------------------
async def test_preview_counts_without_enumerating_and_creates_nothing() -> None:
    rt = fake_runtime(
        protected_users=frozenset({"breakglass@contoso.com"}), graph_writes_per_second=0.1, bulk_approval_threshold=25
    )
    guest = rt.graph.add_user("guest_fabrikam.com#EXT#@contoso.com", "Guest")
    users = [*members(rt, 23), guest, rt.graph.add_user("breakglass@contoso.com")]
    group = rt.graph.add_group(users)
    shown = await preview(rt, group_request(group), roles_enforced=True)
    assert shown == {
        "target": {"group": group},
        "count": 25,
        "protectedSkipped": 1,
        "guests": 1,
        "sample": [rt.graph.users[user_id].upn for user_id in rt.graph.groups[group][:20]],
        "estimatedMinutes": 4,  # 24 writes at 0.1/s
        "approvalRequired": True,
    }
    assert rt.graph.pages_read == [(group, None)], "one page (of 20), no enumeration"
    assert nothing_created(rt)


async def test_preview_of_all_users_and_of_a_small_group() -> None:
    rt = fake_runtime()
    group = rt.graph.add_group(members(rt, 3))
    assert (await preview(rt, group_request(group), roles_enforced=True))["approvalRequired"] is False
    everyone = await preview(rt, BulkRequest(None, preview=True), roles_enforced=True)
    assert everyone["target"] == {"allUsers": True} and everyone["count"] == 3
    assert everyone["approvalRequired"] is True
    assert (await preview(rt, BulkRequest(None, preview=True), roles_enforced=False))["approvalRequired"] is False


# --- requesting a job ----------------------------------------------------------------------------
async def test_a_job_under_the_threshold_starts_with_its_count_and_limit(rt: FakeRuntime) -> None:
    group = rt.graph.add_group(members(rt, THRESHOLD - 1))
    job = await request_job(rt, group_request(group), None, roles_enforced=False)
    assert (job.count, job.user_limit, job.approval_expires_at) == (4, THRESHOLD - 1, None)
    assert [sent.decoded() for sent in rt.queue.sent_to(rt.settings.bulk_page_queue)] == [JobPageMessage(job.id, 1, job.token)]
    assert rt.graph.counts_read == [(group, False, None)]


async def test_a_job_at_the_threshold_waits_for_approval_and_runs_nothing(rt: FakeRuntime) -> None:
    group = rt.graph.add_group(members(rt, THRESHOLD))
    job = await request_job(rt, group_request(group), ALICE, roles_enforced=True)
    report, finished = await job_report(rt, job)
    assert (report["state"], finished, report["count"], report["requestedBy"]) == ("awaiting_approval", False, 5, ALICE.as_api())
    assert job.approval_expires_at is not None
    assert timedelta(seconds=3590) < job.approval_expires_at - job.created_at <= timedelta(seconds=3600)
    assert rt.queue.sent == [] and rt.graph.pages_read == []
    await process_page(rt, JobPageMessage(job.id, 1, job.token))  # even with its token, a page reads nothing
    assert rt.graph.pages_read == [] and rt.tasks.records == {}


async def test_without_enforced_roles_a_job_that_needs_approval_is_refused(rt: FakeRuntime) -> None:
    group = rt.graph.add_group(members(rt, THRESHOLD + 3))
    with pytest.raises(ApprovalRefusedError, match="REQUIRE_APP_ROLES=true") as refused:
        await request_job(rt, group_request(group), None, roles_enforced=False)
    assert "8 users" in str(refused.value) and "smaller group" in str(refused.value)
    assert nothing_created(rt)


async def test_all_users_always_waits_for_approval_when_roles_are_enforced() -> None:
    rt = fake_runtime(allow_all_users=True)
    members(rt, 2)
    job = await request_job(rt, BulkRequest(None), ALICE, roles_enforced=True)
    assert (await job_report(rt, job))[0]["state"] == "awaiting_approval"
    small = await request_job(rt, BulkRequest(None), None, roles_enforced=False)
    assert (await job_report(rt, small))[0]["state"] == "enumerating"


async def test_threshold_zero_turns_the_size_rule_off() -> None:
    rt = fake_runtime(bulk_approval_threshold=0)
    group = rt.graph.add_group(members(rt, 30))
    job = await request_job(rt, group_request(group), None, roles_enforced=False)
    assert (job.count, job.user_limit, job.approval_expires_at) == (None, None, None)
    assert rt.graph.counts_read == [] and len(rt.queue.sent_to(rt.settings.bulk_page_queue)) == 1


async def test_an_unknown_size_never_starts_and_an_unreadable_target_fails_at_once(rt: FakeRuntime) -> None:
    group = rt.graph.add_group(members(rt, 2))
    rt.graph.fail_next("count_users", transient(status=503))
    with pytest.raises(GraphError):
        await request_job(rt, group_request(group), None, roles_enforced=False)
    assert nothing_created(rt)
    job = await request_job(rt, group_request(str(uuid.uuid4())), None, roles_enforced=False)
    report, finished = await job_report(rt, job)
    assert (report["state"], finished) == ("failed", True) and "404" in report["error"]
    assert rt.queue.sent == []


# --- approving, rejecting, expiring --------------------------------------------------------------
@pytest.fixture
async def waiting(rt: FakeRuntime) -> tuple[Job, list[FakeUser]]:
    users = members(rt, THRESHOLD + 1)
    job = await request_job(rt, group_request(rt.graph.add_group(users)), ALICE, roles_enforced=True)
    return job, users


async def test_the_requester_cannot_approve_their_own_job(rt: FakeRuntime, waiting: tuple[Job, list[FakeUser]]) -> None:
    job, _ = waiting
    same_person = Principal(ALICE.object_id.upper() if ALICE.object_id else None, "another-client-app", "Alice again")
    for approver in (ALICE, same_person):
        with pytest.raises(ApprovalRefusedError, match="requester"):
            await approve(rt, job, approver, None, roles_enforced=True)
    for approver, roles in ((None, True), (BOB, False), (Principal(None, None, "no id"), True)):
        with pytest.raises(ApprovalRefusedError, match="REQUIRE_APP_ROLES"):
            await approve(rt, job, approver, None, roles_enforced=roles)
    assert rt.jobs.jobs[job.id].approved_at is None and rt.queue.sent == []


async def test_a_second_person_approves_and_every_member_is_signed_out_once(
    rt: FakeRuntime, waiting: tuple[Job, list[FakeUser]]
) -> None:
    job, users = waiting
    approved = await approve(rt, job, BOB, "checked with HR", roles_enforced=True)
    again = await approve(rt, approved, Principal("0c0c0c0c-0000-4000-8000-000000000003", None, "Carol"), None, True)
    assert again.approved_by == BOB, "idempotent: the first approval stands"
    assert len(rt.queue.sent_to(rt.settings.bulk_page_queue)) == 1
    await run_job(rt)
    report, finished = await job_report(rt, rt.jobs.jobs[job.id])
    assert (report["state"], finished, report["counts"]["succeeded"]) == ("finished", True, THRESHOLD + 1)
    assert (report["approvedBy"], report["decisionComment"]) == (BOB.as_api(), "checked with HR")
    assert [rt.graph.revoke_count(user) for user in users] == [1] * len(users)


async def test_a_rejected_job_signs_out_nobody(rt: FakeRuntime, waiting: tuple[Job, list[FakeUser]]) -> None:
    job, users = waiting
    rejected = await reject(rt, job, ALICE, "wrong group")  # the requester may withdraw their own
    assert await reject(rt, rejected, BOB, "again") == rejected
    report, finished = await job_report(rt, rejected)
    assert (report["state"], finished, report["rejectedBy"], report["decisionComment"]) == (
        "rejected",
        True,
        ALICE.as_api(),
        "wrong group",
    )
    with pytest.raises(JobDecidedError, match="rejected"):
        await approve(rt, rejected, BOB, None, roles_enforced=True)
    await run_job(rt)
    assert rt.queue.sent == [] and all(rt.graph.revoke_count(user) == 0 for user in users)


async def test_an_undecided_job_expires_and_cannot_be_approved(rt: FakeRuntime, waiting: tuple[Job, list[FakeUser]]) -> None:
    job, users = waiting
    job = rt.jobs.update(job.id, approval_expires_at=utcnow() - timedelta(seconds=1))
    report, finished = await job_report(rt, job)
    assert (report["state"], finished) == ("expired", True)
    assert rt.jobs.jobs[job.id].finished_at is not None, "the expiry is recorded"
    for decide in (
        lambda: approve(rt, rt.jobs.jobs[job.id], BOB, None, True),
        lambda: reject(rt, rt.jobs.jobs[job.id], BOB, None),
    ):
        with pytest.raises(JobDecidedError, match="expired"):
            await decide()
    assert (await job_report(rt, rt.jobs.jobs[job.id]))[0]["state"] == "expired"
    assert rt.queue.sent == [] and all(rt.graph.revoke_count(user) == 0 for user in users)


async def test_a_job_that_needed_no_approval_or_was_approved_cannot_be_decided(rt: FakeRuntime) -> None:
    group = rt.graph.add_group(members(rt, 2))
    started = await request_job(rt, group_request(group), ALICE, roles_enforced=True)
    with pytest.raises(JobDecidedError, match="needed no approval"):
        await approve(rt, started, BOB, None, roles_enforced=True)
    big = await request_job(rt, group_request(rt.graph.add_group(members(rt, THRESHOLD))), ALICE, roles_enforced=True)
    approved = await approve(rt, big, BOB, None, roles_enforced=True)
    with pytest.raises(JobDecidedError, match="cancel it"):
        await reject(rt, approved, BOB, None)


async def test_the_requester_can_cancel_a_waiting_job(rt: FakeRuntime, waiting: tuple[Job, list[FakeUser]]) -> None:
    job, _ = waiting
    cancelled = await cancel_job(rt, job, ALICE)
    assert (await job_report(rt, cancelled))[0]["state"] == "cancelled"
    with pytest.raises(JobDecidedError, match="cancelled"):
        await approve(rt, cancelled, BOB, None, roles_enforced=True)
    assert rt.queue.sent == []


async def test_a_decision_racing_an_expiry_or_another_decision_reads_the_job_again(
    rt: FakeRuntime, waiting: tuple[Job, list[FakeUser]]
) -> None:
    job, _ = waiting
    rt.jobs.before_next("replace", lambda: rt.jobs.update(job.id, rejected_at=utcnow(), rejected_by=ALICE))
    with pytest.raises(JobDecidedError, match="rejected"):
        await approve(rt, job, BOB, None, roles_enforced=True)
    assert rt.queue.sent == []


# --- the target cannot grow the job --------------------------------------------------------------
async def test_an_approved_job_stops_when_the_group_grew_beyond_its_count(rt: FakeRuntime) -> None:
    users = members(rt, THRESHOLD)
    group = rt.graph.add_group(users)
    job = await request_job(rt, group_request(group), ALICE, roles_enforced=True)
    assert job.user_limit == THRESHOLD + 10
    rt.graph.groups[group] = [user.id for user in users + members(rt, 20)]  # a dynamic group's rule changed
    await approve(rt, job, BOB, None, roles_enforced=True)
    await run_job(rt)
    report, _ = await job_report(rt, rt.jobs.jobs[job.id])
    assert report["state"] == "failed" and "more users than the 5 counted" in report["error"]
    assert report["counts"]["discovered"] <= job.user_limit
    assert sum(rt.graph.revoke_count(rt.graph.users[user_id]) for user_id in rt.graph.groups[group]) == len(rt.tasks.records)
    assert len(rt.tasks.records) <= job.user_limit


async def test_an_unapproved_job_cannot_grow_to_the_threshold(rt: FakeRuntime) -> None:
    users = members(rt, THRESHOLD - 2)
    group = rt.graph.add_group(users)
    job = await request_job(rt, group_request(group), None, roles_enforced=False)
    rt.graph.groups[group] = [user.id for user in users + members(rt, 6)]
    await run_job(rt)
    report, _ = await job_report(rt, rt.jobs.jobs[job.id])
    assert report["state"] == "failed" and len(rt.tasks.records) < THRESHOLD


# --- listing jobs --------------------------------------------------------------------------------
async def test_jobs_are_listed_newest_first_by_state_and_page(rt: FakeRuntime) -> None:
    created = []
    for size in (THRESHOLD, 1, THRESHOLD, THRESHOLD):
        group = rt.graph.add_group(members(rt, size))
        created.append(await request_job(rt, group_request(group), ALICE, roles_enforced=True))
    await reject(rt, rt.jobs.jobs[created[2].id], BOB, None)
    waiting, token = await job_queries.read_jobs(rt, job_queries.parse_job_query({"state": "awaiting_approval"}))
    assert {report["id"] for report in waiting} == {created[0].id, created[3].id} and token is None
    first, token = await job_queries.read_jobs(rt, job_queries.parse_job_query({"top": "2"}))
    assert len(first) == 2 and token
    rest, token = await job_queries.read_jobs(rt, job_queries.parse_job_query({"top": "2", "continuationToken": token}))
    assert {report["id"] for report in first + rest} == {job.id for job in created}
    assert token and await job_queries.read_jobs(rt, job_queries.parse_job_query({"continuationToken": token})) == ([], None)
    assert [report["createdAt"] for report in first + rest] == sorted((r["createdAt"] for r in first + rest), reverse=True)


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"state": "waiting"}, "/state"),
        ({"top": "0"}, "/top"),
        ({"continuationToken": "bm9wZQ"}, "/continuationToken"),
        ({"user": "a"}, "/user"),
    ],
)
def test_a_bad_job_query_is_400_with_a_pointer(params: dict[str, str], pointer: str) -> None:
    with pytest.raises(ProblemError) as caught:
        job_queries.parse_job_query(params)
    assert caught.value.status == 400 and [error["pointer"] for error in caught.value.errors] == [pointer]


# --- through the HTTP functions, as the host calls them -------------------------------------------
def principal_header(principal: Principal, *roles: str) -> dict[str, str]:
    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": principal.object_id},
        {"typ": "name", "val": principal.display_name},
        *({"typ": "roles", "val": role} for role in roles),
    ]
    body = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return {"x-ms-client-principal": base64.b64encode(json.dumps(body).encode()).decode()}


@pytest.fixture
def api(rt: FakeRuntime, monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    """The HTTP functions over the in-memory ports, with App Service Authentication and app roles on."""
    monkeypatch.setattr(http_api, "runtime", lambda: rt)
    monkeypatch.setattr(http_api, "get_settings", lambda: rt.settings)
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    monkeypatch.setenv("REQUIRE_APP_ROLES", "true")
    return rt


async def call(name: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> func.HttpResponse:
    handler = registered_functions()[name].get_user_function()
    url = urlsplit(path)
    parts = url.path.strip("/").split("/")
    route_params = {"id": parts[2]} if len(parts) > 2 else {}
    method = "GET" if name == "list_jobs" else "POST"
    content = json.dumps(body).encode() if body is not None else b""
    request = func.HttpRequest(
        method,
        f"http://localhost{path}",
        headers={"content-type": "application/json", **(headers or {})},
        body=content,
        route_params=route_params,
        params=dict(parse_qsl(url.query)),  # as the host parses the query string
    )
    return await handler(request)


def problem(response: func.HttpResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_body()[:500]
    assert response.mimetype == PROBLEM_CONTENT_TYPE
    return json.loads(response.get_body())


async def test_http_preview_self_approval_approval_and_listing(api: FakeRuntime) -> None:
    rt = api
    group = rt.graph.add_group(members(rt, THRESHOLD))
    alice = principal_header(ALICE, "SignOuts.Create", "SignOuts.Approve", "SignOuts.Read")
    shown = await call("create_signouts", "/api/signouts", {"group": group, "preview": True}, alice)
    assert shown.status_code == 200 and nothing_created(rt)
    assert_valid("BulkPreview", json.loads(shown.get_body()))

    created = await call("create_signouts", "/api/signouts", {"group": group}, alice)
    assert created.status_code == 202
    summary = json.loads(created.get_body())["job"]
    assert (summary["state"], summary["count"]) == ("awaiting_approval", THRESHOLD)
    assert created.headers["Location"] == summary["statusUrl"]

    small = await call("create_signouts", "/api/signouts", {"group": rt.graph.add_group(members(rt, 1))}, alice)
    assert json.loads(small.get_body())["job"]["state"] == "enumerating"
    refused = problem(await call("approve_job", f"/api/jobs/{summary['id']}/approve", None, alice), 403)
    assert "requester" in refused["detail"]
    listed = await call("list_jobs", "/api/jobs?state=awaiting_approval", None, principal_header(BOB, "SignOuts.Read"))
    [waiting] = json.loads(listed.get_body())["jobs"]
    assert waiting["id"] == summary["id"] and waiting["statusUrl"].endswith(f"/api/jobs/{summary['id']}")
    assert_valid("JobPage", without_nulls(json.loads(listed.get_body())))

    bob = principal_header(BOB, "SignOuts.Approve")
    approved = await call("approve_job", f"/api/jobs/{summary['id']}/approve", {"comment": "ok, INC-9"}, bob)
    assert approved.status_code == 202, approved.get_body()
    report = json.loads(approved.get_body())
    assert (report["state"], report["approvedBy"]["objectId"]) == ("enumerating", BOB.object_id)
    assert_valid("Job", without_nulls(report))
    assert problem(await call("reject_job", f"/api/jobs/{summary['id']}/reject", None, bob), 409)["title"]


async def test_http_roles_and_bodies_of_decisions(api: FakeRuntime) -> None:
    rt = api
    group = rt.graph.add_group(members(rt, THRESHOLD))
    job = await request_job(rt, group_request(group), ALICE, roles_enforced=True)
    creator_only = principal_header(BOB, "SignOuts.Create", "SignOuts.Read")
    assert (
        "SignOuts.Approve" in problem(await call("approve_job", f"/api/jobs/{job.id}/approve", None, creator_only), 403)["detail"]
    )
    bob = principal_header(BOB, "SignOuts.Approve")
    assert (
        problem(await call("reject_job", f"/api/jobs/{job.id}/reject", {"reason": "x"}, bob), 400)["errors"][0]["pointer"]
        == "/reason"
    )
    assert problem(await call("reject_job", f"/api/jobs/{uuid.uuid4()}/reject", None, bob), 404)
    rejected = await call("reject_job", f"/api/jobs/{job.id}/reject", {"comment": "not today"}, bob)
    assert rejected.status_code == 200 and json.loads(rejected.get_body())["state"] == "rejected"


async def test_http_function_keys_only_over_the_threshold_is_403_saying_how_to_fix_it(
    rt: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_api, "runtime", lambda: rt)
    monkeypatch.setattr(http_api, "get_settings", lambda: rt.settings)
    monkeypatch.delenv("REQUIRE_APP_ROLES", raising=False)
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    group = rt.graph.add_group(members(rt, THRESHOLD))
    refused = problem(await call("create_signouts", "/api/signouts", {"group": group}), 403)
    assert "REQUIRE_APP_ROLES=true" in refused["detail"] and "smaller group" in refused["detail"]
    assert nothing_created(rt)
    job = await request_job(rt, group_request(rt.graph.add_group(members(rt, 1))), None, roles_enforced=False)
    rt.jobs.update(job.id, approval_expires_at=utcnow() + timedelta(hours=1), requested_by=ALICE)  # settings changed since
    assert "REQUIRE_APP_ROLES" in problem(await call("approve_job", f"/api/jobs/{job.id}/approve"), 403)["detail"]


async def test_http_a_target_graph_cannot_size_is_503_and_creates_nothing(api: FakeRuntime) -> None:
    rt = api
    group = rt.graph.add_group(members(rt, 2))
    rt.graph.fail_next("count_users", transient(retry_after=7, status=429))
    alice = principal_header(ALICE, "SignOuts.Create")
    response = await call("create_signouts", "/api/signouts", {"group": group}, alice)
    assert problem(response, 503)["title"] == "Directory unavailable" and response.headers["Retry-After"] == "7"
    assert nothing_created(rt)
    unknown = problem(await call("create_signouts", "/api/signouts", {"group": str(uuid.uuid4()), "preview": True}, alice), 422)
    assert "404" in unknown["detail"]


def test_job_reports_validate_against_the_document() -> None:
    from shared.domain.jobs import JOB_STATES
    from tests.unit.test_openapi import DOC

    assert DOC["definitions"]["JobState"]["enum"] == list(JOB_STATES)
    [state] = [p for p in DOC["paths"]["/jobs"]["get"]["parameters"] if p["name"] == "state"]
    assert state["enum"] == list(JOB_STATES)
    assert set(job_queries.KNOWN_PARAMS) - {"code"} == {p["name"] for p in DOC["paths"]["/jobs"]["get"]["parameters"]}
    assert DOC["definitions"]["SignOutRequest"]["properties"]["confirm"]["enum"] == [ALL_USERS_CONFIRMATION]


async def test_every_job_state_is_a_report_the_document_describes(rt: FakeRuntime, waiting: tuple[Job, list[FakeUser]]) -> None:
    job, _ = waiting
    samples = [
        job,
        replace(job, approved_at=utcnow(), approved_by=BOB, decision_comment="ok"),
        replace(job, rejected_at=utcnow(), rejected_by=BOB, finished_at=utcnow()),
        replace(job, approval_expires_at=utcnow() - timedelta(seconds=1)),
    ]
    for sample in samples:
        report, _ = await job_report(rt, replace(sample, etag=rt.jobs.jobs[job.id].etag))
        assert_valid("Job", without_nulls({**report, "statusUrl": "https://app.example/api/jobs/x"}))
