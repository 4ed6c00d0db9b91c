"""The HTTP surface: bad input, injection attempts, status reads, the remediation log, health."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.integration.helpers import Sim, new_user, sign_out, wait_for_terminal

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"]
    return body


def test_malformed_json_is_400(api: httpx.Client) -> None:
    assert_problem(api.post("/api/signouts", content=b"{nope", headers={"content-type": "application/json"}), 400)


def test_wrong_content_type_is_415(api: httpx.Client) -> None:
    assert_problem(
        api.post("/api/signouts", content=b"users=a@b.com", headers={"content-type": "application/x-www-form-urlencoded"}), 415
    )


def test_too_many_users_is_413(api: httpx.Client) -> None:
    assert_problem(api.post("/api/signouts", json={"users": [f"u{i}@contoso.com" for i in range(1001)]}), 413)


def test_huge_body_is_413(api: httpx.Client) -> None:
    assert_problem(
        api.post(
            "/api/signouts", content=b'{"users": ["' + b"a" * 2_000_000 + b'"]}', headers={"content-type": "application/json"}
        ),
        413,
    )


def test_deeply_nested_json_is_400_not_500(api: httpx.Client) -> None:
    assert_problem(
        api.post("/api/signouts", content=b"[" * 50_000 + b"]" * 50_000, headers={"content-type": "application/json"}), 400
    )


@pytest.mark.parametrize(
    "evil",
    [
        "../groups/00000000-0000-0000-0000-000000000000",
        "a@contoso.com/../../me",
        "a@contoso.com?$select=passwordProfile",
        "a%40contoso.com%2F..%2Fx",
        "a@contoso.com#/revokeSignInSessions",
        "users('x')",
        "a@contoso.com\r\nHost: evil",
    ],
)
def test_injection_attempts_are_rejected_before_any_graph_call(api: httpx.Client, sim: Sim, evil: str) -> None:
    before = len(sim.requests())
    body = assert_problem(api.post("/api/signouts", json={"users": ["ok@contoso.com", evil]}), 400)
    assert [error["pointer"] for error in body["errors"]] == ["/users/1"]
    assert len(sim.requests()) == before  # nothing was queued: the valid entry was not half-accepted


def test_status_of_malformed_and_unknown_ids(api: httpx.Client) -> None:
    assert_problem(api.get("/api/signouts/not-a-task"), 400)
    assert_problem(api.get(f"/api/signouts/{uuid.uuid4()}"), 404)


def test_remediation_log_is_newest_first_filterable_and_paginated(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "ivan")
    ids = []
    for _ in range(3):
        [task] = sign_out(api, user["id"]).json()["tasks"]
        wait_for_terminal(api, task["statusUrl"])
        ids.append(task["id"])
    first = api.get("/api/signouts", params={"user": user["id"], "top": 2})
    assert first.status_code == 200
    page = first.json()
    assert [t["id"] for t in page["tasks"]] == ids[::-1][:2]
    second = api.get(
        "/api/signouts", params={"user": user["id"], "top": 2, "continuationToken": page["continuationToken"]}
    ).json()
    assert [t["id"] for t in second["tasks"]] == ids[:1]
    succeeded = api.get("/api/signouts", params={"user": user["id"], "status": "succeeded"}).json()["tasks"]
    assert {t["id"] for t in succeeded} == set(ids)
    assert api.get("/api/signouts", params={"user": user["id"], "status": "failed"}).json()["tasks"] == []
    everyone = api.get("/api/signouts", params={"top": 100}).json()["tasks"]
    assert [t["createdAt"] for t in everyone] == sorted((t["createdAt"] for t in everyone), reverse=True)


def test_remediation_log_time_window(api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "judy")
    [task] = sign_out(api, user["id"]).json()["tasks"]
    created = wait_for_terminal(api, task["statusUrl"])["createdAt"]
    inside = api.get("/api/signouts", params={"user": user["id"], "since": created, "until": created}).json()["tasks"]
    assert [t["id"] for t in inside] == [task["id"]]
    later = api.get("/api/signouts", params={"user": user["id"], "since": "2285-12-31T00:00:00Z"}).json()["tasks"]
    assert later == []


def test_bad_log_query_is_400(api: httpx.Client) -> None:
    body = assert_problem(api.get("/api/signouts", params={"top": "1000", "status": "done"}), 400)
    assert {error["pointer"] for error in body["errors"]} == {"/top", "/status"}


def test_health_reports_storage_and_granted_permissions(api: httpx.Client) -> None:
    response = api.get("/api/health")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "healthy"
    permissions = report["checks"]["graphPermissions"]
    assert permissions["features"]["signOut"]["available"] is True
    assert "User.RevokeSessions.All" in permissions["granted"]
    assert "token" not in response.text.lower() and "AccountKey" not in response.text
