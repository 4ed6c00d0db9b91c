"""The in-memory ports (tests/fakes.py) keep the adapters' documented semantics, which the other
fast tests rely on: a fake that is laxer than Table storage would let a real race pass."""

from __future__ import annotations

from dataclasses import replace

import pytest
from azure.core.exceptions import ResourceNotFoundError

from shared.domain.errors import AlreadyCountedError, ConcurrentUpdateError, TaskExistsError
from shared.domain.identifiers import UserRef
from shared.domain.page_links import is_own_page_link
from shared.domain.tasks import TaskRecord, TaskStatus, utcnow
from tests.fakes import FakeRuntime

TASK = "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10"


def record(user: UserRef) -> TaskRecord:
    now = utcnow()
    return TaskRecord(TASK, user.value, TaskStatus.QUEUED, now, now)


async def test_a_task_is_created_once_and_saved_only_over_what_was_read(rt: FakeRuntime, alice_ref: UserRef) -> None:
    created = await rt.tasks.create(record(alice_ref))
    with pytest.raises(TaskExistsError):
        await rt.tasks.create(record(alice_ref))
    saved = await rt.tasks.save(created, replace(created, description="first"))
    with pytest.raises(ConcurrentUpdateError):
        await rt.tasks.save(created, replace(created, description="stale"))
    assert rt.tasks.records[TASK].description == "first" and saved.etag != created.etag


async def test_a_pending_claim_fails_when_the_slot_changed_since_it_was_read(rt: FakeRuntime, alice_ref: UserRef) -> None:
    assert await rt.pending.claim(alice_ref, record(alice_ref), None)
    assert not await rt.pending.claim(alice_ref, record(alice_ref), None), "a slot exists"
    read = await rt.pending.get(alice_ref)
    assert await rt.pending.claim(alice_ref, record(alice_ref), read)
    assert not await rt.pending.claim(alice_ref, record(alice_ref), read), "claimed since it was read"


async def test_a_counter_batch_with_a_counted_marker_counts_nothing(rt: FakeRuntime) -> None:
    await rt.counters.add(TASK, {"done-a": "succeeded"}, 16)
    with pytest.raises(AlreadyCountedError):
        await rt.counters.add(TASK, {"done-a": "succeeded", "done-b": "failed"}, 16)
    assert await rt.counters.totals(TASK) == {"succeeded": 1}


async def test_a_queued_message_stays_hidden_for_its_delay_and_a_withdrawn_one_is_gone(rt: FakeRuntime) -> None:
    receipt = await rt.queue.put("q", "later", delay_seconds=10)
    assert rt.queue.pop("q") is None
    rt.clock.advance(10)
    assert rt.queue.visible("q")[0].text == "later"
    await rt.queue.withdraw(receipt)
    with pytest.raises(ResourceNotFoundError):
        await rt.queue.release(receipt)


async def test_graph_pages_link_only_to_the_groups_own_collection(rt: FakeRuntime) -> None:
    group = rt.graph.add_group([rt.graph.add_user(f"user{n}@contoso.com") for n in range(3)])
    first = (await rt.graph.list_users(group, None, "r", 2)).value
    assert first.next_link is not None and is_own_page_link(first.next_link, rt.settings.graph_base_url, group, 2)
    last = (await rt.graph.list_users(group, first.next_link, "r", 2)).value
    assert (len(first.users), len(last.users), last.next_link) == (2, 1, None)


async def test_scripted_failures_hit_the_next_calls_before_or_after_their_effect(rt: FakeRuntime, alice_ref: UserRef) -> None:
    rt.tasks.fail_next("create", RuntimeError("lost answer"), after=True)
    with pytest.raises(RuntimeError):
        await rt.tasks.create(record(alice_ref))
    assert TASK in rt.tasks.records, "written before the answer was lost"
    assert rt.tasks.calls["create"] == 1
    with pytest.raises(AttributeError):
        rt.tasks.fail_next("no_such_method", RuntimeError())
