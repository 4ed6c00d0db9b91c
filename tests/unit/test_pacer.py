"""The write pacer (shared/domain/pacing.py) on a clock the test drives: Graph's write quota is
never exceeded, throttling slows it down, it recovers, and alert-driven writes never wait."""

from __future__ import annotations

import pytest

from shared.domain.pacing import WritePacer
from shared.domain.tasks import TaskStatus
from shared.usecases.bulk import create_job
from tests.fakes import FakeClock, FakeRuntime

CEILING = 10.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pacer(clock: FakeClock) -> WritePacer:
    return WritePacer(ceiling=CEILING, clock=clock)


def write_times(pacer: WritePacer, clock: FakeClock, writers: int) -> list[float]:
    """When each of `writers` bulk writers, asking at the same moment, gets to write."""
    return [clock() + pacer.reserve(high_priority=False) for _ in range(writers)]


def test_bulk_writes_never_exceed_the_rate_even_after_a_quiet_spell(pacer: WritePacer, clock: FakeClock) -> None:
    clock.advance(60)  # a quiet bucket holds no burst above the rate
    times = write_times(pacer, clock, 50)
    window = int(CEILING)  # any CEILING + 1 consecutive writes span at least a second
    assert all(later - earlier >= 1.0 - 1e-9 for earlier, later in zip(times, times[window:], strict=False))


def test_a_429_halves_the_rate_and_pauses_bulk_writes_for_retry_after(pacer: WritePacer, clock: FakeClock) -> None:
    pacer.throttled(retry_after=30)
    assert pacer.rate == CEILING / 2
    assert pacer.reserve(high_priority=False) >= 30


def test_a_window_nearly_used_trims_the_rate_at_most_once_a_second(pacer: WritePacer, clock: FakeClock) -> None:
    pacer.observed(0.5)
    pacer.observed(None)
    assert pacer.rate == CEILING
    clock.advance(2)
    pacer.observed(0.96)
    pacer.observed(0.99)
    assert pacer.rate == CEILING * 0.9


def test_the_rate_recovers_while_nothing_throttles(pacer: WritePacer, clock: FakeClock) -> None:
    pacer.throttled(retry_after=1)
    clock.advance(2)
    pacer.reserve(high_priority=False)
    assert CEILING / 2 < pacer.rate < CEILING
    clock.advance(60)
    pacer.reserve(high_priority=False)
    assert pacer.rate == CEILING


def test_high_priority_writes_never_wait_and_bulk_writes_yield_to_them(pacer: WritePacer) -> None:
    pacer.throttled(retry_after=30)
    assert all(pacer.reserve(high_priority=True) == 0 for _ in range(100))
    assert pacer.reserve(high_priority=False) >= 30 + 100 / pacer.rate, "after the pause and the writes they made"


async def test_a_bulk_task_the_pacer_cannot_serve_soon_is_queued_again_untouched(rt: FakeRuntime) -> None:
    """A worker does not hold a bulk task for a long pacing wait: its message comes back later."""
    user = rt.graph.add_user("bob@contoso.com")
    job = await create_job(rt, rt.graph.add_group([user]), "offboarding", None, None)
    await rt.deliver(rt.settings.bulk_page_queue)
    [message] = rt.queue.waiting(rt.settings.bulk_queue)
    rt.pacer.throttled(retry_after=60)
    await rt.deliver(rt.settings.bulk_queue)
    assert rt.graph.revocations == []
    assert rt.tasks.records[job.task_id(user.id)].status is TaskStatus.QUEUED
    later = rt.queue.sent[-1]
    assert later.text == message.text and later.delay >= 60
    rt.clock.advance(later.delay)
    await rt.deliver(rt.settings.bulk_queue)
    assert rt.graph.revocations[0].priority == "low"
    assert rt.tasks.records[job.task_id(user.id)].status is TaskStatus.SUCCEEDED
