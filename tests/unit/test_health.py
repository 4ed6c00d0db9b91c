"""The health endpoint's checks: bounded, concurrent, cached, and never echoing a setting value or
an exception's text (it is anonymous).

Probes here are fakes; the generous asyncio.wait_for(…, 10) only stops a hang from blocking the run.
tests/integration/test_health.py shows the same against a hanging identity endpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from jsonschema import Draft4Validator

from shared.settings import SettingsError, get_settings, load_settings
from shared.triggers import health
from shared.triggers.health import CHECKS, NO_PROTECTED_USERS, Check, Health, permission_report

SECRET = "SECRETvalue0123456789"
DOC = json.loads((Path(__file__).parents[2] / "shared" / "openapi.json").read_text(encoding="utf-8"))
STORAGE = CHECKS["storage"]
GRAPH = CHECKS["graphPermissions"]


def report(checks: dict[str, Check], **options: Any) -> dict[str, Any]:
    return asyncio.run(asyncio.wait_for(Health(checks, **options).report(), 10))


async def hangs() -> dict[str, Any]:
    await asyncio.Event().wait()  # never set
    return {}


async def fine() -> dict[str, Any]:
    return {}


def raises(exc: Exception) -> Any:
    async def probe() -> dict[str, Any]:
        raise exc

    return probe


def test_a_check_that_hangs_is_reported_as_timeout_and_health_answers() -> None:
    result = report({"storage": Check(hangs, STORAGE.silent, STORAGE.refused), "other": Check(fine, "x", "y")}, timeout=0.05)
    assert result["status"] == "unhealthy"
    assert result["checks"]["storage"] == {"ok": False, "state": "timeout", "error": "storage did not answer"}
    assert result["checks"]["other"] == {"ok": True, "state": "ok"}


def test_a_probe_that_ignores_cancellation_does_not_hold_health_up() -> None:
    """A dependency client that swallows the cancellation and keeps waiting (until the test ends)."""

    async def run() -> dict[str, Any]:
        release = asyncio.Event()

        async def stubborn() -> dict[str, Any]:
            while not release.is_set():
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue
            return {}

        try:
            return await asyncio.wait_for(
                Health({"graphPermissions": Check(stubborn, GRAPH.silent, GRAPH.refused)}, timeout=0.05).report(), 10
            )
        finally:
            release.set()

    result = asyncio.run(run())
    assert result["checks"]["graphPermissions"] == {
        "ok": False,
        "state": "timeout",
        "error": "the managed identity endpoint did not answer",
    }


def test_checks_run_concurrently() -> None:
    """`first` can only finish once `second` has started: run one after the other, it would time out."""
    started = asyncio.Event()

    async def first() -> dict[str, Any]:
        await started.wait()
        return {}

    async def second() -> dict[str, Any]:
        started.set()
        return {}

    result = report({"first": Check(first, "x", "y"), "second": Check(second, "x", "y")}, timeout=5)
    assert result == {
        "status": "healthy",
        "checks": {"first": {"ok": True, "state": "ok"}, "second": {"ok": True, "state": "ok"}},
    }


def test_each_check_is_bounded_below_a_second() -> None:
    assert health.CHECK_TIMEOUT_SECONDS < 1  # they run together: health answers within a second


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_last_result_serves_the_next_probes_until_it_is_stale() -> None:
    runs: list[int] = []

    async def counted() -> dict[str, Any]:
        runs.append(1)
        return {}

    clock = Clock()
    checker = Health({"storage": Check(counted, "x", "y")}, timeout=5, ttl=5, clock=clock)

    async def probes() -> None:
        await checker.report()
        clock.now += 4.9
        await asyncio.gather(*(checker.report() for _ in range(10)))  # a burst of probes
        assert len(runs) == 1
        clock.now += 0.2
        await checker.report()
        assert len(runs) == 2

    asyncio.run(asyncio.wait_for(probes(), 10))


def test_probes_arriving_during_a_round_share_it() -> None:
    runs: list[int] = []
    release = asyncio.Event()

    async def slow() -> dict[str, Any]:
        runs.append(1)
        await release.wait()
        return {}

    async def probes() -> list[dict[str, Any]]:
        checker = Health({"storage": Check(slow, "x", "y")}, timeout=5)
        waiting = [asyncio.ensure_future(checker.report()) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*waiting)

    results = asyncio.run(asyncio.wait_for(probes(), 10))
    assert len(runs) == 1 and all(result["status"] == "healthy" for result in results)


def test_a_settings_error_is_reported_by_setting_name_and_public_text_only() -> None:
    exc = SettingsError(
        f"AzureWebJobsStorage must be a connection string, got 'AccountName=a;AccountKey={SECRET}'", setting="AzureWebJobsStorage"
    )
    result = report({"storage": Check(raises(exc), STORAGE.silent, STORAGE.refused)})
    assert result["checks"]["storage"] == {
        "ok": False,
        "state": "failing",
        "setting": "AzureWebJobsStorage",
        "error": "app setting AzureWebJobsStorage is invalid",
    }
    assert SECRET not in json.dumps(result)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """App settings for the real configuration check (get_settings is read once per process)."""
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_the_configuration_check_never_echoes_a_setting_value(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("GRAPH_ENDPOINT", f"https://graph.microsoft.com/?sig={SECRET}")
    with pytest.raises(SettingsError) as invalid:
        load_settings()
    assert SECRET in str(invalid.value)  # the premise: the message (for the log) holds the value
    result = report({"configuration": CHECKS["configuration"]})
    entry = result["checks"]["configuration"]
    assert (entry["ok"], entry["state"], entry["error"]) == (False, "failing", invalid.value.public)
    assert entry.get("setting") == invalid.value.setting
    assert SECRET not in json.dumps(result)


@pytest.mark.parametrize(
    ("exc", "storage", "graph"),
    [
        (
            ServiceRequestError(f"Cannot connect to host 127.0.0.1:1?sig={SECRET}"),
            "storage did not answer",
            "the managed identity endpoint did not answer",
        ),
        (ConnectionResetError(f"reset {SECRET}"), "storage did not answer", "the managed identity endpoint did not answer"),
        (HttpResponseError(f"AuthorizationFailure {SECRET}"), "storage refused the request", "could not get a token"),
        (ClientAuthenticationError(f"token request failed: {SECRET}"), "storage refused the request", "could not get a token"),
        (RuntimeError(SECRET), "the storage check failed", "the graphPermissions check failed"),
    ],
    ids=["no connection", "reset", "error answer", "authentication", "anything else"],
)
def test_failures_are_fixed_texts_per_kind_never_exception_text(exc: Exception, storage: str, graph: str) -> None:
    result = report(
        {
            "storage": Check(raises(exc), STORAGE.silent, STORAGE.refused),
            "graphPermissions": Check(raises(exc), GRAPH.silent, GRAPH.refused),
        }
    )
    assert result["checks"]["storage"] == {"ok": False, "state": "failing", "error": storage}
    assert result["checks"]["graphPermissions"] == {"ok": False, "state": "failing", "error": graph}
    assert SECRET not in json.dumps(result)


@pytest.mark.parametrize(
    ("protected", "count"),
    [("", 0), ("breakglass@contoso.com", 1), ("breakglass@contoso.com,00000000-0000-0000-0000-00000000000a", 2)],
)
def test_the_configuration_check_counts_protected_users_and_warns_when_there_is_none(
    environment: pytest.MonkeyPatch, protected: str, count: int
) -> None:
    environment.setenv("PROTECTED_USERS", protected)
    environment.delenv("GRAPH_ENDPOINT", raising=False)
    result = report({"configuration": CHECKS["configuration"]})
    expected: dict[str, Any] = {"ok": True, "state": "ok", "protectedUsers": count}
    if not count:
        expected["warning"] = NO_PROTECTED_USERS
    assert result == {"status": "healthy", "checks": {"configuration": expected}}


def test_missing_permissions_fail_the_check_and_keep_the_report() -> None:
    async def token_without_revoke() -> dict[str, Any]:
        return permission_report(["User.Read.All"])

    result = report({"graphPermissions": Check(token_without_revoke, GRAPH.silent, GRAPH.refused)})
    entry = result["checks"]["graphPermissions"]
    assert (result["status"], entry["ok"], entry["state"], entry["granted"]) == ("unhealthy", False, "failing", ["User.Read.All"])
    assert entry["features"]["signOut"]["fix"].startswith("grant the managed identity")


def test_every_report_shape_matches_the_published_health_schema() -> None:
    validator = Draft4Validator({**DOC["definitions"]["Health"], "definitions": DOC["definitions"]})
    reports = [
        report({"configuration": Check(fine, "x", "y"), "storage": Check(hangs, STORAGE.silent, STORAGE.refused)}, timeout=0.05),
        report({"configuration": Check(raises(SettingsError("x", setting="RETENTION_DAYS")), "x", "y")}),
        report({"graphPermissions": Check(lambda: fine_report(), GRAPH.silent, GRAPH.refused)}),
        {
            "status": "healthy",
            "checks": {"configuration": {"ok": True, "state": "ok", "protectedUsers": 0, "warning": NO_PROTECTED_USERS}},
        },
    ]
    for body in reports:
        assert not list(validator.iter_errors(body)), body


async def fine_report() -> dict[str, Any]:
    return permission_report(["User.RevokeSessions.All", "User.Read.All", "GroupMember.Read.All", "Directory.Read.All"])
