"""Intake's compensation steps (shared/usecases/intake.py): a storage failure at any step leaves
either a task that will run or nothing at all, and a 202 always means durably queued."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ServiceRequestError

from shared.domain.identifiers import UserRef
from shared.domain.messages import Message, TaskMessage
from shared.domain.requests import SignoutRequest
from shared.domain.tasks import TaskStatus
from shared.usecases.intake import ACCEPT_WINDOW, accept
from tests.fakes import FakeRuntime, FakeUser


def storage_down() -> ServiceRequestError:
    """What the Azure SDK raises when storage cannot be reached (the HTTP edge answers 503)."""
    return ServiceRequestError("storage unreachable")


def visible_messages(rt: FakeRuntime) -> list[Message]:
    return [message.decoded() for message in rt.queue.visible(rt.settings.signout_queue)]


async def test_an_accepted_request_is_visible_to_the_worker_at_once(rt: FakeRuntime, alice_ref: UserRef) -> None:
    accepted = await accept(rt, SignoutRequest((alice_ref,)), None, None)
    task = accepted.tasks[0]
    assert visible_messages(rt) == [TaskMessage(task.id, alice_ref, task.token)]
    assert rt.index.log_ids() == [task.id]


async def test_a_failed_queue_put_frees_the_pending_slot_so_a_retry_is_accepted(rt: FakeRuntime, alice_ref: UserRef) -> None:
    rt.queue.fail_next("put", storage_down())
    with pytest.raises(ServiceRequestError):
        await accept(rt, SignoutRequest((alice_ref,)), None, None)
    assert rt.pending.task_of(alice_ref) is None
    assert rt.tasks.records == {}
    retry = await accept(rt, SignoutRequest((alice_ref,)), None, None)
    assert rt.tasks.records[retry.tasks[0].id].status is TaskStatus.QUEUED
    assert rt.pending.task_of(alice_ref) == retry.tasks[0].id


async def test_a_record_write_that_surely_failed_leaves_nothing_behind(rt: FakeRuntime, alice_ref: UserRef) -> None:
    rt.tasks.fail_next("create", storage_down())
    with pytest.raises(ServiceRequestError):
        await accept(rt, SignoutRequest((alice_ref,)), None, None)
    assert rt.queue.waiting(rt.settings.signout_queue) == [], "its message is withdrawn"
    assert rt.index.active == {}
    assert rt.pending.task_of(alice_ref) is None
    assert rt.tasks.records == {}


@pytest.mark.parametrize("written", [False, True], ids=["not written", "written"])
async def test_a_record_write_with_unknown_outcome_fails_the_request_and_lets_the_record_decide(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef, written: bool
) -> None:
    """Storage cannot say whether the record landed: 503, the message stays hidden (neither released
    nor withdrawn) and, once it surfaces, runs if and only if the record exists."""
    rt.tasks.fail_next("create", storage_down(), after=written)
    rt.tasks.fail_next("get", storage_down())
    with pytest.raises(ServiceRequestError):
        await accept(rt, SignoutRequest((alice_ref,)), None, None)
    [message] = rt.queue.waiting(rt.settings.signout_queue)
    assert rt.queue.visible(rt.settings.signout_queue) == []
    assert (rt.queue.calls["release"], rt.queue.calls["withdraw"]) == (0, 0)
    decoded = message.decoded()
    assert isinstance(decoded, TaskMessage)
    assert rt.pending.task_of(alice_ref) == decoded.task_id, "the slot is kept: a retry joins the task if it landed"
    assert decoded.task_id in rt.index.active, "the sweeper's safety net stays"
    rt.clock.advance(ACCEPT_WINDOW.total_seconds())
    await rt.deliver(rt.settings.signout_queue)
    assert rt.graph.revoke_count(alice) == (1 if written else 0)


async def test_a_record_written_whose_answer_was_lost_is_accepted(rt: FakeRuntime, alice_ref: UserRef) -> None:
    rt.tasks.fail_next("create", storage_down(), after=True)
    accepted = await accept(rt, SignoutRequest((alice_ref,)), None, None)
    task = accepted.tasks[0]
    assert rt.tasks.records[task.id].status is TaskStatus.QUEUED
    assert visible_messages(rt) == [TaskMessage(task.id, alice_ref, task.token)]
    assert rt.index.log_ids() == [task.id], "its remediation-log row is written again"
