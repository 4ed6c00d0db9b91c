"""The private local stack the live fuzz tests run against, and what they assert about it.

Each live test module starts its own stack (Azurite, identity endpoint, Graph simulator, dev host
with a function key) in a module-scoped fixture. pytest-xdist may spread one module's tests over
both workers (see docs/security.md: `--dist loadgroup` does not group under pytest 9), so nothing
here relies on another test having run on the same stack: each module asserts what its own stack
saw.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import httpx

from shared.adapters import graph
from shared.domain.identifiers import parse_user
from tests.integration.helpers import PIPELINE_TIMEOUT, REQUEST_TIMEOUT
from tools.local_stack import LocalStack

FUNCTION_KEY = secrets.token_urlsafe(24)  # per test process; the dev host enforces it like the Functions host
PROBLEM = "application/problem+json"
BREAK_GLASS = "breakglass@contoso.com"  # the simulator's protected account, in PROTECTED_USERS below

# The Graph calls this service makes: read a user (its fixed $select), revoke a user's sessions, and
# (bulk jobs, shared/usecases/bulk.py) page through a group's transitive user members. Nothing else: with
# ALLOW_ALL_USERS unset (as here) not even the tenant-wide GET /v1.0/users listing.
SELECT_USER = re.escape("$select=" + ",".join(graph.USER_FIELDS))
GRAPH_CALLS = [
    ("GET", re.compile(r"/v1\.0/users/[^/]+"), re.compile(SELECT_USER)),
    ("POST", re.compile(r"/v1\.0/users/[^/]+/revokeSignInSessions"), re.compile(r"")),
    (
        "GET",
        re.compile(
            r"/v1\.0/groups/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/transitiveMembers/(microsoft\.)?graph\.user"
        ),
        re.compile(r"\$select=[A-Za-z,]+&\$top=\d+(&\$skiptoken=[A-Za-z0-9_-]+)?|\$skiptoken=[A-Za-z0-9_-]+(&.*)?"),
    ),
    (  # a bulk request counts its target first (guests and protected accounts by filter)
        "GET",
        re.compile(
            r"/v1\.0/groups/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/transitiveMembers/(microsoft\.)?graph\.user/\$count"
        ),
        re.compile(r"(\$filter=(userType%20eq%20%27Guest%27|id%20in%20%28%27[0-9a-f-]{36}%27(%2C%20%27[0-9a-f-]{36}%27)*%29))?"),
    ),
]


@contextmanager
def running_stack() -> Iterator[tuple[LocalStack, httpx.Client, GraphLog]]:
    settings = {
        "DEVHOST_FUNCTION_KEY": FUNCTION_KEY,
        "PROTECTED_USERS": BREAK_GLASS,
        # Generated callbackUrls must never leave the machine: the only allowed host is a closed loopback port.
        "CALLBACK_ALLOWED_HOSTS": "127.0.0.1:9",
        "RETRY_BUDGET_MINUTES": "0.1",
        "RETRY_BASE_SECONDS": "0.2",
        "GRAPH_TIMEOUT_SECONDS": "3",
    }
    with (
        LocalStack(settings=settings) as stack,
        httpx.Client(base_url=stack.base_url, headers={"x-functions-key": FUNCTION_KEY}, timeout=REQUEST_TIMEOUT) as client,
    ):
        graph_log = GraphLog(stack.sim_url)
        try:
            yield stack, client, graph_log
        finally:
            graph_log.http.close()


class GraphLog:
    """The Graph simulator's request log (`GET /_sim/requests`): every call's method and raw path."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT)
        self.accepted_users: set[str] = set()  # identifiers the API accepted from this module's tests
        self.protected = {parse_user(BREAK_GLASS).key, self.user_id(BREAK_GLASS)}  # skipped before any read by these

    def user_id(self, key: str) -> str:
        return str(self.http.get(f"/_sim/users/{key}").json()["id"])

    def entries(self) -> list[dict[str, Any]]:
        data = self.http.get("/_sim/requests").json()
        return data["requests"] if isinstance(data, dict) else data


def wait_until_quiet(client: httpx.Client, graph_log: GraphLog, timeout: float = PIPELINE_TIMEOUT) -> list[dict[str, Any]]:
    """Until no task is queued or in progress and the simulator's log stops growing."""
    deadline, previous = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        busy = [
            t
            for s in ("queued", "in_progress")
            for t in client.get("/api/signouts", params={"status": s, "top": 100}).json()["tasks"]
        ]
        entries = graph_log.entries()
        if not busy and len(entries) == previous:
            return entries
        previous = len(entries)
        time.sleep(0.5)
    raise AssertionError(f"still busy after {timeout}s: {len(busy)} task(s) queued or in progress")


def assert_graph_saw_only_allowed_calls(stack: LocalStack, client: httpx.Client, graph_log: GraphLog) -> list[dict[str, Any]]:
    """Every Graph call this stack's simulator logged is on the allow-list, the protected account was
    never revoked, every identifier the API accepted was read by exactly that value (one segment),
    and the dev host logged no unexpected exception."""
    entries = wait_until_quiet(client, graph_log)
    unexpected = [
        (entry["method"], entry["path"], entry["query"])
        for entry in entries
        if not any(
            entry["method"] == method and path.fullmatch(entry["path"]) and query.fullmatch(entry["query"])
            for method, path, query in GRAPH_CALLS
        )
    ]
    assert not unexpected, f"Graph calls outside the allow-list: {unexpected[:10]}"
    looked_up = {
        unquote(entry["path"].split("/")[3])
        for entry in entries
        if entry["method"] == "GET" and entry["path"].startswith("/v1.0/users/")
    }
    expected = {user for user in graph_log.accepted_users if user.lower() not in graph_log.protected}
    assert expected <= looked_up, expected - looked_up
    revoked = {entry["path"].split("/")[3] for entry in entries if entry["method"] == "POST"}
    assert graph_log.user_id(BREAK_GLASS) not in revoked  # PROTECTED_USERS: never signed out
    assert stack.devhost is not None
    log = stack.devhost.output()
    # No exception at all: a bulk job for a fuzzed group id Graph does not know (404) or may not read
    # (403) now fails the job (state "failed", with the reason) instead of raising out of the worker.
    tracebacks = [block[:3000] for block in re.split(r"\n(?=\d{4}-\d\d-\d\d )", log) if "Traceback" in block]
    assert not tracebacks, "unexpected exceptions in the dev host:\n" + "\n".join(tracebacks[:3])
    return entries


def assert_problem(response: httpx.Response, status: int, sent: object = None) -> dict[str, Any]:
    assert response.status_code == status, (sent, response.request.method, response.request.url, response.text[:500])
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status and body["title"], body
    return body
