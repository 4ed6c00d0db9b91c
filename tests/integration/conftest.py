"""One local stack per test worker: Azurite + identity endpoint + Graph simulator + dev host.

The stack's environment always points azure-identity at the loopback identity endpoint, so
no test can reach the instance-metadata address, Entra ID or Microsoft Graph.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tools.local_stack import LocalStack

TEST_SETTINGS = {
    "MAX_ATTEMPTS": "3",
    "RETRY_BASE_SECONDS": "0.5",
    "GRAPH_TIMEOUT_SECONDS": "3",
    "DEVHOST_MESSAGE_LEASE_SECONDS": "5",
    "PROTECTED_USERS": "breakglass@contoso.com",
}


class Sim:
    """The Graph simulator's control API."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def user(self, user: str) -> dict[str, Any]:
        response = self.http.get(f"/_sim/users/{user}")
        response.raise_for_status()
        return response.json()

    def fault(self, **rule: Any) -> None:
        self.http.post("/_sim/faults", json=[rule]).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        data = self.http.get("/_sim/requests").json()
        return data["requests"] if isinstance(data, dict) else data

    def add_users(self, *users: dict[str, Any]) -> None:
        self.http.post("/_sim/users", json=list(users)).raise_for_status()


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with LocalStack(settings=TEST_SETTINGS) as running:
        yield running


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def sim(stack: LocalStack) -> Sim:
    return Sim(stack.sim_url)


def wait_for_terminal(api: httpx.Client, url: str, timeout: float = 30) -> dict[str, Any]:
    """Poll a status URL the way a Logic Apps HTTP action does: until the first non-202."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(url)
        if response.status_code != 202:
            assert response.status_code == 200, response.text
            return response.json()
        time.sleep(min(float(response.headers.get("Retry-After", "1")), 0.2))
    raise AssertionError(f"{url} did not finish within {timeout}s: {response.json()}")


def sign_out(api: httpx.Client, *users: str, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    response = api.post("/api/signouts", json={"users": list(users), **extra}, headers=headers)
    assert response.status_code == 202, response.text
    return response


def new_user(sim: Sim, name: str, **props: Any) -> dict[str, Any]:
    """A fresh directory user per test, so tests never share revocation counts."""
    import uuid

    user = {"id": str(uuid.uuid4()), "userPrincipalName": f"{name}-{uuid.uuid4().hex[:8]}@contoso.com", "userType": "Member", **props}
    sim.add_users(user)
    return user
