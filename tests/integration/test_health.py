"""GET /api/health while the managed-identity endpoint hangs: it still answers (503), says which
dependency is at fault (graphPermissions: timeout) with a fixed text, and recovers with it.

A stack of this module's own: its dev host has never fetched a token, so the health check has to
ask the identity endpoint (a cached token would answer without it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration

STALL_MS = 300_000  # longer than the test: the endpoint never answers while it lasts


@pytest.fixture(scope="module")
def health_stack() -> Iterator[LocalStack]:
    with LocalStack(settings={"DEVHOST_MESSAGE_LEASE_SECONDS": "5"}) as stack:
        yield stack


def health(stack: LocalStack) -> tuple[int, dict[str, Any], str]:
    response = httpx.get(f"{stack.base_url}/api/health", timeout=60)  # generous: only stops a hang
    return response.status_code, response.json(), response.text


def test_health_answers_while_the_identity_endpoint_hangs_and_recovers_with_it(health_stack: LocalStack) -> None:
    stack = health_stack
    identity = httpx.Client(base_url=stack.identity_url, timeout=10)
    identity.post("/_identity/config", json={"delay_ms": STALL_MS}).raise_for_status()
    try:
        status, report, text = health(stack)
        assert status == 503, text
        assert report["status"] == "unhealthy"
        assert report["checks"]["graphPermissions"] == {
            "ok": False,
            "state": "timeout",
            "error": "the managed identity endpoint did not answer",
        }
        assert report["checks"]["storage"] == {"ok": True, "state": "ok"}
        assert report["checks"]["configuration"] == {"ok": True, "state": "ok", "protectedUsers": 1}
        assert identity.get("/_identity/stats").json()["requests"] >= 1  # it was asked, and never answered
        assert stack.identity_header not in text and "Error:" not in text and "Traceback" not in text
    finally:
        identity.post("/_identity/reset").raise_for_status()

    deadline = time.monotonic() + 60  # the stale result goes after a few seconds; the next round gets a token
    while (result := health(stack))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    status, report, text = result
    assert status == 200, text
    assert report["checks"]["graphPermissions"]["state"] == "ok"
    assert "User.RevokeSessions.All" in report["checks"]["graphPermissions"]["granted"]
