"""Protection that cannot be decided fails closed: with a PROTECTED_USERS entry Graph cannot
resolve, nobody is signed out (tasks wait and retry like any transient failure) and health says
which entry, by position, never by value."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.helpers import PIPELINE_TIMEOUT, Sim, new_user, wait_until
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration
UNKNOWN = "not-in-the-directory@contoso.com"


@pytest.fixture(scope="module")
def undecided_stack() -> Iterator[LocalStack]:
    settings = {
        "PROTECTED_USERS": f"breakglass@contoso.com; {UNKNOWN}",
        "RETRY_BUDGET_MINUTES": "10",
        "RETRY_BASE_SECONDS": "0.5",
    }
    with LocalStack(settings=settings) as stack:
        yield stack


def test_an_unresolvable_protected_entry_signs_out_nobody_and_health_names_it(undecided_stack: LocalStack) -> None:
    sim = Sim(undecided_stack.sim_url)
    user = new_user(sim, "undecided")
    with httpx.Client(base_url=undecided_stack.base_url, timeout=60) as api:
        [task] = api.post("/api/signouts", json={"users": [user["id"]]}).json()["tasks"]
        retried = wait_until(
            lambda: (r := api.get(task["statusUrl"]).json())["attempts"] >= 2 and r, "the task is retried", PIPELINE_TIMEOUT
        )
        assert retried["status"] in ("queued", "in_progress")
        assert retried["error"]["category"] == "transient" and "#2" in retried["error"]["message"]
        assert sim.user(user["id"])["revokeCount"] == 0
        response = api.get("/api/health")
    assert response.status_code == 503
    check = response.json()["checks"]["protectedUsers"]
    assert check["state"] == "failing" and "#2" in check["error"]
    assert UNKNOWN not in response.text and "breakglass" not in response.text
