"""Caller authorization with App Service Authentication (Easy Auth) and Entra ID app roles.

With Easy Auth on, the platform authenticates the caller and passes `x-ms-client-principal`
(base64 JSON); the app then requires the app role of each endpoint (REQUIRE_APP_ROLES=true) and
records who asked on the task. Without Easy Auth nobody vouches for that header, so a request that
carries one is refused rather than believed.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.helpers import REQUEST_TIMEOUT, Sim, new_user, start_own_devhost, wait_for_terminal
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration

OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
CREATE, READ = "SignOuts.Create", "SignOuts.Read"


def principal(
    *roles: str, object_id: str | None = None, app_id: str | None = None, name: str = "SOC automation"
) -> dict[str, str]:
    """The header App Service Authentication sends for an Entra ID caller with these app roles."""
    claims = [
        {"typ": OBJECT_ID_CLAIM, "val": object_id or str(uuid.uuid4())},
        {"typ": "azp", "val": app_id or str(uuid.uuid4())},
        {"typ": "name", "val": name},
    ] + [{"typ": "roles", "val": role} for role in roles]
    body = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return {"x-ms-client-principal": base64.b64encode(json.dumps(body).encode()).decode()}


@pytest.fixture(scope="module")
def easy_auth() -> Iterator[tuple[httpx.Client, Sim]]:
    settings = {
        "WEBSITE_AUTH_ENABLED": "True",
        "REQUIRE_APP_ROLES": "true",
        "RETRY_BUDGET_MINUTES": "0.25",
        "GRAPH_TIMEOUT_SECONDS": "3",
    }
    with LocalStack(settings=settings) as stack:
        start_own_devhost(stack, started=True)
        with httpx.Client(base_url=stack.base_url, timeout=REQUEST_TIMEOUT) as api:
            yield api, Sim(stack.sim_url)


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status


def test_without_a_principal_every_endpoint_but_health_is_401(easy_auth: tuple[httpx.Client, Sim]) -> None:
    api, sim = easy_auth
    user = new_user(sim, "anonymous")
    assert_problem(api.post("/api/signouts", json={"users": [user["id"]]}), 401)
    assert_problem(api.post("/api/alerts", json={}), 401)
    assert_problem(api.get(f"/api/signouts/{uuid.uuid4()}"), 401)
    assert_problem(api.get("/api/signouts", params={"user": user["id"]}), 401)
    assert api.get("/api/health").status_code in (200, 503)  # anonymous by design: no 401
    assert sim.user(user["id"])["revokeCount"] == 0


def test_a_principal_without_the_create_role_is_403_and_nothing_is_queued(easy_auth: tuple[httpx.Client, Sim]) -> None:
    api, sim = easy_auth
    user = new_user(sim, "reader-only")
    for headers in (principal(READ), principal()):
        assert_problem(api.post("/api/signouts", json={"users": [user["id"]]}, headers=headers), 403)
    assert api.get("/api/signouts", params={"user": user["id"]}, headers=principal(READ)).json()["tasks"] == []
    assert sim.user(user["id"])["revokeCount"] == 0


def test_an_unreadable_principal_is_401(easy_auth: tuple[httpx.Client, Sim]) -> None:
    api, _ = easy_auth
    for value in ("not base64!", base64.b64encode(b"[1, 2]").decode(), base64.b64encode(b"{not json").decode()):
        assert_problem(
            api.post("/api/signouts", json={"users": ["adele.vance@contoso.com"]}, headers={"x-ms-client-principal": value}), 401
        )


def test_create_role_signs_out_and_the_task_records_who_asked(easy_auth: tuple[httpx.Client, Sim]) -> None:
    api, sim = easy_auth
    user = new_user(sim, "by-role")
    caller = {"object_id": str(uuid.uuid4()), "app_id": str(uuid.uuid4()), "name": "Sentinel playbook INC-7"}
    response = api.post("/api/signouts", json={"users": [user["id"]]}, headers=principal(CREATE, **caller))
    assert response.status_code == 202, response.text
    url = response.json()["tasks"][0]["statusUrl"]

    # Reading needs SignOuts.Read: the create role alone does not show the task.
    assert_problem(api.get(url, headers=principal(CREATE)), 403)
    assert_problem(api.get("/api/signouts", params={"user": user["id"]}, headers=principal(CREATE)), 403)
    reader = httpx.Client(base_url=str(api.base_url), headers=principal(READ), timeout=REQUEST_TIMEOUT)
    with reader:
        record = wait_for_terminal(reader, url)
        assert record["status"] == "succeeded"
        assert record["requestedBy"] == {
            "objectId": caller["object_id"],
            "appId": caller["app_id"],
            "displayName": caller["name"],
        }
        [logged] = reader.get("/api/signouts", params={"user": user["id"]}).json()["tasks"]
        assert logged["requestedBy"] == record["requestedBy"]
    assert sim.user(user["id"])["revokeCount"] == 1


def test_a_forged_principal_is_refused_when_easy_auth_is_off(api: httpx.Client, sim: Sim) -> None:
    """The session stack has no App Service Authentication: nothing strips a client's header there."""
    user = new_user(sim, "forged")
    forged = principal(CREATE, READ, name="Global Administrator")
    assert_problem(api.post("/api/signouts", json={"users": [user["id"]]}, headers=forged), 401)
    assert_problem(api.get("/api/signouts", params={"user": user["id"]}, headers=forged), 401)
    assert_problem(api.get(f"/api/signouts/{uuid.uuid4()}", headers=forged), 401)
    assert api.get("/api/signouts", params={"user": user["id"]}).json()["tasks"] == []  # nothing was queued
    assert sim.user(user["id"])["revokeCount"] == 0
