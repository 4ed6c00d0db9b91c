"""Bulk sign-out jobs: a group's transitive members, all users, paging, protected users,
resume after a crash mid-fan-out, and priority isolation from alert-driven sign-outs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from shared.domain.messages import JobPageMessage
from shared.domain.tasks import parse_iso
from tests.integration.helpers import REQUEST_TIMEOUT, Sim, new_user, sign_out, wait_for_terminal, wait_until
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration
BULK_SETTINGS = {
    "GRAPH_PAGE_SIZE": "4",  # several pages from a small directory
    "RETRY_BUDGET_MINUTES": "0.25",  # a failing task gives up after 15 s
    "RETRY_BASE_SECONDS": "0.5",
    "DEVHOST_MESSAGE_LEASE_SECONDS": "3",
    "PROTECTED_USERS": "breakglass@contoso.com",
    "ALLOW_ALL_USERS": "true",
    "BULK_BACKLOG_PAGES": "3",  # 12 messages: leftovers of earlier tests (deferred copies) do not stall a job
}


@pytest.fixture(scope="module")
def bulk_stack() -> Iterator[LocalStack]:
    with LocalStack(settings=BULK_SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def bulk_api(bulk_stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bulk_stack.base_url, timeout=REQUEST_TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def bulk_sim(bulk_stack: LocalStack) -> Sim:
    return Sim(bulk_stack.sim_url)


def group_of(sim: Sim, count: int, *extra: str) -> tuple[str, list[dict[str, Any]]]:
    members = [new_user(sim, f"member{i}") for i in range(count)]
    inner = {"id": str(uuid.uuid4()), "members": [members[-1]["id"]]}  # nested: a transitive member
    outer = {"id": str(uuid.uuid4()), "members": [m["id"] for m in members[:-1]] + [inner["id"], *extra]}
    sim.http.post("/_sim/groups", json=[inner, outer]).raise_for_status()
    return outer["id"], members


def test_group_job_signs_out_transitive_members_once_and_skips_protected(bulk_api: httpx.Client, bulk_sim: Sim) -> None:
    breakglass = bulk_sim.user("breakglass@contoso.com")
    group, members = group_of(bulk_sim, 9, breakglass["id"])
    response = bulk_api.post("/api/signouts", json={"group": group, "description": "INC-7 compromised team"})
    assert response.status_code == 202, response.text
    job = wait_for_terminal(bulk_api, response.headers["Location"])
    assert job["state"] == "finished" and job["target"] == {"group": group}
    assert job["counts"] == {"discovered": 10, "queued": 0, "inProgress": 0, "succeeded": 9, "failed": 0, "skipped": 1}
    assert job["pagesEnumerated"] == 3  # 10 members, 4 per page
    assert job["createdAt"] <= job["startedAt"] <= job["finishedAt"]
    assert all(bulk_sim.user(m["id"])["revokeCount"] == 1 for m in members)
    assert bulk_sim.user(breakglass["id"])["revokeCount"] == 0
    task = bulk_api.get("/api/signouts", params={"user": members[0]["id"]}).json()["tasks"][0]
    assert (task["jobId"], task["source"], task["description"]) == (job["id"], "bulk", "INC-7 compromised team")
    revokes = [r for r in bulk_sim.requests() if r["method"] == "POST" and any(m["id"] in r["path"] for m in members)]
    assert {r["x-ms-throttle-priority"] for r in revokes} == {"low"}
    assert bulk_api.post(response.headers["Location"] + "/cancel").status_code == 409  # finished: nothing to cancel


def test_all_users_needs_the_explicit_confirmation(bulk_api: httpx.Client) -> None:
    response = bulk_api.post("/api/signouts", json={"allUsers": True})
    assert response.status_code == 400
    assert [e["pointer"] for e in response.json()["errors"]] == ["/confirm"]


def test_all_users_is_refused_unless_the_app_allows_it(api: httpx.Client) -> None:
    response = api.post("/api/signouts", json={"allUsers": True, "confirm": "sign out all users"})
    assert response.status_code == 403
    assert "ALLOW_ALL_USERS" in response.json()["detail"]


@pytest.mark.parametrize(
    "body", [{"group": "not-a-guid"}, {"group": "6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b", "users": ["a@contoso.com"]}]
)
def test_bad_bulk_requests_are_400(bulk_api: httpx.Client, body: dict[str, Any]) -> None:
    assert bulk_api.post("/api/signouts", json=body).status_code == 400


def test_unknown_and_malformed_job_ids(bulk_api: httpx.Client) -> None:
    assert bulk_api.get("/api/jobs/nope").status_code == 400
    assert bulk_api.get(f"/api/jobs/{uuid.uuid4()}").status_code == 404


def test_crash_mid_fan_out_resumes_without_duplicates(bulk_stack: LocalStack, bulk_api: httpx.Client, bulk_sim: Sim) -> None:
    group, members = group_of(bulk_sim, 12)
    bulk_sim.http.post("/_sim/config", json={"latency_ms": 1500}).raise_for_status()  # every Graph call is slow
    try:
        url = bulk_api.post("/api/signouts", json={"group": group}).headers["Location"]
        wait_until(lambda: bulk_api.get(url).json()["pagesEnumerated"] >= 1, "first page enumerated", interval=0.05)
        bulk_stack.devhost.kill()  # type: ignore[union-attr]  # page 2 and page 1's tasks are in flight
    finally:
        bulk_sim.http.post("/_sim/config", json={"latency_ms": 0})
    bulk_stack.start_devhost()
    job = wait_for_terminal(bulk_api, url)
    assert job["counts"]["discovered"] == 12 and job["counts"]["succeeded"] == 12
    for member in members:
        tasks = [
            t for t in bulk_api.get("/api/signouts", params={"user": member["id"]}).json()["tasks"] if t["jobId"] == job["id"]
        ]
        assert len(tasks) == 1  # one task per user and job, whatever was redelivered
        revocations = bulk_sim.user(member["id"])["revokeCount"]
        assert 1 <= revocations <= tasks[0]["attempts"]  # never more than its attempts imply


def test_single_sign_out_is_not_delayed_by_a_running_bulk_job(bulk_api: httpx.Client, bulk_sim: Sim) -> None:
    """Not queued behind the job: it finishes while the job's backlog still waits (how fast: bench.priority)."""
    group, _ = group_of(bulk_sim, 40)
    bulk_sim.http.post("/_sim/config", json={"latency_ms": 500}).raise_for_status()  # the job takes a while
    try:
        job_url = bulk_api.post("/api/signouts", json={"group": group}).headers["Location"]
        wait_until(lambda: bulk_api.get(job_url).json()["counts"]["queued"] > 0, "bulk tasks waiting to run")
        user = new_user(bulk_sim, "urgent")
        [task] = sign_out(bulk_api, user["id"]).json()["tasks"]
        record = wait_for_terminal(bulk_api, task["statusUrl"])
        assert record["status"] == "succeeded"
        assert bulk_api.get(job_url).json()["state"] != "finished"  # the bulk job was still running
        revoke = [r for r in bulk_sim.requests() if r["method"] == "POST" and user["id"] in r["path"]]
        assert revoke[0]["x-ms-throttle-priority"] == "high"
    finally:
        bulk_sim.http.post("/_sim/config", json={"latency_ms": 0})
    wait_for_terminal(bulk_api, job_url)


def test_job_for_an_unknown_group_fails_with_the_reason(bulk_api: httpx.Client) -> None:
    response = bulk_api.post("/api/signouts", json={"group": str(uuid.uuid4())})
    job = wait_for_terminal(bulk_api, response.headers["Location"])
    assert job["state"] == "failed"
    assert "404" in job["error"] and job["counts"]["discovered"] == 0


def test_idempotency_key_makes_a_retried_bulk_request_one_job(bulk_api: httpx.Client, bulk_sim: Sim) -> None:
    group, members = group_of(bulk_sim, 3)
    key = {"Idempotency-Key": f"bulk-{uuid.uuid4()}"}
    first = bulk_api.post("/api/signouts", json={"group": group}, headers=key)
    second = bulk_api.post("/api/signouts", json={"group": group}, headers=key)
    assert first.json()["job"]["id"] == second.json()["job"]["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    wait_for_terminal(bulk_api, first.headers["Location"])
    assert [bulk_sim.user(m["id"])["revokeCount"] for m in members] == [1, 1, 1]
    assert bulk_api.post("/api/signouts", json={"group": group, "description": "other"}, headers=key).status_code == 422


def job_token(stack: LocalStack, job_id: str) -> str:
    table = TableClient.from_connection_string(stack.azurite.connection_string, "signouttasks")
    return str(table.get_entity(job_id, "job")["MessageToken"])


def test_a_page_graph_keeps_failing_fails_the_job_once_the_retry_budget_is_spent(bulk_api: httpx.Client, bulk_sim: Sim) -> None:
    group, members = group_of(bulk_sim, 3)
    bulk_sim.http.post(
        "/_sim/faults", json=[{"status": 503, "path_contains": group, "query_contains": "$top", "count": 100000}]
    ).raise_for_status()
    try:
        response = bulk_api.post("/api/signouts", json={"group": group})
        job = wait_for_terminal(bulk_api, response.headers["Location"])
    finally:
        bulk_sim.http.request("DELETE", "/_sim/faults")
    assert job["state"] == "failed" and "page 1" in job["error"] and "retry budget" in job["error"]
    started, finished = parse_iso(job["createdAt"]), parse_iso(job["finishedAt"])
    assert started and finished and finished - started >= timedelta(seconds=15)  # RETRY_BUDGET_MINUTES=0.25
    assert job["pagesEnumerated"] == 0
    assert all(bulk_sim.user(m["id"])["revokeCount"] == 0 for m in members)


def test_a_throttled_page_is_read_again_after_retry_after_and_the_job_finishes(bulk_api: httpx.Client, bulk_sim: Sim) -> None:
    """Trust issue #8: more 429s than the host's maxDequeueCount (5) no longer fail a job."""
    group, members = group_of(bulk_sim, 3)
    throttle = {
        "status": 429,
        "path_contains": group,
        "query_contains": "$top",
        "count": 6,
        "headers": {"Retry-After": "1"},
        "code": "TooManyRequests",
    }
    bulk_sim.http.post("/_sim/faults", json=[throttle]).raise_for_status()
    response = bulk_api.post("/api/signouts", json={"group": group})
    job = wait_for_terminal(bulk_api, response.headers["Location"])
    assert (job["state"], job["error"], job["counts"]["succeeded"]) == ("finished", None, 3)
    assert [bulk_sim.user(m["id"])["revokeCount"] for m in members] == [1, 1, 1]


def test_a_redelivered_page_restores_missing_index_rows_and_duplicates_none(
    bulk_stack: LocalStack, bulk_api: httpx.Client, bulk_sim: Sim
) -> None:
    group, members = group_of(bulk_sim, 3)
    url = bulk_api.post("/api/signouts", json={"group": group}).headers["Location"]
    job = wait_for_terminal(bulk_api, url)
    [task] = [
        t for t in bulk_api.get("/api/signouts", params={"user": members[0]["id"]}).json()["tasks"] if t["jobId"] == job["id"]
    ]
    # The last run stopped between the task record and its user's index row: remove the row.
    table = TableClient.from_connection_string(bulk_stack.azurite.connection_string, "signouttasks")
    query = "TaskId eq @id and PartitionKey ne @log"
    [user_row] = list(table.query_entities(query, parameters={"id": task["id"], "log": "log"}))
    table.delete_entity(user_row["PartitionKey"], user_row["RowKey"])
    redelivered = JobPageMessage(job["id"], 1, job_token(bulk_stack, job["id"])).to_text()
    QueueClient.from_connection_string(bulk_stack.azurite.connection_string, "signout-bulk-pages").send_message(redelivered)
    wait_until(
        lambda: [
            t for t in bulk_api.get("/api/signouts", params={"user": members[0]["id"]}).json()["tasks"] if t["jobId"] == job["id"]
        ],
        "the redelivered page restored the user's index row",
        interval=0.2,
    )
    log = bulk_api.get("/api/signouts", params={"since": job["createdAt"], "top": "100"}).json()["tasks"]
    assert sorted(t["id"] for t in log if t["jobId"] == job["id"]) == sorted({t["id"] for t in log if t["jobId"] == job["id"]})
    assert len([t for t in log if t["jobId"] == job["id"]]) == 3
    assert all(bulk_sim.user(m["id"])["revokeCount"] == 1 for m in members)


def test_cancelling_a_job_skips_the_tasks_that_have_not_started(bulk_api: httpx.Client, bulk_sim: Sim) -> None:
    group, members = group_of(bulk_sim, 30)
    # Graph throttles the first revoke for 8 s: the job is cancelled while its tasks wait.
    throttle = {"status": 429, "method": "POST", "path_contains": "revokeSignInSessions", "headers": {"Retry-After": "8"}}
    throttled_before = bulk_sim.http.get("/_sim/stats").json()["status"].get("429", 0)
    bulk_sim.http.post("/_sim/faults", json=[throttle]).raise_for_status()
    url = bulk_api.post("/api/signouts", json={"group": group}).headers["Location"]
    wait_until(lambda: bulk_sim.http.get("/_sim/stats").json()["status"].get("429", 0) > throttled_before, "a revoke throttled")
    cancelled = bulk_api.post(url + "/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["state"] == "cancelling" and cancelled.json()["cancelledAt"]
    assert bulk_api.post(url + "/cancel").json()["cancelledAt"] == cancelled.json()["cancelledAt"]  # idempotent
    job = wait_for_terminal(bulk_api, url)
    counts = job["counts"]
    assert job["state"] == "cancelled" and job["pagesEnumerated"] < 8  # 30 users in pages of 4: not all read
    assert counts["skipped"] > 0 and counts["failed"] == 0 and counts["queued"] == counts["inProgress"] == 0
    assert counts["succeeded"] + counts["skipped"] == counts["discovered"] < 30
    revoked = [m for m in members if bulk_sim.user(m["id"])["revokeCount"]]
    assert len(revoked) == counts["succeeded"]  # nobody skipped was signed out
    skipped = [
        t
        for m in members
        for t in bulk_api.get("/api/signouts", params={"user": m["id"]}).json()["tasks"]
        if t["status"] == "skipped"
    ]
    assert {t["error"]["category"] for t in skipped} == {"cancelled"} and len(skipped) == counts["skipped"]
    again = bulk_api.post(url + "/cancel")
    assert again.status_code == 200 and again.json()["cancelledAt"] == cancelled.json()["cancelledAt"]


def test_cancelling_unknown_jobs(bulk_api: httpx.Client) -> None:
    assert bulk_api.post(f"/api/jobs/{uuid.uuid4()}/cancel").status_code == 404
    assert bulk_api.post("/api/jobs/nope/cancel").status_code == 400


def test_enumeration_waits_while_the_bulk_queue_holds_half_a_page(bulk_api: httpx.Client, bulk_sim: Sim) -> None:
    group, members = group_of(bulk_sim, 60)  # 15 pages of 4
    # Graph throttles the first revoke for 4 s: the workers stop while enumeration could go on.
    throttle = {"status": 429, "method": "POST", "path_contains": "revokeSignInSessions", "headers": {"Retry-After": "4"}}
    bulk_sim.http.post("/_sim/faults", json=[throttle]).raise_for_status()
    url = bulk_api.post("/api/signouts", json={"group": group}).headers["Location"]
    unstarted: list[int] = []

    def finished() -> dict[str, Any] | None:
        response = bulk_api.get(url)
        if response.status_code == 202:
            unstarted.append(response.json()["counts"]["queued"])
            return None
        return response.json()

    job = wait_until(finished, lambda: f"job finished (backlog so far: {unstarted[-5:]})", interval=0.2)
    assert job["counts"]["succeeded"] == 60 and job["state"] == "finished"
    # The next page is read once the bulk queue holds under 3 pages (12 messages): the backlog
    # reached a page and never passed four; without the limit it reaches 56.
    assert 4 <= max(unstarted) <= 16
    assert all(bulk_sim.user(m["id"])["revokeCount"] == 1 for m in members)
