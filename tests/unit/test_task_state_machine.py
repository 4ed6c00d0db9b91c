"""The task state machine (shared/usecases/process_task.py) driven through the real worker, on the
in-memory ports: what a caller reads back in the task, and what reaches Graph."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from shared.domain.identifiers import UserRef, parse_user
from shared.domain.messages import TaskMessage
from shared.domain.requests import SignoutRequest
from shared.domain.tasks import ErrorCategory, TaskRecord, TaskStatus, utcnow
from shared.usecases.bulk import cancel_job, create_job
from shared.usecases.intake import accept_user
from shared.usecases.process_task import process_message, process_poison
from shared.usecases.sweeper import sweep
from tests.fakes import FakeRuntime, FakeUser, QueuedMessage, fake_runtime, transient

LONG_AGO = timedelta(hours=2)  # beyond the default retry budget (60 minutes)
RETRY_AFTER = timedelta(seconds=30)


async def accepted(rt: FakeRuntime, user: UserRef) -> tuple[TaskRecord, QueuedMessage]:
    """A task accepted through intake, and its message taken off the queue by the host."""
    task = await accept_user(rt, user, SignoutRequest((user,), "phished"), None)
    message = rt.queue.pop(rt.settings.signout_queue)
    assert message is not None
    return task, message


async def test_a_task_signs_the_user_out_and_records_the_proof(rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef) -> None:
    task = await accept_user(rt, alice_ref, SignoutRequest((alice_ref,)), None)
    await rt.deliver(rt.settings.signout_queue)
    done = rt.tasks.records[task.id]
    assert (done.status, done.verified, done.resolved_id, done.error) == (TaskStatus.SUCCEEDED, True, alice.id, None)
    assert rt.graph.revoke_count(alice) == 1
    assert done.graph_request_id == rt.graph.revocations[0].request_id
    assert rt.graph.revocations[0].priority == "high"
    assert rt.pending.task_of(alice_ref) is None, "a new request must start a new task"
    assert task.id not in rt.index.active


@pytest.mark.parametrize("listed_by", ["upn", "object id"])
async def test_a_protected_account_is_not_signed_out_whichever_way_it_is_named(listed_by: str) -> None:
    """PROTECTED_USERS names it one way, the request the other: compared by object id."""
    breakglass_id = "3f0c2a1e-9b8d-4c7e-a6f5-0123456789ab"
    rt = fake_runtime(protected_users=frozenset({"breakglass@contoso.com" if listed_by == "upn" else breakglass_id}))
    breakglass = rt.graph.add_user("BreakGlass@contoso.com", user_id=breakglass_id)
    named = parse_user(breakglass.id if listed_by == "upn" else breakglass.upn)
    task = await accept_user(rt, named, SignoutRequest((named,)), None)
    await rt.deliver(rt.settings.signout_queue)
    done = rt.tasks.records[task.id]
    assert done.status is TaskStatus.SKIPPED
    assert done.error is not None and done.error.category is ErrorCategory.PROTECTED_ACCOUNT
    assert rt.graph.revocations == []


async def test_a_throttled_revoke_is_retried_after_retry_after(rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef) -> None:
    task = await accept_user(rt, alice_ref, SignoutRequest((alice_ref,)), None)
    rt.graph.fail_next("revoke_sessions", transient(retry_after=RETRY_AFTER.total_seconds(), status=429))
    earliest = utcnow() + RETRY_AFTER
    await rt.deliver(rt.settings.signout_queue)
    waiting = rt.tasks.records[task.id]
    assert waiting.status is TaskStatus.QUEUED
    assert waiting.error is not None and waiting.error.category is ErrorCategory.TRANSIENT
    assert waiting.next_attempt_at is not None and earliest <= waiting.next_attempt_at <= utcnow() + RETRY_AFTER
    assert rt.index.active[task.id].next_attempt_at == waiting.next_attempt_at, "health shows the next attempt"
    retry = rt.queue.sent[-1]
    assert (retry.queue, retry.decoded()) == (rt.settings.signout_queue, TaskMessage(task.id, alice_ref, task.token))
    assert retry.delay == RETRY_AFTER.total_seconds()
    assert rt.pending.task_of(alice_ref) == task.id, "queued again, the task covers new requests"
    assert await rt.deliver(rt.settings.signout_queue) is None, "the retry waits for Retry-After"
    rt.clock.advance(RETRY_AFTER.total_seconds())
    await rt.deliver(rt.settings.signout_queue)
    assert rt.tasks.records[task.id].status is TaskStatus.SUCCEEDED
    assert rt.graph.revoke_count(alice) == 1


async def test_a_task_whose_retry_budget_is_spent_gives_up_with_the_last_error(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef
) -> None:
    task, message = await accepted(rt, alice_ref)
    rt.tasks.update(task.id, retry_since=utcnow() - LONG_AGO)  # rescheduled after failing since then
    rt.graph.fail_next("revoke_sessions", transient(status=503))
    await rt.redeliver(message)
    failed = rt.tasks.records[task.id]
    assert failed.status is TaskStatus.FAILED
    assert failed.error is not None and failed.error.category is ErrorCategory.GAVE_UP
    assert "last error: Graph answered 503" in failed.error.message
    assert rt.queue.waiting(rt.settings.signout_queue) == [], "no further attempt"


@pytest.mark.parametrize(
    ("redelivered", "deadline_in"),
    [("its own message", timedelta(seconds=60)), ("a copy", timedelta(seconds=-1))],
    ids=["host redelivery before the deadline", "sweeper's copy after the deadline"],
)
async def test_a_crashed_attempt_runs_again(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef, redelivered: str, deadline_in: timedelta
) -> None:
    """Its own message coming back means it crashed; a copy waits for the attempt's deadline."""
    task, message = await accepted(rt, alice_ref)
    attempt_message = message.id if redelivered == "its own message" else "message-of-the-crashed-attempt"
    rt.tasks.update(
        task.id,
        status=TaskStatus.IN_PROGRESS,
        attempts=1,
        attempt_message_id=attempt_message,
        attempt_deadline=utcnow() + deadline_in,
    )
    await rt.redeliver(message)
    done = rt.tasks.records[task.id]
    assert (done.status, done.attempts) == (TaskStatus.SUCCEEDED, 2)
    assert rt.graph.revoke_count(alice) == 1


async def test_a_duplicate_message_waits_for_the_running_attempt(rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef) -> None:
    task, message = await accepted(rt, alice_ref)
    running = rt.tasks.update(
        task.id,
        status=TaskStatus.IN_PROGRESS,
        attempts=1,
        attempt_message_id="the-running-attempt",
        attempt_deadline=utcnow() + timedelta(seconds=60),
    )
    await rt.redeliver(message)
    assert rt.graph.revocations == []
    assert rt.tasks.records[task.id].etag == running.etag, "the running attempt's record is left alone"
    again = rt.queue.sent[-1]
    assert again.text == message.text and 1 <= again.delay <= 60, "the copy looks again once the attempt has surely ended"


async def test_a_task_of_a_cancelled_job_is_skipped_without_a_revoke(rt: FakeRuntime, alice: FakeUser) -> None:
    job = await create_job(rt, rt.graph.add_group([alice]), "offboarding", None, None)
    await rt.deliver(rt.settings.bulk_page_queue)
    await cancel_job(rt, job, None)
    await rt.deliver(rt.settings.bulk_queue)
    skipped = rt.tasks.records[job.task_id(alice.id)]
    assert skipped.status is TaskStatus.SKIPPED
    assert skipped.error is not None and skipped.error.category is ErrorCategory.CANCELLED
    assert rt.graph.revocations == []
    assert await rt.counters.totals(job.id) == {"started": 1, "skipped": 1}


@dataclass(frozen=True)
class Forgery:
    queue: str  # the Settings attribute naming the queue it is put on
    user: str | None = None  # another user than the task's
    token: str | None = None  # another token than the task's


@pytest.mark.parametrize(
    "forgery",
    [
        pytest.param(Forgery("signout_queue", token="A" * 22), id="token mismatch"),
        pytest.param(Forgery("signout_queue", user="mallory@contoso.com"), id="another user"),
        pytest.param(Forgery("bulk_queue"), id="the bulk queue"),
    ],
)
async def test_a_message_the_service_did_not_write_for_the_task_changes_nothing(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef, forgery: Forgery
) -> None:
    task, _ = await accepted(rt, alice_ref)
    rt.graph.add_user("mallory@contoso.com")
    user = parse_user(forgery.user) if forgery.user else alice_ref
    text = TaskMessage(task.id, user, forgery.token or task.token).to_text()
    before = rt.tasks.records[task.id]
    await process_message(rt, text.encode(), "forged", rt.lane(getattr(rt.settings, forgery.queue)))
    assert rt.tasks.records[task.id].etag == before.etag
    assert rt.graph.revocations == []
    assert len(rt.queue.sent) == 1, "nothing queued besides the task's own message"


async def test_a_poisoned_message_is_retried_within_the_budget_then_the_task_fails(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef
) -> None:
    task, message = await accepted(rt, alice_ref)
    lane = rt.lane(rt.settings.signout_queue)
    await process_poison(rt, message.text.encode(), message.id, lane)
    assert rt.tasks.records[task.id].status is TaskStatus.QUEUED
    assert rt.tasks.records[task.id].retry_since is not None, "the retry budget starts"
    assert rt.queue.sent[-1].text == message.text and rt.queue.sent[-1].delay > 0
    rt.tasks.update(task.id, retry_since=utcnow() - LONG_AGO)
    await process_poison(rt, message.text.encode(), message.id, lane)
    failed = rt.tasks.records[task.id]
    assert failed.status is TaskStatus.FAILED
    assert failed.error is not None and failed.error.category is ErrorCategory.GAVE_UP
    assert "poison queue" in failed.error.message
    assert rt.graph.revocations == []


async def test_the_sweeper_redrives_a_task_whose_attempt_outlived_its_deadline(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef
) -> None:
    task, _ = await accepted(rt, alice_ref)  # the message is lost with the instance that took it
    rt.tasks.update(
        task.id,
        status=TaskStatus.IN_PROGRESS,
        attempts=1,
        attempt_message_id="lost",
        attempt_deadline=utcnow() - timedelta(minutes=1),
    )
    await rt.index.mark_active(task.id, utcnow() - timedelta(seconds=1))
    assert await sweep(rt) == 1
    await rt.deliver(rt.settings.signout_queue)
    assert rt.tasks.records[task.id].status is TaskStatus.SUCCEEDED
    assert rt.graph.revoke_count(alice) == 1
