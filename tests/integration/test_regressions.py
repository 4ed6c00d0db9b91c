"""Live regression checks, on the running stack, for defects the security review found
(docs/security.md, "Defects found by this review, and their fixes"), where the unit tests in
tests/unit/test_regressions.py cannot show the whole path: the queue trigger, the dev host's log,
and the remediation log's nextLink. Defects 4 and 6 are proven in tests/integration/test_bulk.py.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from azure.storage.queue import QueueClient

from shared.domain.messages import DirectRequest
from tests.integration.helpers import Sim, new_user, sign_out, wait_until
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration
FORGED = "2026-11-26 15:00:00,000 INFO signout.task: task taskId={} status=succeeded"  # short enough for a correlationId


def queue(stack: LocalStack, name: str = "signout-requests") -> QueueClient:
    return QueueClient.from_connection_string(stack.azurite.connection_string, name)


def output(stack: LocalStack) -> str:
    assert stack.devhost is not None
    return stack.devhost.output()


def wait_for_output(stack: LocalStack, text: str) -> str:
    def logged() -> str:
        log = output(stack)
        return log if text in log else ""

    return wait_until(logged, f"the dev host logged {text!r}")


def forged_lines(log: str, marker: str) -> list[str]:
    """Lines of the dev host's log (split as str.splitlines does: CR, LF, NEL, U+2028...) that
    begin with the forged text: a line the attacker wrote, not the service."""
    return [line for line in log.splitlines() if line.startswith((FORGED.format(marker), marker))]


# --- 3. a message the decoder crashed on is dropped once, not retried and poisoned ---------------
@pytest.mark.parametrize("kind", ["non-ASCII text", "5,000-digit integer"])
def test_defect3_a_message_that_crashed_the_decoder_is_dropped_once(stack: LocalStack, kind: str) -> None:
    marker = uuid.uuid4().hex
    text = f"Zoë-{marker}@contoso.com" if kind == "non-ASCII text" else f'{{"user": "{marker}@contoso.com", "x": {"1" * 5000}}}'
    before = len(output(stack))
    sent = queue(stack).send_message(text)
    log = wait_for_output(stack, f"dropped invalid queue message {sent.id}")[before:]  # before the fix: a ValueError, no drop
    assert log.count(f"dropped invalid queue message {sent.id}") == 1
    # The decoder's ValueError, which used to escape to the host (retry, then poison), appears at
    # most inside the drop line's reason.
    assert "string argument should contain only ASCII characters" not in log
    assert all("dropped invalid queue message" in line for line in log.splitlines() if "Exceeds the limit" in line)
    time.sleep(1)
    visible = [m.content for m in queue(stack).peek_messages(max_messages=32)]
    poisoned = [m.content for m in queue(stack, "signout-requests-poison").peek_messages(max_messages=32)]
    assert not [content for content in visible + poisoned if marker in content]


# --- 2. no value can start a forged log line ------------------------------------------------------
def test_defect2_a_direct_request_with_a_line_break_in_its_correlation_id_is_dropped_and_forges_nothing(
    stack: LocalStack, api: httpx.Client, sim: Sim
) -> None:
    user = new_user(sim, "forged-log")
    marker = str(uuid.uuid4())
    correlation_id = "INC-1\r\n" + FORGED.format(marker)
    sent = queue(stack).send_message(json.dumps({"user": user["userPrincipalName"], "correlationId": correlation_id}))
    log = wait_for_output(
        stack, f"dropped invalid queue message {sent.id} on signout-requests: 'correlationId must not contain control characters'"
    )
    assert not forged_lines(log, marker)
    assert api.get(f"/api/signouts/{DirectRequest.task_id(sent.id)}").status_code == 404  # no task: nothing was signed out
    assert sim.user(user["id"])["revokeCount"] == 0


@pytest.mark.parametrize("brk", ["\x85", "\u2028"], ids=["NEL", "LINE SEPARATOR"])
def test_defect2_whatever_correlation_id_the_api_lets_through_stays_on_its_log_line(
    stack: LocalStack, api: httpx.Client, sim: Sim, brk: str
) -> None:
    """Line breaks beyond CR and LF that the HTTP parser does not refuse: the task's state-change
    lines must still each be one line (shared/usecases/audit_log.py::state_change writes them with repr())."""
    user = new_user(sim, "forged-log-api")
    marker = str(uuid.uuid4())
    response = api.post("/api/signouts", json={"user": user["id"], "correlationId": f"INC-1{brk}{marker} forged"})
    if response.status_code == 400:  # refused outright: nothing reaches the log at all
        assert [error["pointer"] for error in response.json()["errors"]] == ["/correlationId"]
        return
    assert response.status_code == 202, response.text
    task_id = response.json()["tasks"][0]["id"]
    log = wait_for_output(stack, f"task taskId={task_id} status=succeeded")
    lines = [line for line in log.splitlines() if task_id in line or marker in line]
    assert lines and all(f"taskId={task_id}" in line for line in lines), lines  # no line starts with the marker
    assert not forged_lines(log, marker)


# --- 5. a `until` in year 1 with a page of one task was a 500 (building the nextLink) --------------
def test_defect5_dates_outside_the_time_keys_are_400_even_with_more_tasks_than_a_page(api: httpx.Client, sim: Sim) -> None:
    sign_out(api, new_user(sim, "window-a")["id"], new_user(sim, "window-b")["id"])  # more than one task: a nextLink
    for params in (
        {"until": "0001-01-01T00:00:00+01:00", "top": "1"},
        {"since": "1969-01-01T00:00:00Z", "top": "1"},
        {"until": "1969-01-01T00:00:00Z"},
        {"since": "2286-01-01T00:00:00Z"},
    ):
        response = api.get("/api/signouts", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [error["pointer"] for error in response.json()["errors"]] == [f"/{next(iter(params))}"]
    page = api.get("/api/signouts", params={"since": "2000-01-01T00:00:00Z", "until": "2285-12-31T23:59:59.999Z", "top": "1"})
    assert page.status_code == 200 and len(page.json()["tasks"]) == 1
    assert api.get(page.json()["nextLink"]).status_code == 200
