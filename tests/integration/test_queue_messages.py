"""Messages written straight to the queue: plain text, base64, invalid, poison."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from shared.domain.identifiers import parse_user
from shared.domain.messages import DirectRequest, TaskMessage
from shared.domain.tasks import TaskRecord, TaskStatus, utcnow
from shared.runtime import Runtime
from shared.settings import load_settings
from shared.usecases.process_task import adopt_direct_request
from tests.integration.helpers import Sim, new_user, wait_for_terminal, wait_until, write_task_record
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration


def queue(stack: LocalStack, name: str = "signout-requests") -> QueueClient:
    return QueueClient.from_connection_string(stack.azurite.connection_string, name)


def create_record(stack: LocalStack, user: str, **fields: Any) -> str:
    """A queued task record, as the HTTP intake would write it, without its message."""
    task_id = str(uuid.uuid4())
    now = utcnow()
    record = TaskRecord(id=task_id, user=user, status=TaskStatus.QUEUED, created_at=now, updated_at=now, source="test", **fields)

    asyncio.run(write_task_record(stack, record, claim_for=parse_user(user)))
    return task_id


def status(api: httpx.Client, task_id: str) -> dict[str, Any]:
    return wait_for_terminal(api, f"/api/signouts/{task_id}", appears_later=True)


def wait_for_log(stack: LocalStack, *texts: str) -> None:
    """Until the dev host has logged one of `texts`: what the worker did with a message."""
    devhost = stack.devhost
    assert devhost is not None
    wait_until(lambda: any(text in devhost.output() for text in texts), f"the dev host logged one of {texts}")


def copy_ignored(task_id: str) -> str:
    return f"task {task_id} is already succeeded; redelivered message ignored"


@pytest.mark.parametrize("encoding", ["plain", "base64"])
def test_plain_and_base64_messages_are_both_processed(stack: LocalStack, api: httpx.Client, sim: Sim, encoding: str) -> None:
    user = new_user(sim, f"msg-{encoding}")
    task_id = create_record(stack, user["id"])
    text = TaskMessage(task_id, parse_user(user["id"])).to_text()
    queue(stack).send_message(base64.b64encode(text.encode()).decode() if encoding == "base64" else text)
    assert status(api, task_id)["status"] == "succeeded"


def test_message_with_invalid_schema_is_dropped_and_leaves_its_task_alone(stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    """Trust issue #2: a queue writer cannot fail someone else's sign-out with a bad message."""
    user = new_user(sim, "schema")
    task_id = create_record(stack, user["id"])
    queue(stack).send_message(f'{{"version": 99, "taskId": "{task_id}", "user": "{user["id"]}"}}')
    wait_for_log(stack, f'taskId": "{task_id}')  # logged: dropped
    assert api.get(f"/api/signouts/{task_id}").json()["status"] == "queued"
    assert sim.user(user["id"])["revokeCount"] == 0


def test_garbage_message_is_dropped_not_retried_forever(stack: LocalStack, sim: Sim) -> None:
    marker = f"garbage-{uuid.uuid4()}"
    queue(stack).send_message(marker)
    client = queue(stack)
    poison = queue(stack, "signout-requests-poison")

    def gone() -> bool:
        visible = [m.content for m in client.peek_messages(max_messages=32)] + [
            m.content for m in poison.peek_messages(max_messages=32)
        ]
        return marker not in visible

    wait_until(gone, "the garbage message left the queue")
    wait_for_log(stack, marker)  # logged, not silently lost


def test_poison_message_re_drives_its_task_while_the_retry_budget_lasts(stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "poison")
    task_id = create_record(stack, user["id"])
    queue(stack, "signout-requests-poison").send_message(TaskMessage(task_id, parse_user(user["id"])).to_text())
    assert status(api, task_id)["status"] == "succeeded"
    assert sim.user(user["id"])["revokeCount"] == 1


def test_poison_message_marks_its_task_gave_up_once_the_retry_budget_is_spent(
    stack: LocalStack, api: httpx.Client, sim: Sim
) -> None:
    user = new_user(sim, "poison-spent")
    task_id = create_record(stack, user["id"], retry_since=utcnow() - timedelta(hours=2))
    queue(stack, "signout-requests-poison").send_message(TaskMessage(task_id, parse_user(user["id"])).to_text())
    record = status(api, task_id)
    assert (record["status"], record["error"]["category"]) == ("failed", "gave_up")
    assert "poison" in record["error"]["message"]
    assert sim.user(user["id"])["revokeCount"] == 0


def test_redelivered_message_cannot_move_a_finished_task_back(stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "redeliver")
    task_id = create_record(stack, user["id"])
    text = TaskMessage(task_id, parse_user(user["id"])).to_text()
    queue(stack).send_message(text)
    first = status(api, task_id)
    queue(stack).send_message(text)  # a duplicate delivery
    wait_for_log(stack, copy_ignored(task_id))
    again = status(api, task_id)
    assert again["status"] == "succeeded" and again["updatedAt"] == first["updatedAt"]
    assert sim.user(user["id"])["revokeCount"] == 1


def test_duplicate_message_during_a_running_attempt_revokes_nothing_more(stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "duplicate")
    task_id = create_record(stack, user["id"])
    text = TaskMessage(task_id, parse_user(user["id"])).to_text()
    sim.http.post("/_sim/config", json={"latency_ms": 1000}).raise_for_status()  # an attempt lasts ~3 s
    try:
        queue(stack).send_message(text)
        wait_until(
            lambda: api.get(f"/api/signouts/{task_id}").json()["status"] == "in_progress", "the attempt started", interval=0.05
        )
        queue(stack).send_message(text)  # a second copy, as a redelivered page or direct request queues
        record = status(api, task_id)
    finally:
        sim.http.post("/_sim/config", json={"latency_ms": 0})
    # The copy was picked up: deferred until the running attempt's deadline, or ignored as finished.
    wait_for_log(stack, f"task {task_id}: its attempt runs under another message", copy_ignored(task_id))
    assert (record["status"], record["attempts"]) == ("succeeded", 1)
    assert sim.user(user["id"])["revokeCount"] == 1
    assert api.get(f"/api/signouts/{task_id}").json()["updatedAt"] == record["updatedAt"]


def test_logic_apps_direct_request_becomes_a_task(stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    """What the Azure Queues connector's "Put a message" writes: plain text, no task id."""
    user = new_user(sim, "direct")
    sent = queue(stack).send_message(f'{{"user": "{user["userPrincipalName"]}", "description": "from a Logic App"}}')
    record = status(api, DirectRequest.task_id(sent.id))
    assert (record["status"], record["source"], record["description"]) == ("succeeded", "queue", "from a Logic App")
    assert sim.user(user["id"])["revokeCount"] == 1


def test_redelivered_direct_request_creates_no_second_task(
    stack: LocalStack, api: httpx.Client, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = new_user(sim, "direct-twice")
    request = DirectRequest(parse_user(user["id"]), "twice")
    monkeypatch.setenv("AzureWebJobsStorage", stack.azurite.connection_string)

    async def deliver_twice() -> None:
        rt = Runtime(load_settings({}))
        try:
            await adopt_direct_request(rt, request, "message-1")
            await adopt_direct_request(rt, request, "message-1")  # the same queue message again
        finally:
            await rt.aclose()

    asyncio.run(deliver_twice())
    record = status(api, DirectRequest.task_id("message-1"))
    assert record["status"] == "succeeded"
    asyncio.run(asyncio.sleep(1))
    assert sim.user(user["id"])["revokeCount"] == 1
    assert len(api.get("/api/signouts", params={"user": user["id"]}).json()["tasks"]) == 1


def test_poisoned_direct_request_is_recorded_as_failed(stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "direct-poison")
    sent = queue(stack, "signout-requests-poison").send_message(f'{{"user": "{user["id"]}"}}')
    record = status(api, DirectRequest.task_id(sent.id))
    assert (record["status"], record["error"]["category"]) == ("failed", "gave_up")
    assert sim.user(user["id"])["revokeCount"] == 0
