"""End to end through the dev host: HTTP -> Azurite queue -> worker -> Graph simulator -> Azurite table."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

import httpx
import pytest

from shared.domain.tasks import parse_iso
from tests.integration.helpers import Sim, new_user, sign_out, wait_for_terminal, wait_until

pytestmark = pytest.mark.integration


def graph_calls(sim: Sim, task_id: str) -> list[dict]:
    return [
        r
        for r in sim.requests()
        if r.get("client-request-id") == task_id or r.get("headers", {}).get("client-request-id") == task_id
    ]


def test_sign_out_succeeds_and_is_verified(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "alice")
    response = sign_out(api, user["userPrincipalName"], description="INC-1 phished", correlationId="corr-1")
    [task] = response.json()["tasks"]
    assert response.headers["Location"] == task["statusUrl"]
    assert int(response.headers["Retry-After"]) >= 1
    assert task["status"] == "queued" and task["user"] == user["userPrincipalName"]

    record = wait_for_terminal(api, task["statusUrl"])

    assert record["status"] == "succeeded"
    assert record["verified"] is True
    assert record["resolvedUser"]["id"] == user["id"]
    assert record["graphRequestId"]
    assert (record["description"], record["correlationId"], record["attempts"]) == ("INC-1 phished", "corr-1", 1)
    assert datetime.fromisoformat(record["sessionsValidFrom"]) >= datetime.fromisoformat(record["createdAt"]).replace(
        microsecond=0
    )
    assert sim.user(user["id"])["revokeCount"] == 1


def test_graph_sees_exact_paths_headers_and_encoding(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "bob")
    [task] = sign_out(api, user["userPrincipalName"]).json()["tasks"]
    wait_for_terminal(api, task["statusUrl"])
    calls = [r for r in sim.requests() if user["id"] in r["path"] or "bob-" in r["path"]]
    paths = [(r["method"], r["path"]) for r in calls]
    assert ("GET", f"/v1.0/users/{user['userPrincipalName'].replace('@', '%40')}") in paths
    assert ("POST", f"/v1.0/users/{user['id']}/revokeSignInSessions") in paths
    revoke = next(r for r in calls if r["method"] == "POST")
    assert revoke["client-request-id"] == task["id"]
    assert revoke["x-ms-throttle-priority"] == "high"


def test_guest_is_signed_out_but_not_claimed_verified(api: httpx.Client, sim: Sim) -> None:
    guest = new_user(sim, "guest", userType="Guest")
    guest_upn = guest["userPrincipalName"].replace("@contoso.com", "_fabrikam.com#EXT#@contoso.onmicrosoft.com")
    sim.add_users({**guest, "userPrincipalName": guest_upn})
    [task] = sign_out(api, guest_upn).json()["tasks"]
    record = wait_for_terminal(api, task["statusUrl"])
    assert record["status"] == "succeeded"
    assert record["verified"] is False
    assert any("Guest" in warning for warning in record["warnings"])
    assert any("%23EXT%23%40" in r["path"] for r in sim.requests() if r["method"] == "GET")


def test_missing_permission_fails_with_the_fix(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "carol")
    sim.fault(method="POST", user=user["id"], count=1, action="status", status=403, code="Authorization_RequestDenied")
    [task] = sign_out(api, user["id"]).json()["tasks"]
    record = wait_for_terminal(api, task["statusUrl"])
    assert record["status"] == "failed"
    assert record["error"]["category"] == "permission_denied"
    assert "User.RevokeSessions.All" in record["error"]["hint"]
    assert record["error"]["graphRequestId"]
    assert record["attempts"] == 1


def test_unknown_user_fails_as_not_found(api: httpx.Client) -> None:
    [task] = sign_out(api, f"nobody-{uuid.uuid4().hex[:6]}@contoso.com").json()["tasks"]
    record = wait_for_terminal(api, task["statusUrl"])
    assert (record["status"], record["error"]["category"]) == ("failed", "user_not_found")
    assert record["error"]["code"] == "Request_ResourceNotFound"


def test_throttled_then_succeeds_honouring_retry_after(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "dave")
    sim.fault(
        method="POST", user=user["id"], count=1, action="status", status=429, code="TooManyRequests", headers={"Retry-After": "2"}
    )
    started = time.monotonic()
    [task] = sign_out(api, user["id"]).json()["tasks"]
    record = wait_for_terminal(api, task["statusUrl"])
    assert record["status"] == "succeeded"
    assert record["attempts"] == 2
    assert time.monotonic() - started >= 2  # waited as told, no busy loop
    assert sim.user(user["id"])["revokeCount"] == 1


def test_server_errors_exhaust_the_retry_budget_and_give_up_with_the_last_error(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "erin")
    sim.fault(
        method="POST",
        user=user["id"],
        count=1000,
        action="status",
        status=503,
        code="ServiceUnavailable",
        headers={"Retry-After": "1"},
    )
    [task] = sign_out(api, user["id"]).json()["tasks"]
    record = wait_for_terminal(api, task["statusUrl"])
    assert record["status"] == "failed"
    assert record["error"]["category"] == "gave_up"
    assert "retry budget of 0.25 minute(s)" in record["error"]["message"]
    # Retried for the whole budget (RETRY_BUDGET_MINUTES=0.25 in the test stack), not a count of attempts.
    assert parse_iso(record["completedAt"]) - parse_iso(record["createdAt"]) >= timedelta(seconds=15)
    assert record["attempts"] >= 3
    assert record["error"]["httpStatus"] == 503 and record["error"]["graphRequestId"]


def test_connection_reset_is_retried(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "frank")
    sim.fault(method="POST", user=user["id"], count=1, action="reset")
    [task] = sign_out(api, user["id"]).json()["tasks"]
    record = wait_for_terminal(api, task["statusUrl"])
    assert (record["status"], record["attempts"]) == ("succeeded", 2)


def test_protected_accounts_are_skipped_by_given_and_resolved_identity(api: httpx.Client, sim: Sim) -> None:
    breakglass = sim.user("breakglass@contoso.com")
    by_upn, by_id = sign_out(api, "BreakGlass@contoso.com", breakglass["id"]).json()["tasks"]
    for task in (by_upn, by_id):
        record = wait_for_terminal(api, task["statusUrl"])
        assert record["status"] == "skipped"
        assert record["error"]["category"] == "protected_account"
    assert sim.user(breakglass["id"])["revokeCount"] == 0


def test_idempotency_key_replays_and_refuses_another_body(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "grace")
    key = {"Idempotency-Key": f"alert-{uuid.uuid4()}"}
    first = sign_out(api, user["id"], description="x", headers=key)
    second = sign_out(api, user["id"], description="x", headers=key)
    assert [t["id"] for t in first.json()["tasks"]] == [t["id"] for t in second.json()["tasks"]]
    assert second.headers.get("Idempotent-Replayed") == "true"
    wait_for_terminal(api, first.json()["tasks"][0]["statusUrl"])
    assert sim.user(user["id"])["revokeCount"] == 1
    other = api.post("/api/signouts", json={"users": [user["id"]], "description": "y"}, headers=key)
    assert other.status_code == 422
    assert other.headers["content-type"].startswith("application/problem+json")


def test_a_request_for_a_user_with_a_queued_task_joins_it(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "heidi")
    # The first attempt is throttled, so the task waits queued for 6 s before its retry: time enough,
    # even on a busy machine, to see it waiting and send the second request.
    sim.fault(
        method="POST", user=user["id"], count=1, action="status", status=429, code="TooManyRequests", headers={"Retry-After": "6"}
    )
    [first] = sign_out(api, user["id"]).json()["tasks"]

    def waiting_for_its_retry() -> bool:
        record = api.get(first["statusUrl"]).json()
        return record["attempts"] >= 1 and record["status"] == "queued"

    wait_until(waiting_for_its_retry, "the first task waits for its retry")
    [second] = sign_out(api, user["id"].upper()).json()["tasks"]
    assert second["id"] == first["id"]
    assert wait_for_terminal(api, first["statusUrl"])["status"] == "succeeded"
    assert sim.user(user["id"])["revokeCount"] == 1
    [third] = sign_out(api, user["id"]).json()["tasks"]  # finished tasks are not reused
    assert third["id"] != first["id"]
