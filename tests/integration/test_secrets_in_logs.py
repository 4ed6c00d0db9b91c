"""No log record of a run holds a secret: not a Logic Apps callback URL's query (its `sig`), not
the function key, not a bearer token or the identity header.

The dev host logs as the Functions Python worker does (DEVHOST_LOG_LEVEL=DEBUG: the root logger at
DEBUG, every logger's records, third-party ones included, written to its output), so whatever the
app does not quiet itself shows up here. The run ends a task on each path that POSTs a callback:
protected account skipped and poison first, while no Graph client exists yet in the process, then
succeeded and given up after transient failures.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from shared.domain.identifiers import parse_user
from shared.domain.messages import TaskMessage
from shared.domain.tasks import TaskRecord, TaskStatus, utcnow
from tests.integration.helpers import CallbackReceiver, Sim, new_user, write_task_record
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration

SIG = "SECRET" + secrets.token_urlsafe(24)
FUNCTION_KEY = "fkey" + secrets.token_urlsafe(24)
QUERY = f"api-version=2016-10-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"  # as listCallbackUrl() writes it
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")
FAILING = 1000  # Graph calls that fail for the user whose task gives up: more than it ever makes


@pytest.fixture(scope="module")
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def debug_stack(receiver: CallbackReceiver) -> Iterator[LocalStack]:
    settings = {
        "DEVHOST_LOG_LEVEL": "DEBUG",
        "DEVHOST_FUNCTION_KEY": FUNCTION_KEY,
        "DEVHOST_MESSAGE_LEASE_SECONDS": "5",
        "RETRY_BUDGET_MINUTES": "0.1",  # a failing task gives up after 6 s
        "RETRY_BASE_SECONDS": "0.5",
        "GRAPH_TIMEOUT_SECONDS": "3",
        "PROTECTED_USERS": "breakglass@contoso.com",
        **receiver.stack_settings(),
    }
    with LocalStack(settings=settings) as stack:
        yield stack


def callback_url(receiver: CallbackReceiver) -> tuple[str, str]:
    """A Logic Apps-shaped callback URL on the receiver, and the path the receiver records it under."""
    path = f"/workflows/{uuid.uuid4().hex}/triggers/manual/paths/invoke?{QUERY}"
    return receiver.url(path), path


def post_task(api: httpx.Client, user: str, url: str) -> str:
    response = api.post("/api/signouts", params={"code": FUNCTION_KEY}, json={"user": user, "callbackUrl": url})
    assert response.status_code == 202, response.text
    return response.json()["tasks"][0]["id"]


def poisoned_task(stack: LocalStack, user: str, url: str) -> tuple[str, str]:
    """A queued task whose message has been moved to the poison queue, as the host does after
    maxDequeueCount failed deliveries, with its retry budget spent (so the poison trigger ends it);
    and the secret token its messages carry."""
    token, now = secrets.token_urlsafe(24), utcnow()
    record = TaskRecord(
        id=str(uuid.uuid4()),
        user=user,
        status=TaskStatus.QUEUED,
        created_at=now - timedelta(hours=1),
        updated_at=now,
        callback_url=url,
        retry_since=now - timedelta(hours=1),
        token=token,
    )

    asyncio.run(write_task_record(stack, record, claim_for=parse_user(user)))
    poison = QueueClient.from_connection_string(stack.azurite.connection_string, "signout-requests-poison")
    poison.send_message(TaskMessage(record.id, parse_user(user), token).to_text())
    return record.id, token


def called_back(api: httpx.Client, task_id: str, timeout: float = 90) -> dict[str, Any]:
    """The task once it has finished and its callback's final outcome is recorded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"/api/signouts/{task_id}", params={"code": FUNCTION_KEY})
        if response.status_code == 200 and (response.json().get("callback") or {}).get("state") in ("delivered", "failed"):
            return response.json()
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish with a callback within {timeout}s: {response.text}")


def a_token(stack: LocalStack) -> str:
    """A token as the identity endpoint issues them, to show the JWT pattern would catch one."""
    response = httpx.get(
        f"{stack.identity_url}/msi/token",
        params={"api-version": "2019-08-01", "resource": stack.sim_url},
        headers={"X-IDENTITY-HEADER": stack.identity_header},
    )
    response.raise_for_status()
    return response.json()["access_token"]


def test_no_log_record_holds_a_callback_secret_the_function_key_or_a_token(
    debug_stack: LocalStack, receiver: CallbackReceiver
) -> None:
    stack = debug_stack
    sim = Sim(stack.sim_url)
    outcomes: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=stack.base_url, timeout=30) as api:
        # First, while no Graph client exists in the dev host: paths that never call Graph.
        url, path = callback_url(receiver)
        outcomes[path] = called_back(api, post_task(api, "breakglass@contoso.com", url))
        url, path = callback_url(receiver)
        task_id, message_token = poisoned_task(stack, new_user(sim, "log-poison")["id"], url)
        outcomes[path] = called_back(api, task_id)

        transient = new_user(sim, "log-gives-up")["id"]
        sim.fault(method="POST", action="status", status=503, user=transient, count=FAILING)
        started = {}
        for user in (new_user(sim, "log-succeeds")["id"], transient):
            url, path = callback_url(receiver)
            started[path] = post_task(api, user, url)
        outcomes |= {path: called_back(api, task_id) for path, task_id in started.items()}

    ends = sorted((record["status"], (record["error"] or {}).get("category")) for record in outcomes.values())
    assert ends == [("failed", "gave_up"), ("failed", "gave_up"), ("skipped", "protected_account"), ("succeeded", None)]
    assert all(record["callback"]["state"] == "delivered" for record in outcomes.values())
    assert all(len(receiver.received[path]) == 1 for path in outcomes)  # each URL, query and all, was used

    assert stack.devhost is not None
    log = stack.devhost.output()
    assert " DEBUG " in log  # every logger's records at DEBUG were written
    assert all(f"taskId={record['id']}" in log for record in outcomes.values())  # this run's lines are here
    assert JWT.search(a_token(stack))
    leaks = {
        "callback query": QUERY in log,
        "sig": SIG in log,
        "function key": FUNCTION_KEY in log,
        "identity header": stack.identity_header in log,
        "message token": message_token in log,
        "bearer token": JWT.search(log) is not None,
    }
    lines = [line for line in log.splitlines() if SIG in line or FUNCTION_KEY in line or JWT.search(line)]
    assert not any(leaks.values()), (leaks, lines[:5])
