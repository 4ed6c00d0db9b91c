"""The remediation log's filters (job, source, requester, category), its CSV form and job
progress (shared/usecases/queries.py, job_queries.py, shared/triggers/csv_log.py)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest

from shared.domain.identifiers import parse_user
from shared.domain.principal import Principal
from shared.domain.problems import ProblemError
from shared.domain.requests import SignoutRequest
from shared.domain.tasks import ErrorCategory, TaskError, TaskRecord, iso, utcnow
from shared.triggers import http_api
from shared.usecases import job_queries, queries
from shared.usecases.intake import accept
from shared.usecases.queries import parse_log_query, read_log
from tests.app_functions import registered_functions
from tests.fakes import FakeRuntime
from tests.unit.test_openapi import operation

ANALYST = Principal(str(uuid.uuid4()), None, "Analyst")
PLAYBOOK = Principal(None, str(uuid.uuid4()), "Playbook")
HOSTILE = '=HYPERLINK("http://evil.example","x"), "quoted"\nsecond line'


async def seeded(rt: FakeRuntime) -> list[TaskRecord]:
    """Four tasks that differ in job, source, requester and error."""
    users = tuple(parse_user(f"user{n}@contoso.com") for n in range(4))
    accepted = await accept(rt, SignoutRequest(users, description=HOSTILE), None, ANALYST)
    job_id = str(uuid.uuid4())
    changes: list[dict[str, Any]] = [
        {},
        {"source": "bulk", "job_id": job_id},
        {"source": "sentinel_incident", "requested_by": PLAYBOOK},
        {"error": TaskError(ErrorCategory.PERMISSION_DENIED, "Authorization_RequestDenied", hint="grant the role")},
    ]
    for task, change in zip(accepted.tasks, changes, strict=True):
        rt.tasks.records[task.id] = replace(rt.tasks.records[task.id], **change)
    return [rt.tasks.records[task.id] for task in accepted.tasks]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (lambda tasks: {"jobId": tasks[1].job_id.upper()}, [1]),
        (lambda _: {"source": "bulk"}, [1]),
        (lambda _: {"source": "sentinel_incident"}, [2]),
        (lambda _: {"requestedBy": PLAYBOOK.app_id}, [2]),
        (lambda _: {"requestedBy": ANALYST.object_id}, [0, 1, 3]),
        (lambda _: {"category": "permission_denied"}, [3]),
        (lambda _: {"source": "api", "requestedBy": ANALYST.object_id}, [0, 3]),
    ],
    ids=["jobId", "source-bulk", "source-alert", "requestedBy-app", "requestedBy-user", "category", "source-and-requestedBy"],
)
async def test_each_filter_returns_exactly_the_tasks_it_names(rt: FakeRuntime, params: Any, expected: list[int]) -> None:
    tasks = await seeded(rt)
    page = await read_log(rt, parse_log_query(params(tasks)))
    assert sorted(task.id for task in page.tasks) == sorted(tasks[n].id for n in expected)


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"jobId": "not-a-guid"}, "/jobId"),
        ({"source": "email"}, "/source"),
        ({"requestedBy": "alice@contoso.com"}, "/requestedBy"),
        ({"category": "oops"}, "/category"),
        ({"format": "xml"}, "/format"),
    ],
)
def test_a_bad_filter_is_400_naming_it(params: dict[str, str], pointer: str) -> None:
    with pytest.raises(ProblemError) as caught:
        parse_log_query(params)
    assert caught.value.status == 400 and [error["pointer"] for error in caught.value.errors] == [pointer]


def test_the_document_lists_the_sources_and_categories_the_parser_accepts() -> None:
    params = {p["name"]: p for p in operation("listSignOuts")["parameters"]}
    assert params["source"]["enum"] == list(queries.SOURCES)
    assert params["category"]["enum"] == [category.value for category in ErrorCategory]


# --- CSV through the HTTP function ---------------------------------------------------------------
@pytest.fixture
def api(rt: FakeRuntime, monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    monkeypatch.setattr(http_api, "runtime", lambda: rt)
    monkeypatch.setattr(http_api, "get_settings", lambda: rt.settings)
    return rt


async def get(path: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    url = urlsplit(path)
    name = "list_jobs" if url.path.endswith("/jobs") else "list_signouts"
    handler = registered_functions()[name].get_user_function()
    request = func.HttpRequest(
        "GET", f"http://localhost{path}", headers=headers or {}, body=b"", params=dict(parse_qsl(url.query))
    )
    return await handler(request)


def parsed(response: func.HttpResponse) -> list[dict[str, str]]:
    assert response.status_code == 200, response.get_body()[:300]
    assert response.mimetype == "text/csv"
    assert b"\r\n" in response.get_body(), "RFC 4180 lines end in CRLF"
    return list(csv.DictReader(io.StringIO(response.get_body().decode(), newline="")))


async def test_the_log_as_csv_pages_with_a_link_and_neutralises_formulas(api: FakeRuntime) -> None:
    tasks = await seeded(api)
    first = await get("/api/signouts?format=csv&top=3")
    rows = parsed(first)
    assert len(rows) == 3
    assert {row["description"] for row in rows} == {"'" + HOSTILE}, "a formula is text, quotes and newlines survive"
    link = first.headers["Link"]
    assert link.startswith("<http://localhost/api/signouts?") and link.endswith('>; rel="next"')
    rest = parsed(await get(link[1 : link.index(">")].removeprefix("http://localhost")))
    assert "Link" not in (await get(link[1 : link.index(">")].removeprefix("http://localhost"))).headers
    assert sorted(row["id"] for row in rows + rest) == sorted(task.id for task in tasks)
    denied = next(row for row in rows + rest if row["errorCategory"])
    assert (denied["errorCategory"], denied["errorHint"]) == ("permission_denied", "grant the role")


async def test_accept_text_csv_answers_csv_and_json_stays_the_default(api: FakeRuntime) -> None:
    await seeded(api)
    assert len(parsed(await get("/api/signouts", {"accept": "text/csv"}))) == 4
    as_json = await get("/api/signouts?source=bulk")
    assert as_json.mimetype == "application/json" and len(json.loads(as_json.get_body())["tasks"]) == 1


# --- job progress -------------------------------------------------------------------------------
def report(state: str, count: int | None, discovered: int, succeeded: int, failed: int = 0) -> dict[str, Any]:
    counts = {"discovered": discovered, "succeeded": succeeded, "failed": failed, "skipped": 0}
    return {"state": state, "count": count, "counts": counts, "finishedAt": None}


def test_a_running_job_shows_its_progress_and_when_it_can_finish() -> None:
    now = utcnow()
    shown = job_queries.with_progress(report("running", 100, 60, 30, 10), writes_per_second=20.0, now=now)
    assert (shown["total"], shown["done"], shown["percent"]) == (100, 40, 40)
    assert shown["estimatedFinish"] == iso(now + timedelta(seconds=3))


def test_a_finished_job_is_100_percent_without_an_estimate() -> None:
    shown = job_queries.with_progress(report("finished", 5, 5, 4, 1), writes_per_second=20.0)
    assert (shown["total"], shown["done"], shown["percent"], shown["estimatedFinish"]) == (5, 5, 100, None)
    waiting = job_queries.with_progress(report("awaiting_approval", 2000, 0, 0), writes_per_second=20.0)
    assert (waiting["percent"], waiting["estimatedFinish"]) == (0, None)
