"""Queries and retention (shared/usecases/queries.py, retention.py) on the in-memory ports."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.identifiers import parse_user
from shared.domain.requests import SignoutRequest
from shared.domain.tasks import utcnow
from shared.usecases.intake import accept
from shared.usecases.queries import LogQuery, parse_log_query, read_log
from shared.usecases.retention import apply_retention
from tests.fakes import FakeRuntime

USERS = tuple(parse_user(f"user{n}@contoso.com") for n in range(3))


async def test_the_log_pages_through_every_task_once(rt: FakeRuntime) -> None:
    accepted = await accept(rt, SignoutRequest(USERS), None, None)
    first = await read_log(rt, LogQuery(top=2))
    assert len(first.tasks) == 2 and first.continuation_token is not None
    rest = await read_log(rt, parse_log_query({"top": "2", "continuationToken": first.continuation_token}))
    assert rest.continuation_token is None
    assert sorted(task.id for task in first.tasks + rest.tasks) == sorted(task.id for task in accepted.tasks)


async def test_retention_deletes_an_expired_task_with_every_row_that_names_it(rt: FakeRuntime) -> None:
    accepted = await accept(rt, SignoutRequest(USERS[:1], correlation_id="incident-1"), "key-1", None)
    task = accepted.tasks[0]
    assert await apply_retention(rt, now=utcnow() + timedelta(days=rt.settings.retention_days + 1)) == 2, "the task and its key"
    assert rt.tasks.records == {}
    assert (rt.index.log_ids(), rt.index.user_ids(USERS[0]), rt.index.correlation_ids("incident-1")) == ([], [], [])
    assert rt.pending.task_of(USERS[0]) is None
    assert task.id not in rt.index.active
    assert rt.idempotency.entries == {}
