"""Before a mass sign-out (issue 10), through HTTP on the dev host with Easy Auth principals: a
preview creates nothing; a job at BULK_APPROVAL_THRESHOLD waits; its requester cannot approve it;
a second principal's approval runs it to `finished` with every member revoked once; a rejected or
expired job revokes nobody; with function keys only, a job over the threshold is refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from tests.integration.helpers import REQUEST_TIMEOUT, Sim, new_user, wait_for_terminal
from tests.integration.test_easy_auth import principal
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration
THRESHOLD = 3
CREATOR = {"object_id": str(uuid.uuid4()), "name": "SOC analyst"}
APPROVER = {"object_id": str(uuid.uuid4()), "name": "SOC lead"}
CREATE, READ, APPROVE = "SignOuts.Create", "SignOuts.Read", "SignOuts.Approve"
EASY_AUTH = {
    "WEBSITE_AUTH_ENABLED": "True",
    "REQUIRE_APP_ROLES": "true",
    "BULK_APPROVAL_THRESHOLD": str(THRESHOLD),
    "PROTECTED_USERS": "breakglass@contoso.com",
}


@pytest.fixture(scope="module")
def approvals_stack() -> Iterator[LocalStack]:
    with LocalStack(settings=EASY_AUTH) as stack:
        yield stack


@pytest.fixture(scope="module")
def approvals_sim(approvals_stack: LocalStack) -> Sim:
    return Sim(approvals_stack.sim_url)


def client(stack: LocalStack, who: dict[str, str], *roles: str) -> httpx.Client:
    return httpx.Client(base_url=stack.base_url, headers=principal(*roles, **who), timeout=REQUEST_TIMEOUT)


@pytest.fixture(scope="module")
def creator(approvals_stack: LocalStack) -> Iterator[httpx.Client]:
    """The requester: creates jobs and reads them, and holds SignOuts.Approve too (it must not help)."""
    with client(approvals_stack, CREATOR, CREATE, READ, APPROVE) as api:
        yield api


@pytest.fixture(scope="module")
def approver(approvals_stack: LocalStack) -> Iterator[httpx.Client]:
    with client(approvals_stack, APPROVER, APPROVE, READ) as api:
        yield api


def group_of(sim: Sim, count: int, *extra: str) -> tuple[str, list[dict[str, Any]]]:
    members = [new_user(sim, f"approval{n}") for n in range(count)]
    group = {"id": str(uuid.uuid4()), "members": [member["id"] for member in members] + list(extra)}
    sim.http.post("/_sim/groups", json=[group]).raise_for_status()
    return group["id"], members


def graph_calls_for(sim: Sim, group: str) -> list[str]:
    return [f"{r['method']} {r['path']}?{r['query']}" for r in sim.requests() if group in r["path"]]


def queued_messages(stack: LocalStack) -> int:
    names = ("signout-requests", "signout-bulk", "signout-bulk-pages")
    return sum(
        QueueClient.from_connection_string(stack.azurite.connection_string, name).get_queue_properties().approximate_message_count
        for name in names
    )


def test_a_preview_counts_the_target_and_creates_nothing(
    approvals_stack: LocalStack, creator: httpx.Client, approvals_sim: Sim
) -> None:
    breakglass = approvals_sim.user("breakglass@contoso.com")
    guest = new_user(approvals_sim, "guest", userType="Guest")
    group, members = group_of(approvals_sim, THRESHOLD, breakglass["id"], guest["id"])
    response = creator.post("/api/signouts", json={"group": group, "preview": True})
    assert response.status_code == 200, response.text
    preview = response.json()["preview"]
    assert {key: preview[key] for key in ("target", "count", "protectedSkipped", "guests", "approvalRequired")} == {
        "target": {"group": group},
        "count": THRESHOLD + 2,
        "protectedSkipped": 1,
        "guests": 1,
        "approvalRequired": True,
    }
    assert sorted(preview["sample"]) == sorted(
        [m["userPrincipalName"] for m in members] + [breakglass["userPrincipalName"], guest["userPrincipalName"]]
    )
    assert preview["estimatedMinutes"] == 1
    assert creator.get("/api/jobs").json()["jobs"] == []  # no job
    assert creator.get("/api/signouts", params={"user": members[0]["id"]}).json()["tasks"] == []  # no task
    assert queued_messages(approvals_stack) == 0  # no queue message
    calls = graph_calls_for(approvals_sim, group)
    assert all("$count" in call or "$top=20" in call for call in calls) and len(calls) == 4  # 3 counts, one page of 20


def test_over_the_threshold_the_job_waits_and_only_a_second_principal_starts_it(
    creator: httpx.Client, approver: httpx.Client, approvals_sim: Sim
) -> None:
    group, members = group_of(approvals_sim, THRESHOLD)
    response = creator.post("/api/signouts", json={"group": group, "description": "INC-10 compromised team"})
    assert response.status_code == 202, response.text
    assert response.json()["job"]["state"] == "awaiting_approval" and response.json()["job"]["count"] == THRESHOLD
    url = response.headers["Location"]
    waiting = creator.get(url)
    assert waiting.status_code == 202 and waiting.json()["state"] == "awaiting_approval"
    assert waiting.json()["requestedBy"]["objectId"] == CREATOR["object_id"]
    listed = approver.get("/api/jobs", params={"state": "awaiting_approval"}).json()["jobs"]
    assert waiting.json()["id"] in [job["id"] for job in listed]

    refused = creator.post(f"{url}/approve")
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("application/problem+json")
    assert "requester" in refused.json()["detail"]
    assert all("$count" in call for call in graph_calls_for(approvals_sim, group)), "nothing enumerated before the approval"

    approved = approver.post(f"{url}/approve", json={"comment": "confirmed with the incident lead"})
    assert approved.status_code == 202, approved.text
    assert approver.post(f"{url}/approve").status_code == 202  # idempotent
    job = wait_for_terminal(creator, url)
    assert job["state"] == "finished" and job["counts"]["succeeded"] == THRESHOLD
    assert job["approvedBy"]["objectId"] == APPROVER["object_id"] and job["approvedAt"] >= job["createdAt"]
    assert [approvals_sim.user(m["id"])["revokeCount"] for m in members] == [1] * THRESHOLD


def test_a_rejected_job_revokes_nobody(creator: httpx.Client, approver: httpx.Client, approvals_sim: Sim) -> None:
    group, members = group_of(approvals_sim, THRESHOLD)
    url = creator.post("/api/signouts", json={"group": group}).headers["Location"]
    rejected = approver.post(f"{url}/reject", json={"comment": "wrong group"})
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    assert rejected.json()["rejectedBy"]["objectId"] == APPROVER["object_id"]
    assert approver.post(f"{url}/approve").status_code == 409
    job = wait_for_terminal(creator, url)
    assert (job["state"], job["counts"]["discovered"]) == ("rejected", 0)
    assert [approvals_sim.user(m["id"])["revokeCount"] for m in members] == [0] * THRESHOLD
    assert all("$count" in call for call in graph_calls_for(approvals_sim, group))


def test_an_undecided_job_expires_and_revokes_nobody() -> None:
    with LocalStack(settings={**EASY_AUTH, "BULK_APPROVAL_TTL_SECONDS": "2"}) as stack:
        sim = Sim(stack.sim_url)
        group, members = group_of(sim, THRESHOLD)
        with client(stack, CREATOR, CREATE, READ) as creator, client(stack, APPROVER, APPROVE, READ) as approver:
            url = creator.post("/api/signouts", json={"group": group}).headers["Location"]
            job = wait_for_terminal(creator, url)  # 202 while it waits, 200 once it has expired
            assert job["state"] == "expired" and job["finishedAt"] >= job["approvalExpiresAt"]
            late = approver.post(f"{url}/approve")
            assert late.status_code == 409 and "expired" in late.json()["detail"]
        assert [sim.user(m["id"])["revokeCount"] for m in members] == [0] * THRESHOLD
        assert all("$count" in call for call in graph_calls_for(sim, group))


def test_with_function_keys_only_a_job_over_the_threshold_is_refused(api: httpx.Client, sim: Sim) -> None:
    """The session stack: no App Service Authentication, the default threshold (1000 users)."""
    users = [{"id": str(uuid.uuid4()), "userPrincipalName": f"crowd{n}-{uuid.uuid4().hex[:8]}@contoso.com"} for n in range(1000)]
    sim.add_users(*users)
    group = {"id": str(uuid.uuid4()), "members": [user["id"] for user in users]}
    sim.http.post("/_sim/groups", json=[group]).raise_for_status()
    response = api.post("/api/signouts", json={"group": group["id"]})
    assert response.status_code == 403 and response.headers["content-type"].startswith("application/problem+json")
    assert "REQUIRE_APP_ROLES=true" in response.json()["detail"] and "smaller group" in response.json()["detail"]
    assert group["id"] not in [job["target"].get("group") for job in api.get("/api/jobs").json()["jobs"]]
    assert [call.split("?")[0].rsplit("/", 1)[-1] for call in graph_calls_for(sim, group["id"])] == ["$count"]
