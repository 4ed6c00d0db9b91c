"""The trust issue's holes, each driven as the attacker (or the outage) would, against the real
pipeline: queue writers, key holders and alert payloads can do no more than they were allowed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from shared.adapters.tables.tasks import task_to_entity
from shared.domain.identifiers import parse_user
from shared.domain.messages import TaskMessage, new_token
from shared.domain.tasks import TaskRecord, TaskStatus, utcnow
from shared.runtime import Runtime
from shared.settings import load_settings
from shared.usecases.sweeper import sweep
from tests.integration.helpers import CallbackReceiver, Sim, new_user, sign_out, wait_for_terminal
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration
BREAKGLASS_ID = "e3f1b0c2-7d54-4b8e-9f1a-0b6c2d4e8a11"  # breakglass@contoso.com in the simulator
LONG = 180  # seconds: generous limits; every wait returns as soon as its condition holds


def queue(stack: LocalStack, name: str) -> QueueClient:
    return QueueClient.from_connection_string(stack.azurite.connection_string, name)


def table(stack: LocalStack) -> TableClient:
    return TableClient.from_connection_string(stack.azurite.connection_string, "signouttasks")


def wait_until(condition: Callable[[], Any], what: str, timeout: float = LONG) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)
    return result


def logged(stack: LocalStack, text: str) -> bool:
    return text in stack.devhost.output()  # type: ignore[union-attr]


@pytest.fixture
def runtime_env(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", stack.azurite.connection_string)  # undone by monkeypatch


def run_with_runtime(work: Callable[[Runtime], Any]) -> Any:
    """Drive the project's own use cases in-process against the stack's Azurite."""

    async def main() -> Any:
        rt = Runtime(load_settings({}))
        try:
            return await work(rt)
        finally:
            await rt.aclose()

    return asyncio.run(main())


def finished_group_job(api: httpx.Client, sim: Sim) -> tuple[str, dict[str, Any]]:
    member = new_user(sim, "job-member")
    group = str(uuid.uuid4())
    sim.http.post("/_sim/groups", json=[{"id": group, "members": [member["id"]]}]).raise_for_status()
    response = api.post("/api/signouts", json={"group": group})
    assert response.status_code == 202, response.text
    url = response.headers["Location"]
    wait_until(lambda: api.get(url).status_code == 200, "the one-member job finishes")
    return response.json()["job"]["id"], member


# --- 1. a queue writer controls which users a bulk job lists --------------------------------------
def test_page_messages_from_a_queue_writer_sign_out_nobody_and_never_follow_their_link(
    stack: LocalStack, api: httpx.Client, sim: Sim
) -> None:
    job_id, member = finished_group_job(api, sim)
    bystander = new_user(sim, "bystander")
    report = api.get(f"/api/jobs/{job_id}").json()
    [token] = [
        row["MessageToken"]
        for row in table(stack).query_entities("PartitionKey eq @pk and RowKey eq 'job'", parameters={"pk": job_id})
    ]
    since = sim.requests()[-1]["seq"]
    attack = {"version": 1, "jobId": job_id, "page": 1, "link": f"{stack.sim_url}/v1.0/users?$select=id&$top=999"}
    queue(stack, "signout-requests").send_message(json.dumps(attack))  # the Logic App's queue
    queue(stack, "signout-bulk-pages").send_message(json.dumps(attack))  # no token
    queue(stack, "signout-bulk-pages").send_message(json.dumps({**attack, "token": token}))  # even the job's own token
    wait_until(lambda: logged(stack, "dropped JobPageMessage"), "the page message on the sign-out queue is dropped")
    wait_until(lambda: logged(stack, f"page 1 of job {job_id} dropped"), "the page message without the token is dropped")

    def reads() -> list[dict[str, Any]]:
        return [r for r in sim.requests() if r["seq"] > since and r["method"] == "GET" and "transitiveMembers" in r["path"]]

    wait_until(reads, "the job's own token re-reads page 1 from the job's own target")
    time.sleep(1)  # its tasks exist already: nothing is queued again
    listed = [r for r in sim.requests() if r["seq"] > since and r["path"].endswith("/v1.0/users")]
    assert listed == []  # the attacker's collection was never read
    assert sim.user(bystander["id"])["revokeCount"] == 0
    assert sim.user(BREAKGLASS_ID)["revokeCount"] == 0
    assert sim.user(member["id"])["revokeCount"] == 1
    after = api.get(f"/api/jobs/{job_id}").json()
    assert (after["state"], after["counts"], after["error"]) == (report["state"], report["counts"], None)


def test_a_bulk_task_is_protected_by_object_id_when_protected_users_lists_the_upn(
    stack: LocalStack, api: httpx.Client, sim: Sim
) -> None:
    """A bulk task knows only what its page said; with no UPN on it, PROTECTED_USERS' UPN entry
    must still protect the account: entries are resolved to object ids through Graph."""
    before = sim.user(BREAKGLASS_ID)["revokeCount"]
    task_id, token, now = str(uuid.uuid4()), new_token(), utcnow()
    record = TaskRecord(
        id=task_id,
        user=BREAKGLASS_ID,
        status=TaskStatus.QUEUED,
        created_at=now,
        updated_at=now,
        source="bulk",
        job_id=str(uuid.uuid4()),
        resolved_id=BREAKGLASS_ID,
        token=token,
    )
    table(stack).create_entity(task_to_entity(record))
    queue(stack, "signout-bulk").send_message(TaskMessage(task_id, parse_user(BREAKGLASS_ID), token).to_text())
    done = wait_for_terminal(api, f"/api/signouts/{task_id}", timeout=LONG)
    assert (done["status"], done["error"]["category"]) == ("skipped", "protected_account")
    assert sim.user(BREAKGLASS_ID)["revokeCount"] == before


# --- 2. a queue writer can fail someone else's sign-out -----------------------------------------------
def test_foreign_messages_for_a_waiting_task_change_nothing(stack: LocalStack, api: httpx.Client, sim: Sim) -> None:
    user = new_user(sim, "victim")
    # Graph throttles the first look-up for 8 s: the task waits, queued, while the attacker writes.
    sim.fault(
        method="GET", user=user["id"], count=1, action="status", status=429, code="TooManyRequests", headers={"Retry-After": "8"}
    )
    [task] = sign_out(api, user["id"]).json()["tasks"]
    wait_until(lambda: api.get(task["statusUrl"]).json()["attempts"] == 1, "the first attempt was throttled")
    forged = [
        {"version": 2, "taskId": task["id"], "user": user["id"]},  # an unsupported version
        {"version": 1, "taskId": task["id"], "user": "someone.else@contoso.com"},  # another user
        {"version": 1, "taskId": task["id"], "user": user["id"]},  # the right user, no token
    ]
    for body in forged:
        queue(stack, "signout-requests").send_message(json.dumps(body))
    queue(stack, "signout-requests-poison").send_message(json.dumps(forged[2]))  # "its message was poisoned"
    wait_until(
        lambda: stack.devhost.output().count(f"dropped message for task {task['id']}") >= 3, "the forged messages are dropped"
    )  # type: ignore[union-attr]
    done = wait_for_terminal(api, task["statusUrl"], timeout=LONG)
    assert (done["status"], done["attempts"]) == ("succeeded", 2)
    assert sim.user(user["id"])["revokeCount"] == 1


# --- 3 and 9. a 202 that was not durable; crash recovery -------------------------------------------
def write_task(stack: LocalStack, user: dict[str, Any], **fields: Any) -> TaskRecord:
    now = utcnow()
    record = TaskRecord(
        id=str(uuid.uuid4()),
        user=user["id"],
        created_at=now - timedelta(minutes=5),
        updated_at=now - timedelta(minutes=4),
        source="api",
        token=new_token(),
        **{"status": TaskStatus.QUEUED, **fields},
    )
    table(stack).create_entity(task_to_entity(record))
    table(stack).upsert_entity({"PartitionKey": "active", "RowKey": record.id, "Due": now - timedelta(minutes=1)})
    return record


def test_the_sweeper_re_drives_a_lost_message_and_a_crashed_attempt(
    stack: LocalStack, api: httpx.Client, sim: Sim, runtime_env: None
) -> None:
    """A task whose record landed after its message was gone (a write slower than the accept
    window), and one whose instance died mid-attempt, both finish without waiting for a lease."""
    lost, crashed = new_user(sim, "lost-message"), new_user(sim, "crashed")
    queued = write_task(stack, lost)
    running = write_task(
        stack,
        crashed,
        status=TaskStatus.IN_PROGRESS,
        attempts=1,
        attempt_message_id="dead-instance",
        attempt_deadline=utcnow() - timedelta(minutes=1),
    )
    handled = run_with_runtime(sweep)
    assert handled >= 2
    for record, user in ((queued, lost), (running, crashed)):
        done = wait_for_terminal(api, f"/api/signouts/{record.id}", timeout=LONG)
        assert done["status"] == "succeeded"
        assert sim.user(user["id"])["revokeCount"] == 1
    for record in (queued, running):  # finished tasks leave the sweeper's set

        def active(task_id: str = record.id) -> list[Any]:
            return list(table(stack).query_entities("PartitionKey eq 'active' and RowKey eq @id", parameters={"id": task_id}))

        wait_until(lambda active=active: not active(), "the active row is removed")


# --- 4. a request coalesced into a queued task keeps its own fields ------------------------------------
def test_a_request_that_joins_a_queued_task_is_recorded_and_called_back(
    api: httpx.Client, sim: Sim, callbacks: CallbackReceiver
) -> None:
    user = new_user(sim, "joined")
    sim.fault(
        method="GET", user=user["id"], count=1, action="status", status=429, code="TooManyRequests", headers={"Retry-After": "4"}
    )
    [first] = sign_out(api, user["id"], correlationId="CORR-A").json()["tasks"]
    path = f"/workflows/{uuid.uuid4().hex}/joined"
    [second] = sign_out(
        api, user["id"], correlationId="CORR-B", description="INC-7 playbook", callbackUrl=callbacks.url(path)
    ).json()["tasks"]
    assert second["id"] == first["id"]  # it joined the queued task
    done = wait_for_terminal(api, first["statusUrl"], timeout=LONG)
    assert done["status"] == "succeeded" and sim.user(user["id"])["revokeCount"] == 1
    assert done["joinedCount"] == 1
    [joined] = done["joinedRequests"]
    assert (joined["correlationId"], joined["description"]) == ("CORR-B", "INC-7 playbook")
    assert "callbackUrl" not in joined  # its sig secret is never shown
    wait_until(lambda: callbacks.received.get(path), "the joined request's callback is delivered")
    [posted] = callbacks.received[path]
    assert (posted["id"], posted["status"]) == (first["id"], "succeeded")
    found = api.get("/api/signouts", params={"correlationId": "CORR-B"}).json()["tasks"]
    assert [task["id"] for task in found] == [first["id"]]


# --- 7. Idempotency-Key namespaces ---------------------------------------------------------------------
def test_an_idempotency_key_cannot_squat_an_alerts_key(api: httpx.Client, sim: Sim) -> None:
    victim, other = new_user(sim, "alerted"), new_user(sim, "squatter-target")
    alert_id = f"/subscriptions/x/alerts/{uuid.uuid4()}"
    squat = {"Idempotency-Key": f"alert:azure_monitor:{alert_id}:{victim['userPrincipalName'].lower()}"}
    assert api.post("/api/signouts", json={"users": [other["id"]]}, headers=squat).status_code == 202
    alert = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {"alertId": alert_id, "alertRule": "Risky sign-in", "signalType": "Log", "monitorCondition": "Fired"},
            "alertContext": {
                "condition": {"allOf": [{"dimensions": [{"name": "UserPrincipalName", "value": victim["userPrincipalName"]}]}]}
            },
        },
    }
    response = api.post("/api/alerts", json=alert)
    assert response.status_code == 202, response.text
    [task] = response.json()["tasks"]
    assert wait_for_terminal(api, task["statusUrl"], timeout=LONG)["status"] == "succeeded"
    assert sim.user(victim["id"])["revokeCount"] == 1


# --- 14. unverified revocations can be found ---------------------------------------------------------
def test_unverified_sign_outs_carry_a_warning_and_are_a_log_filter(api: httpx.Client, sim: Sim) -> None:
    guest = new_user(sim, "guest", userType="Guest")
    member = new_user(sim, "verified-member")
    [g] = sign_out(api, guest["id"]).json()["tasks"]
    [m] = sign_out(api, member["id"]).json()["tasks"]
    for task in (g, m):
        wait_for_terminal(api, task["statusUrl"], timeout=LONG)
    unverified = api.get("/api/signouts", params={"user": guest["id"], "verified": "false"}).json()["tasks"]
    assert [(t["id"], t["verified"]) for t in unverified] == [(g["id"], False)] and unverified[0]["warnings"]
    assert api.get("/api/signouts", params={"user": guest["id"], "verified": "true"}).json()["tasks"] == []
    assert [t["id"] for t in api.get("/api/signouts", params={"user": member["id"], "verified": "true"}).json()["tasks"]] == [
        m["id"]
    ]
    assert api.get("/api/signouts", params={"verified": "maybe"}).status_code == 400
