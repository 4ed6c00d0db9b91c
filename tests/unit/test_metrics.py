"""The service's metrics as an in-memory reader collects them: signout.tasks counts each task that
ended once, signout.time_to_revoke has one value per revocation, 429s count as throttling."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared.domain.identifiers import UserRef, parse_user
from shared.domain.requests import SignoutRequest
from shared.domain.tasks import TaskStatus
from shared.usecases.intake import accept_user
from shared.usecases.process_task import process_poison, single_lane
from tests.fakes import FakeRuntime, FakeUser, transient

_READER = InMemoryMetricReader()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    """The process's meter provider (set once: OpenTelemetry allows one) with an in-memory reader."""
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    _READER.get_metrics_data()  # drop what earlier tests recorded (cumulative: compared as a delta)
    return _READER


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def counted(found: dict[str, list[Any]], name: str, **attributes: str) -> int:
    return sum(point.value for point in found.get(name, []) if attributes.items() <= dict(point.attributes).items())


def revocations(found: dict[str, list[Any]]) -> int:
    return sum(point.count for point in found.get("signout.time_to_revoke", []))


async def test_each_task_that_ends_is_counted_once_and_each_revocation_timed(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef, reader: InMemoryMetricReader
) -> None:
    before = points(reader)
    bob = rt.graph.add_user("bob@contoso.com")
    users = (alice_ref, parse_user(bob.upn), parse_user("nobody@contoso.com"))
    tasks = [await accept_user(rt, user, SignoutRequest((user,)), None) for user in users]
    while await rt.deliver(rt.settings.signout_queue) is not None:
        pass
    assert [rt.tasks.records[task.id].status for task in tasks] == [TaskStatus.SUCCEEDED, TaskStatus.SUCCEEDED, TaskStatus.FAILED]
    after = points(reader)
    succeeded = {"outcome": "succeeded", "category": "none", "source": "api", "lane": "single"}
    assert counted(after, "signout.tasks", **succeeded) - counted(before, "signout.tasks", **succeeded) == 2
    assert counted(after, "signout.tasks", outcome="failed") - counted(before, "signout.tasks", outcome="failed") == 1
    assert revocations(after) - revocations(before) == 2
    await rt.deliver(rt.settings.signout_queue)  # nothing left: a redelivery would count nothing either
    assert counted(points(reader), "signout.tasks") == counted(after, "signout.tasks")


async def test_a_throttled_revoke_counts_by_scope(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef, reader: InMemoryMetricReader
) -> None:
    before = points(reader)
    await accept_user(rt, alice_ref, SignoutRequest((alice_ref,)), None)
    throttled = transient(retry_after=30, status=429)
    throttled.permission = "User.RevokeSessions.All"
    rt.graph.fail_next("revoke_sessions", throttled)
    await rt.deliver(rt.settings.signout_queue)
    after = points(reader)
    scope = {"scope": "User.RevokeSessions.All"}
    assert counted(after, "signout.graph.throttled", **scope) - counted(before, "signout.graph.throttled", **scope) == 1
    assert counted(after, "signout.tasks") == counted(before, "signout.tasks"), "not ended: retried later"
    assert "signout.pacer.rate" in after


async def test_a_poisoned_message_is_counted_by_queue(rt: FakeRuntime, reader: InMemoryMetricReader) -> None:
    before = points(reader)
    await process_poison(rt, b'{"user": "adele@contoso.com"}', "m-1", single_lane(rt))
    queue = {"queue": f"{rt.settings.signout_queue}-poison"}
    assert counted(points(reader), "signout.poison.messages", **queue) - counted(before, "signout.poison.messages", **queue) == 1
