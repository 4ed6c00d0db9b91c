"""Bulk fan-out page by page (shared/usecases/bulk.py::process_page): which Graph link each page
reads, where the links are kept, and when enumeration waits, retries or stops."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.jobs import Job
from shared.domain.messages import JobPageMessage, TaskMessage
from shared.domain.tasks import utcnow
from shared.usecases.bulk import cancel_job, create_job, job_report, process_page
from tests.fakes import FakeRuntime, fake_runtime, transient

PAGE_SIZE = 2
MEMBERS = 5  # three pages: 2 + 2 + 1


@pytest.fixture
def rt() -> FakeRuntime:
    """Pages of two users; the next page is read without waiting for the bulk queue's backlog."""
    return fake_runtime(graph_page_size=PAGE_SIZE, bulk_backlog_pages=0)


@pytest.fixture
def group(rt: FakeRuntime) -> str:
    return rt.graph.add_group([rt.graph.add_user(f"user{n}@contoso.com") for n in range(MEMBERS)])


@pytest.fixture
async def job(rt: FakeRuntime, group: str) -> Job:
    return await create_job(rt, group, "offboarding", None, None)


async def next_page(rt: FakeRuntime) -> None:
    assert await rt.deliver(rt.settings.bulk_page_queue) is not None, "a page message is visible"


def current(rt: FakeRuntime, job: Job) -> Job:
    return rt.jobs.jobs[job.id]


async def test_page_one_reads_the_jobs_own_target(rt: FakeRuntime, group: str, job: Job) -> None:
    await next_page(rt)
    assert rt.graph.pages_read == [(group, None)]
    first_two = rt.graph.groups[group][:PAGE_SIZE]
    queued = [sent.decoded() for sent in rt.queue.sent_to(rt.settings.bulk_queue)]
    expected = [job.task_id(user_id) for user_id in first_two]
    assert [message.task_id for message in queued if isinstance(message, TaskMessage)] == expected


async def test_each_next_link_is_kept_on_the_job_then_in_its_pages_own_row(rt: FakeRuntime, group: str, job: Job) -> None:
    await next_page(rt)
    link_2 = rt.graph.page_link(group, PAGE_SIZE, 2)
    assert current(rt, job).next_link == link_2
    await next_page(rt)
    assert rt.graph.pages_read[-1] == (group, link_2)
    assert rt.jobs.links[(job.id, 2)] == link_2
    assert current(rt, job).next_link == rt.graph.page_link(group, PAGE_SIZE, 4)


async def test_a_redelivered_page_reads_its_stored_link_again(rt: FakeRuntime, group: str, job: Job) -> None:
    """And creates no task twice."""
    for _ in range(3):
        await next_page(rt)
    assert current(rt, job).enumerated
    await process_page(rt, JobPageMessage(job.id, 2, job.token))
    assert rt.graph.pages_read[-1] == (group, rt.graph.page_link(group, PAGE_SIZE, 2))
    assert len(rt.tasks.records) == MEMBERS
    assert current(rt, job).pages_done == 3


async def test_a_page_ahead_of_the_job_is_dropped(rt: FakeRuntime, job: Job) -> None:
    await next_page(rt)
    sent = len(rt.queue.sent)
    await process_page(rt, JobPageMessage(job.id, 3, job.token))
    assert len(rt.graph.pages_read) == 1
    assert len(rt.queue.sent) == sent
    assert current(rt, job).pages_done == 1


async def test_a_stored_link_outside_the_jobs_collection_stops_the_job(rt: FakeRuntime, job: Job) -> None:
    """A link to every user (or with a $filter) would widen a group's job: it is never followed."""
    await next_page(rt)
    rt.jobs.update(job.id, next_link=rt.graph.page_link(None, PAGE_SIZE, 2))
    await next_page(rt)
    stopped = current(rt, job)
    assert stopped.error is not None and "not the job's own collection" in stopped.error
    assert (await job_report(rt, stopped))[0]["state"] == "failed"
    assert len(rt.tasks.records) == PAGE_SIZE, "no task for anyone outside the group"


async def test_a_transient_page_failure_reads_the_page_again_after_retry_after(rt: FakeRuntime, group: str, job: Job) -> None:
    await next_page(rt)
    rt.graph.fail_next("list_users", transient(retry_after=20, status=429))
    await next_page(rt)
    assert current(rt, job).error is None
    retry = rt.queue.sent[-1]
    assert (retry.queue, retry.decoded(), retry.delay) == (rt.settings.bulk_page_queue, JobPageMessage(job.id, 2, job.token), 20)
    assert await rt.deliver(rt.settings.bulk_page_queue) is None, "not before Retry-After"
    rt.clock.advance(20)
    await next_page(rt)
    assert current(rt, job).pages_done == 2


async def test_a_page_failing_beyond_the_retry_budget_stops_the_job(rt: FakeRuntime, job: Job) -> None:
    await next_page(rt)
    rt.jobs.update(job.id, page_failing_since=utcnow() - timedelta(hours=2), page_failures=40)
    rt.graph.fail_next("list_users", transient(status=503))
    await next_page(rt)
    stopped = current(rt, job)
    assert stopped.error is not None and "retry budget" in stopped.error
    assert rt.queue.waiting(rt.settings.bulk_page_queue) == []


async def test_a_long_bulk_queue_holds_the_next_page_back() -> None:
    rt = fake_runtime(graph_page_size=PAGE_SIZE, bulk_backlog_pages=0.5)  # read on while under one task message
    group = rt.graph.add_group([rt.graph.add_user(f"user{n}@contoso.com") for n in range(MEMBERS)])
    job = await create_job(rt, group, "offboarding", None, None)
    await next_page(rt)
    await next_page(rt)
    assert len(rt.graph.pages_read) == 1, "two tasks wait: page 2 is not read yet"
    held = rt.queue.sent[-1]
    assert held.decoded() == JobPageMessage(job.id, 2, job.token) and held.delay >= 1
    while rt.queue.pop(rt.settings.bulk_queue):  # the workers catch up
        pass
    rt.clock.advance(held.delay)
    await next_page(rt)
    assert len(rt.graph.pages_read) == 2


async def test_a_cancelled_job_reads_no_further_page(rt: FakeRuntime, job: Job) -> None:
    await next_page(rt)
    await cancel_job(rt, current(rt, job), None)
    await next_page(rt)
    assert len(rt.graph.pages_read) == 1
    assert rt.queue.waiting(rt.settings.bulk_page_queue) == []
    assert len(rt.tasks.records) == PAGE_SIZE
