"""The devhost's pure parts: host.json parsing, route templates, NCRONTAB, polling backoff."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tools.devhost import Backoff, Cron, QueueOptions, Route, StartupError, check_environment, resolve, timespan


def test_timespan() -> None:
    assert timespan("00:00:00.500") == 0.5
    assert timespan("00:01:00") == 60
    assert timespan("1.02:00:03.25") == 86400 + 7203.25
    with pytest.raises(StartupError):
        timespan("500ms")


def test_queue_options_defaults_and_case_insensitive_keys() -> None:
    assert QueueOptions.from_host_json({}) == QueueOptions(16, 8, 60.0, 0.0, 5, "base64")
    opts = QueueOptions.from_host_json({"Extensions": {"Queues": {"BatchSize": 4, "messageEncoding": "None"}}})
    assert (opts.batch_size, opts.new_batch_threshold, opts.message_encoding) == (4, 2, "none")
    for bad in ({"batchSize": 33}, {"maxPollingInterval": "00:00:00.050"}, {"messageEncoding": "utf8"}):
        with pytest.raises(StartupError):
            QueueOptions.from_host_json({"extensions": {"queues": bad}})


def test_resolve_app_settings() -> None:
    assert resolve("%Q%-poison", {"Q": "jobs"}) == "jobs-poison"
    with pytest.raises(StartupError, match="'Q'"):
        resolve("%Q%", {})


@pytest.mark.parametrize(
    ("env", "ok"),
    [
        ({"IDENTITY_ENDPOINT": "http://127.0.0.1:8081/msi/token", "IDENTITY_HEADER": "x"}, True),
        ({"IDENTITY_ENDPOINT": "http://localhost:8081/token", "IDENTITY_HEADER": "x"}, True),
        ({"IDENTITY_ENDPOINT": "http://[::1]:8081/token", "IDENTITY_HEADER": "x"}, True),
        ({"IDENTITY_ENDPOINT": "http://10.0.0.1/token", "IDENTITY_HEADER": "x"}, False),
        ({"IDENTITY_ENDPOINT": "http://127.0.0.1:8081/token"}, False),
        ({"LOCAL_DEV_CREDENTIAL": "1"}, True),
        ({}, False),
    ],
)
def test_check_environment(env: dict[str, str], ok: bool) -> None:
    env = {**env, "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    if ok:
        check_environment(env)
    else:
        with pytest.raises(StartupError):
            check_environment(env)


def route(template: str, prefix: str = "api") -> Route:
    return Route.build(None, prefix, template, None, None)  # type: ignore[arg-type]


def test_route_templates() -> None:
    assert route("a/{id:int}/{name?}").match("/api/a/3") == {"id": "3"}
    assert route("a/{id:int}/{name?}").match("/API/A/3/x/") == {"id": "3", "name": "x"}
    assert route("a/{id:int}").match("/api/a/x") is None
    assert route("a/{id:int}").match("/api/a/3/4") is None
    assert route("f/{*rest}").match("/api/f/x/y%2Fz") == {"rest": "x/y/z"}
    assert route("v/{n:alpha}").match("/api/v/ab1") is None
    assert route("g/{x:guid}").match("/api/g/0f8fad5b-d9cb-469f-a165-70867728950e")
    assert route("g/{x:guid}").match("/api/g/0f8fad5b") is None
    assert route("r/{x:regex(^a$)}").match("/api/r/whatever") == {"x": "whatever"}  # unknown: anything
    assert route("d/{page=1}").match("/api/d") == {"page": "1"}
    assert route("c/{a}.{b}").match("/api/c/x.json") == {"a": "x", "b": "json"}
    assert route("", prefix="").match("/") == {}
    assert route("x", prefix="").match("/api/x") is None


def test_route_precedence_orders_literals_first() -> None:
    order = sorted(["u/{*all}", "u/{n}", "u/{n:int}", "u/me"], key=lambda t: route(t).precedence)
    assert order == ["u/me", "u/{n:int}", "u/{n}", "u/{*all}"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/5 * * * * *", "2024-01-01T00:00:03", "2024-01-01T00:00:05"),
        ("0 */5 * * * *", "2024-01-01T00:04:59", "2024-01-01T00:05:00"),
        ("0 30 9 * * 1-5", "2024-01-05T10:00:00", "2024-01-08T09:30:00"),  # Friday -> Monday
        ("0 0 0 29 2 *", "2024-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 0 12 1 jan,jul *", "2024-02-01T00:00:00", "2024-07-01T12:00:00"),
        ("10,20 0 0 * * sun", "2024-01-07T00:00:10", "2024-01-07T00:00:20"),
    ],
)
def test_cron_next(expr: str, after: str, expected: str) -> None:
    assert Cron(expr).next_after(at(after)) == at(expected)


@pytest.mark.parametrize("expr", ["* * * * *", "60 * * * * *", "0 0 0 30 2 *", "0 0 0 * * 7"])
def test_cron_rejects(expr: str) -> None:
    with pytest.raises(StartupError):
        Cron(expr)


def test_backoff_resets_on_messages_and_grows_to_max() -> None:
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next(False) for _ in range(10)]
    assert delays[0] == 0.1 and delays[-1] == 1.0 and delays == sorted(delays)
    assert backoff.next(True) == 0.1
