"""Failure behaviour: what a SOC analyst notices when a dependency of the service fails.

These tests kill the dev host, cut storage and break the managed-identity endpoint, so they run
against a stack of this module's own (never the session `stack`): its storage is reached through
`StorageProxy`, so storage can fail like a real outage (every connection reset, or chosen requests
failed) while Azurite keeps its in-memory data. Tests that need other app settings restart the dev
host with them (`Env.use_devhost`). Leases, backoff and timeouts are small so the file stays fast.
"""

from __future__ import annotations

import itertools
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueServiceClient

from shared.domain.identifiers import parse_user
from shared.domain.tasks import parse_iso
from tests.integration.helpers import REQUEST_TIMEOUT, Sim, start_own_devhost, wait_for_terminal, wait_until
from tools.azurite import ACCOUNT, ACCOUNT_KEY
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration

TABLE = "signouttasks"
TERMINAL = {"succeeded", "failed", "skipped"}


# --- storage that fails on demand ---------------------------------------------------------------


class StorageProxy:
    """A loopback proxy in front of one Azurite service that fails storage the ways an outage does,
    while Azurite itself (in memory) keeps its data:

    - `cut()` resets every open connection and every new request until `restore()`;
    - `fail(line, body=...)` fails the requests whose request line matches the regex `line` (and
      whose body contains `body`) with a connection reset, until `clear()`; `committed=True` first
      lets storage apply the request and loses only its response (the caller cannot tell).
    """

    def __init__(self) -> None:
        self.target_port = 0  # set once Azurite has its ports
        self.up = True
        self._faults: list[tuple[re.Pattern[bytes], bytes, bool]] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self.up = False
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _abort(sock)

    def restore(self) -> None:
        self.up = True

    def fail(self, line: str, body: str = "", committed: bool = False) -> None:
        with self._lock:
            self._faults.append((re.compile(line.encode()), body.encode(), committed))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port)) if self.up else None
            except OSError:
                upstream = None  # Azurite itself is down
            with self._lock:
                if upstream is None or not self.up:
                    _abort(client)
                    if upstream is not None:
                        _abort(upstream)
                    continue
                self._open |= {client, upstream}
            lost = threading.Event()  # the next response from upstream must not reach the client
            threading.Thread(target=self._requests, args=(client, upstream, lost), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, lost), daemon=True).start()

    def _fault(self, head: bytes, body: bytes) -> tuple[bool, bool] | None:
        line = head.split(b"\r\n", 1)[0]
        with self._lock:
            for pattern, needle, committed in self._faults:
                if pattern.search(line) and needle in body:
                    return True, committed
        return None

    def _requests(self, client: socket.socket, upstream: socket.socket, lost: threading.Event) -> None:
        """Client to storage, one HTTP/1.1 request at a time (the SDKs never pipeline)."""
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                head += b"\r\n\r\n"
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length is None and re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
                    upstream.sendall(head + buffer)  # not used by the storage SDKs: pass through
                    while chunk := client.recv(65536):
                        upstream.sendall(chunk)
                    return
                size = int(length[1]) if length else 0
                while len(buffer) < size:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:size], buffer[size:]
                fault = self._fault(head, body)
                if not self.up or (fault and not fault[1]):
                    return
                if fault:
                    lost.set()
                upstream.sendall(head + body)
                if fault:
                    return
        except OSError:
            pass
        finally:
            if not lost.is_set():
                self._close(client, upstream)

    def _responses(self, upstream: socket.socket, client: socket.socket, lost: threading.Event) -> None:
        try:
            while chunk := upstream.recv(65536):
                if lost.is_set() or not self.up:
                    break
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    def _close(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(sockets)
        for sock in sockets:
            _abort(sock)


def _abort(sock: socket.socket) -> None:
    """Reset the connection (RST) and wake any thread blocked reading it."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    with suppress(OSError):
        sock.close()


def connection_string(ports: dict[str, int]) -> str:
    endpoints = "".join(f"{name.capitalize()}Endpoint=http://127.0.0.1:{port}/{ACCOUNT};" for name, port in ports.items())
    return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};{endpoints}"


# --- the stack ---------------------------------------------------------------------------------

SETTINGS = {
    "RETRY_BUDGET_MINUTES": "0.25",
    "RETRY_BASE_SECONDS": "0.5",
    "GRAPH_TIMEOUT_SECONDS": "3",
    "DEVHOST_MESSAGE_LEASE_SECONDS": "3",
}
# azure-identity retries a failing identity endpoint for ~5 s (3 retries with backoff) inside one
# Graph call, so the token error only reaches the task when the Graph timeout is longer than that.
TOKEN_RETRY_SETTINGS = {"GRAPH_TIMEOUT_SECONDS": "10"}


@dataclass
class Env:
    stack: LocalStack
    api: httpx.Client
    sim: Sim
    identity: httpx.Client
    storage: dict[str, StorageProxy]
    base_settings: dict[str, str]
    background: list[Callable[[], object]] = field(default_factory=list)  # work that must finish first

    @cached_property
    def table(self) -> TableClient:
        """The status table, straight from Azurite (not through the proxies)."""
        return TableServiceClient.from_connection_string(self.stack.azurite.connection_string).get_table_client(TABLE)

    def records(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        try:
            return [dict(e) for e in self.table.query_entities("RowKey eq 'task'") if predicate(e)]
        except ResourceNotFoundError:  # the app creates its table on first use
            return []

    def use_devhost(self, fresh: bool = False, **overrides: str) -> None:
        """Let earlier work finish, then make sure the dev host runs with the stack's settings plus
        `overrides`, restarting it when they differ or when `fresh` (a new process has nothing in
        memory, not even a cached Graph token)."""
        while self.background:
            self.background.pop()()
        wanted = {**self.base_settings, **overrides}
        if fresh or wanted != self.stack.app_settings or not self.devhost_alive:
            self.stack.app_settings.clear()
            self.stack.app_settings.update(wanted)
            if self.stack.devhost is not None:
                self.stack.devhost.kill()
            self.start_devhost()

    def start_devhost(self) -> None:
        start_own_devhost(self.stack)
        self.api.base_url = httpx.URL(self.stack.base_url)

    @property
    def devhost_alive(self) -> bool:
        devhost = self.stack.devhost
        return devhost is not None and devhost.process is not None and devhost.process.poll() is None

    def cut_storage(self) -> None:
        for proxy in self.storage.values():
            proxy.cut()

    def restore_storage(self) -> None:
        for proxy in self.storage.values():
            proxy.restore()
            proxy.clear()


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    proxies = {name: StorageProxy() for name in ("blob", "queue", "table")}
    storage = connection_string({name: proxy.port for name, proxy in proxies.items()})
    stack = LocalStack(settings={**SETTINGS, "AzureWebJobsStorage": storage})
    try:
        stack.azurite.start()
        for name, proxy in proxies.items():
            proxy.target_port = stack.azurite.ports[name]
        stack.start()
        start_own_devhost(stack, started=True)
        with (
            httpx.Client(base_url=stack.base_url, timeout=CALLER_PATIENCE + 60) as api,  # so assert_unavailable measures
            httpx.Client(base_url=stack.identity_url, timeout=REQUEST_TIMEOUT) as identity,
        ):
            yield Env(stack, api, Sim(stack.sim_url), identity, proxies, dict(stack.app_settings))
    finally:
        stack.stop()
        for proxy in proxies.values():
            proxy.close()


def add_users(sim: Sim, count: int, name: str) -> list[str]:
    users = [
        {"id": str(uuid.uuid4()), "userPrincipalName": f"{name}{i}-{uuid.uuid4().hex[:8]}@contoso.com", "userType": "Member"}
        for i in range(count)
    ]
    sim.add_users(*users)
    return [user["id"] for user in users]


def graph_calls(sim: Sim, task_id: str) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r.get("client-request-id") == task_id]


# A Logic Apps (multi-tenant) HTTP action abandons a request after 120 s: a 503 must come before
# that to be of any use. A bound on behaviour (the 503 comes), not a speed target: it takes seconds.
CALLER_PATIENCE = 120


def assert_unavailable(response: httpx.Response, elapsed: float) -> None:
    """What a caller gets while storage is down: a 503 problem it can retry, while it still waits."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert elapsed < CALLER_PATIENCE, f"the caller waited {elapsed:.1f}s for its 503"


# --- 1. the dev host dies with work in flight ----------------------------------------------------


def test_sigkill_with_100_tasks_in_flight_loses_no_task_and_revokes_at_most_per_attempt(env: Env) -> None:
    env.use_devhost()
    users = add_users(env.sim, 100, "crash")
    since = max((r["seq"] for r in env.sim.requests()), default=0)
    # Every Graph call takes 1.5 s (3 a task), so a task seen revoking below is still running when the
    # dev host is killed, however slowly this test gets there: its read-back alone takes 1.5 s more.
    env.sim.http.post("/_sim/config", json={"latency_ms": 1500}).raise_for_status()
    try:
        response = env.api.post("/api/signouts", json={"users": users, "description": "INC-crash"})
        assert response.status_code == 202, response.text
        tasks = {task["id"]: task["user"] for task in response.json()["tasks"]}
        assert len(tasks) == 100

        def revoking() -> set[str]:
            """Tasks whose revokeSignInSessions call Graph is answering right now (received less than
            half its latency ago): they cannot finish before the read-back call that follows."""
            calls = env.sim.http.get("/_sim/requests", params={"since": since}).json()["requests"]
            now = datetime.now(UTC)
            return {
                c["client-request-id"]
                for c in calls
                if c["method"] == "POST"
                and c["status"] is None
                and now - datetime.fromisoformat(c["timestamp"]) < timedelta(seconds=0.75)
            } & tasks.keys()

        in_flight = wait_until(revoking, "sign-outs under way")
        assert env.stack.devhost is not None
        env.stack.devhost.kill()  # SIGKILL: no shutdown, nothing handed back to the queue
        at_kill = {r["PartitionKey"]: r["Status"] for r in env.records(lambda e: e["PartitionKey"] in tasks)}
        assert len(at_kill) == 100 and {at_kill[task_id] for task_id in in_flight} == {"in_progress"}
        assert "queued" in at_kill.values()  # and a backlog not started yet
        abandoned = {task_id for task_id, status in at_kill.items() if status == "in_progress"}

        env.sim.http.post("/_sim/config", json={"latency_ms": 0}).raise_for_status()
        env.start_devhost()

        def finished() -> bool:
            return {r["Status"] for r in env.records(lambda e: e["PartitionKey"] in tasks)} <= TERMINAL

        wait_until(finished, "every task terminal after the restart (lease 3 s)")
    finally:
        env.sim.http.post("/_sim/config", json={"latency_ms": 0})
        if not env.devhost_alive:
            env.start_devhost()

    with ThreadPoolExecutor(8) as pool:
        records = dict(zip(tasks, pool.map(lambda task_id: env.api.get(f"/api/signouts/{task_id}").json(), tasks), strict=True))
        revocations = dict(zip(tasks, pool.map(lambda task_id: env.sim.user(tasks[task_id])["revokeCount"], tasks), strict=True))
    assert Counter(record["status"] for record in records.values()) == {"succeeded": 100}
    for task_id, record in records.items():
        assert 1 <= revocations[task_id] <= min(record["attempts"], 2), (record, revocations[task_id])
        if task_id in abandoned:  # the restarted host picked up the message the dead one held
            assert record["attempts"] >= 2, record


# --- 2. storage down ----------------------------------------------------------------------------


def test_storage_down_gives_a_quick_503_and_the_service_recovers_without_a_restart(env: Env) -> None:
    env.use_devhost()
    user, bystander = add_users(env.sim, 2, "storage")
    queues = [q.name for q in QueueServiceClient.from_connection_string(env.stack.azurite.connection_string).list_queues()]
    devhost = env.stack.devhost
    assert devhost is not None and devhost.process is not None

    env.stack.azurite.kill()  # the emulator is gone: every storage call fails
    try:
        started = time.monotonic()
        refused = env.api.post("/api/signouts", json={"users": [user, bystander]})
        assert_unavailable(refused, time.monotonic() - started)
        assert refused.json()["title"] == "Storage unavailable"
        started = time.monotonic()
        assert_unavailable(env.api.get(f"/api/signouts/{uuid.uuid4()}"), time.monotonic() - started)
    finally:
        env.stack.azurite.start()  # same ports; in memory, so empty

    # Azurite lost its queues and table; in Azure an outage does not delete them (the template made them).
    service = QueueServiceClient.from_connection_string(env.stack.azurite.connection_string)
    for name in queues:
        with suppress(ResourceExistsError):  # the dev host's listeners recreate theirs too
            service.create_queue(name)
    TableServiceClient.from_connection_string(env.stack.azurite.connection_string).create_table(TABLE)

    response = env.api.post("/api/signouts", json={"users": [user]})
    assert response.status_code == 202, response.text
    record = wait_for_terminal(env.api, response.json()["tasks"][0]["statusUrl"])
    assert (record["status"], record["attempts"]) == ("succeeded", 1)
    assert env.sim.user(user)["revokeCount"] == 1
    assert env.sim.user(bystander)["revokeCount"] == 0  # the refused request signed nobody out
    assert env.stack.devhost is devhost and devhost.process.poll() is None  # the same process throughout


def test_storage_refusing_the_first_write_leaves_nothing_behind_and_a_retry_is_accepted_at_once(env: Env) -> None:
    """The intake's first write (the user's pending slot and log row, one table transaction) fails."""
    env.use_devhost()
    [user] = add_users(env.sim, 1, "claim")
    env.storage["table"].fail(r"^POST /devstoreaccount1/\$batch", body=user)
    try:
        started = time.monotonic()
        assert_unavailable(env.api.post("/api/signouts", json={"users": [user]}), time.monotonic() - started)
    finally:
        env.storage["table"].clear()

    assert env.records(lambda e: e["User"] == user) == []  # no task record
    user_rows = env.table.query_entities("PartitionKey eq @pk", parameters={"pk": parse_user(user).partition})
    assert list(user_rows) == []  # no pending slot, no per-user log row

    retried = env.api.post("/api/signouts", json={"users": [user]})
    assert retried.status_code == 202, retried.text  # accepted, not 503/409 for a leftover of the failed attempt
    record = wait_for_terminal(env.api, retried.json()["tasks"][0]["statusUrl"])
    assert record["status"] == "succeeded"
    assert env.sim.user(user)["revokeCount"] == 1


def test_storage_cut_in_the_middle_of_a_bulk_post(env: Env) -> None:
    """Storage dies while a 100-user request is being accepted and the worker is running its tasks."""
    env.use_devhost()
    users = add_users(env.sim, 100, "cut")
    wanted = set(users)
    result: dict[str, Any] = {}

    def post() -> None:
        result["response"] = env.api.post("/api/signouts", json={"users": users})
        result["at"] = time.monotonic()

    caller = threading.Thread(target=post)
    caller.start()
    try:
        wait_until(lambda: len(env.records(lambda e: e["User"] in wanted)) >= 20, "request half accepted")
        env.cut_storage()
        cut_at = time.monotonic()
        caller.join(CALLER_PATIENCE + 60)
        assert not caller.is_alive()
        # Steps that are safe to repeat are retried by the storage SDKs first, but not for ever.
        assert_unavailable(result["response"], result["at"] - cut_at)
        time.sleep(1)
    finally:
        env.restore_storage()

    # The service works again at once, without a restart, for users the outage did not touch.
    [fresh] = add_users(env.sim, 1, "after-cut")
    response = env.api.post("/api/signouts", json={"users": [fresh]})
    assert response.status_code == 202, response.text
    record = wait_for_terminal(env.api, response.json()["tasks"][0]["statusUrl"])
    assert record["status"] == "succeeded", record

    # Every task the request created finishes: those the worker was running when storage went away
    # are not left in progress, and accepted ones whose message could not be released surface when
    # their acceptance window (60 s) ends.
    wait_until(
        lambda: not env.records(lambda e: e["User"] in wanted and e["Status"] not in TERMINAL),
        "every task of the request finished",
    )
    # No user was signed out without a task record that says so.
    revoked = {user for user in users if env.sim.user(user)["revokeCount"] > 0}
    assert revoked, "none of the accepted sign-outs happened"
    recorded = {r["User"] for r in env.records(lambda e: e["User"] in wanted) if r["Status"] == "succeeded"}
    assert revoked <= recorded


# --- 3. the managed-identity endpoint fails ----------------------------------------------------


def test_identity_endpoint_down_for_the_whole_retry_budget_gives_up_with_the_token_error(env: Env) -> None:
    """A task that meets only the outage is retried for the whole budget, then gives up with the
    token error as its last error; it is never taken for a permission problem. (Tasks still being
    retried when the endpoint comes back succeed: the next test.)"""
    env.use_devhost(fresh=True, **TOKEN_RETRY_SETTINGS)  # nothing cached: Graph calls need a token
    [early] = add_users(env.sim, 1, "msi")
    seen: set[str] = set()

    def read(url: str) -> dict[str, Any]:
        record = env.api.get(url).json()
        seen.update([record["error"]["category"]] if record["error"] else [])
        return record

    env.identity.post("/_identity/config", json={"fail_next": 100_000, "fail_status": 503}).raise_for_status()
    try:
        response = env.api.post("/api/signouts", json={"users": [early]})
        assert response.status_code == 202, response.text
        [doomed] = response.json()["tasks"]
        wait_until(lambda: read(doomed["statusUrl"])["status"] == "failed", "the task gives up")
    finally:
        env.identity.post("/_identity/reset").raise_for_status()  # the endpoint is back

    gave_up = read(doomed["statusUrl"])
    assert gave_up["attempts"] >= 2  # retried for the whole budget (RETRY_BUDGET_MINUTES)
    assert parse_iso(gave_up["completedAt"]) - parse_iso(gave_up["createdAt"]) >= timedelta(seconds=15)
    error = gave_up["error"]
    assert (error["category"], error["code"]) == ("gave_up", "TokenUnavailable")
    assert (
        error["message"].startswith("gave up after ")
        and "retry budget" in error["message"]
        and "managed identity" in error["message"]
    )
    assert "httpStatus" not in error and "graphRequestId" not in error
    assert graph_calls(env.sim, doomed["id"]) == []  # without a token nothing reached Graph
    assert env.sim.user(early)["revokeCount"] == 0
    assert "permission_denied" not in seen


def test_identity_endpoint_down_then_back_tasks_are_retried_and_succeed(env: Env) -> None:
    env.use_devhost(fresh=True, **TOKEN_RETRY_SETTINGS)
    users = add_users(env.sim, 2, "msi-back")
    # azure-identity retries a failing endpoint ~4 times within one attempt: 8 failures outlast one attempt.
    env.identity.post("/_identity/config", json={"fail_next": 8, "fail_status": 503}).raise_for_status()
    try:
        response = env.api.post("/api/signouts", json={"users": users})
        assert response.status_code == 202, response.text
        records = [wait_for_terminal(env.api, task["statusUrl"]) for task in response.json()["tasks"]]
    finally:
        env.identity.post("/_identity/reset").raise_for_status()
    assert [(r["status"], r["error"]) for r in records] == [("succeeded", None)] * 2
    assert any(r["attempts"] >= 2 for r in records)  # the outage was met, and outlasted
    assert [env.sim.user(user)["revokeCount"] for user in users] == [1, 1]


def test_slow_identity_endpoint_is_waited_for_not_failed(env: Env) -> None:
    """A token that takes longer than a Graph call may (GRAPH_TIMEOUT_SECONDS is 3) has its own
    deadline: the task is not failed, nor reported as a Graph timeout."""
    env.use_devhost(fresh=True)
    [user] = add_users(env.sim, 1, "msi-slow")
    env.identity.post("/_identity/config", json={"delay_ms": 4500}).raise_for_status()
    try:
        response = env.api.post("/api/signouts", json={"users": [user]})
        assert response.status_code == 202, response.text
        record = wait_for_terminal(env.api, response.json()["tasks"][0]["statusUrl"])
    finally:
        env.identity.post("/_identity/reset").raise_for_status()
    assert (record["status"], record["error"], record["attempts"]) == ("succeeded", None, 1)
    assert env.sim.user(user)["revokeCount"] == 1


# --- 4. Graph failing ---------------------------------------------------------------------------

RECOVERS_AFTER = 2  # failures before the recovering user's sign-out goes through


@dataclass(frozen=True)
class Failure:
    rule: dict[str, Any]
    code: str
    http_status: int | None  # None: Graph never answered, so there is no request-id either
    min_gap: float  # seconds between two attempts at least (Retry-After, else the 1 s floor)


FAILURES = {
    "500": Failure({"action": "status", "status": 500}, "InternalServerError", 500, 0.9),
    "503 with Retry-After": Failure(
        {"action": "status", "status": 503, "headers": {"Retry-After": "1"}}, "ServiceUnavailable", 503, 0.9
    ),
    "504": Failure({"action": "status", "status": 504}, "GatewayTimeout", 504, 0.9),
    "timeout": Failure({"action": "timeout", "delay_ms": 4000}, "Timeout", None, 3.9),  # the client gives up after 3 s
    "connection reset": Failure({"action": "reset"}, "ConnectionError", None, 0.9),
    "429 with Retry-After": Failure(
        {"action": "status", "status": 429, "headers": {"Retry-After": "2"}}, "TooManyRequests", 429, 1.9
    ),
    "429 without Retry-After": Failure({"action": "status", "status": 429}, "TooManyRequests", 429, 0.9),
    "503 on the user lookup": Failure({"action": "status", "status": 503, "method": "GET"}, "ServiceUnavailable", 503, 0.9),
}


@dataclass(frozen=True)
class Scenario:
    recovers: str  # user whose calls fail RECOVERS_AFTER times
    exhausted: str  # user whose calls fail every time
    ok_id: str  # their tasks
    failed_id: str

    def wait(self, api: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
        ok, failed = (wait_for_terminal(api, f"/api/signouts/{task_id}") for task_id in (self.ok_id, self.failed_id))
        return ok, failed


@pytest.fixture(scope="module")
def graph_failures(env: Env) -> dict[str, Scenario]:
    """Every failure kind at once: each takes seconds, mostly waiting for its retries, so they run
    together and each parametrized test below checks one; other tests let them finish first."""
    env.use_devhost()
    scenarios = {}
    for name, failure in FAILURES.items():
        recovers, exhausted = add_users(env.sim, 2, "graph-fault")
        for user, count in ((recovers, RECOVERS_AFTER), (exhausted, 100_000)):
            env.sim.fault(**{"method": "POST", **failure.rule, "user": user, "count": count})
        response = env.api.post("/api/signouts", json={"users": [recovers, exhausted], "description": name})
        assert response.status_code == 202, response.text
        ok, failed = response.json()["tasks"]
        scenarios[name] = Scenario(recovers, exhausted, ok["id"], failed["id"])
    env.background += [lambda s=scenario: s.wait(env.api) for scenario in scenarios.values()]
    return scenarios


@pytest.mark.parametrize("name", list(FAILURES))
def test_transient_graph_failures_are_retried_then_given_up_with_the_last_error(
    env: Env, graph_failures: dict[str, Scenario], name: str
) -> None:
    failure, scenario = FAILURES[name], graph_failures[name]
    ok, failed = scenario.wait(env.api)

    # Failures for a while: the sign-out happens, once, and no error remains on it.
    assert (ok["status"], ok["attempts"], ok["error"], ok["verified"]) == ("succeeded", RECOVERS_AFTER + 1, None, True)
    assert env.sim.user(scenario.recovers)["revokeCount"] == 1

    # Failing every time: gave_up once the retry budget is spent, with the last error as Graph gave it.
    assert failed["status"] == "failed" and failed["attempts"] >= RECOVERS_AFTER + 1
    error = failed["error"]
    assert error["category"] == "gave_up"
    assert error["message"].startswith(
        f"gave up after {failed['attempts']} attempt(s) over the retry budget of 0.25 minute(s); last error: "
    )
    assert error["code"] == failure.code
    assert error.get("httpStatus") == failure.http_status
    faulted = [call for call in graph_calls(env.sim, scenario.failed_id) if call["fault"]]
    assert len(faulted) == failed["attempts"]
    if failure.http_status is not None:  # Graph's request-id is what Microsoft support asks for
        assert error["graphRequestId"] == faulted[-1]["request-id"]
    else:
        assert "graphRequestId" not in error
    assert env.sim.user(scenario.exhausted)["revokeCount"] == 0

    # Each retry waited (Retry-After, else backoff of at least 1 s): no hot loop against Graph.
    times = [datetime.fromisoformat(call["timestamp"]) for call in faulted]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= failure.min_gap, gaps
