"""Coalescing: requests for a user whose task is still queued join it (shared/usecases/intake.py),
and bulk job counts count each task's start and outcome exactly once (shared/usecases/job_counts.py)."""

from __future__ import annotations

import asyncio

import pytest
from azure.core.exceptions import ServiceRequestError

from shared.domain.identifiers import UserRef
from shared.domain.messages import CallbackMessage
from shared.domain.requests import SignoutRequest
from shared.domain.tasks import TaskStatus
from shared.usecases.intake import accept
from shared.usecases.job_counts import SHARDS
from tests.fakes import FakeRuntime, FakeUser

JOB = "8d5e3f1a-6b2c-4d7e-9f01-23456789abcd"
CALLBACK = "https://prod-00.westeurope.logic.azure.com/workflows/1/runs/2/callback?sig=secret"


async def test_a_second_request_joins_the_queued_task(rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef) -> None:
    first = await accept(rt, SignoutRequest((alice_ref,), "phished", correlation_id="incident-1"), None, None)
    second = await accept(rt, SignoutRequest((alice_ref,), "same user again", correlation_id="incident-2"), None, None)
    task = first.tasks[0]
    assert second.tasks[0].id == task.id
    joined = [(join["description"], join["correlationId"]) for join in rt.tasks.joined(task.id)]
    assert joined == [("same user again", "incident-2")]
    assert rt.index.correlation_ids("incident-2") == [task.id], "found by the joined request's correlation id"
    assert len(rt.queue.waiting(rt.settings.signout_queue)) == 1
    await rt.deliver(rt.settings.signout_queue)
    assert rt.graph.revoke_count(alice) == 1


async def test_a_request_joining_a_task_that_finishes_meanwhile_still_gets_its_callback(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef
) -> None:
    task = (await accept(rt, SignoutRequest((alice_ref,)), None, None)).tasks[0]
    rt.tasks.before_next("add_join", lambda: rt.tasks.update(task.id, status=TaskStatus.SUCCEEDED))  # its callbacks already sent
    await accept(rt, SignoutRequest((alice_ref,), callback_url=CALLBACK), None, None)
    assert CallbackMessage(task.id, task.token) in [sent.decoded() for sent in rt.queue.sent_to(rt.settings.signout_queue)]
    while await rt.deliver(rt.settings.signout_queue):
        pass
    assert [url for url, _ in rt.callbacks.posts] == [CALLBACK]


async def test_concurrent_counts_of_one_marker_count_once(rt: FakeRuntime) -> None:
    """Two copies of a message counting at once, then a redelivery."""
    await asyncio.gather(*(rt.job_counts.add(JOB, "start-task-1", "started") for _ in range(2)))
    await rt.job_counts.add(JOB, "start-task-1", "started")
    assert await rt.counters.totals(JOB) == {"started": 1}


async def test_a_group_commit_counts_every_marker_once_when_one_was_counted_before(rt: FakeRuntime) -> None:
    await rt.counters.add(JOB, {"done-task-1": "succeeded"}, SHARDS)
    await asyncio.gather(
        rt.job_counts.add(JOB, "done-task-1", "succeeded"),
        rt.job_counts.add(JOB, "done-task-2", "succeeded"),
        rt.job_counts.add(JOB, "done-task-3", "failed"),
    )
    assert await rt.counters.totals(JOB) == {"succeeded": 2, "failed": 1}


async def test_counts_arriving_together_commit_in_one_transaction(rt: FakeRuntime) -> None:
    await asyncio.gather(*(rt.job_counts.add(JOB, f"start-task-{n}", "started") for n in range(5)))
    assert len(rt.counters.transactions) == 1
    assert await rt.counters.totals(JOB) == {"started": 5}


async def test_a_failed_commit_fails_every_count_in_it_and_a_retry_counts_once(rt: FakeRuntime) -> None:
    """The invocations fail, so the host retries them; nothing is lost or doubled."""
    rt.counters.fail_next("add", ServiceRequestError("storage unreachable"))
    counts = [rt.job_counts.add(JOB, f"start-task-{n}", "started") for n in range(3)]
    outcomes = await asyncio.gather(*counts, return_exceptions=True)
    assert all(isinstance(outcome, ServiceRequestError) for outcome in outcomes)
    await asyncio.gather(*(rt.job_counts.add(JOB, f"start-task-{n}", "started") for n in range(3)))
    assert await rt.counters.totals(JOB) == {"started": 3}


@pytest.mark.parametrize("markers", [1, 99, 100, 250])
async def test_many_counts_at_once_are_each_counted(rt: FakeRuntime, markers: int) -> None:
    """A Table transaction holds at most 99 markers and a shard: larger groups are split."""
    await asyncio.gather(*(rt.job_counts.add(JOB, f"start-task-{n}", "started") for n in range(markers)))
    assert await rt.counters.totals(JOB) == {"started": markers}
