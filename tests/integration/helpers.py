"""Helpers for integration tests: the simulator's control API, polling, requests."""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

import httpx
import trustme

T = TypeVar("T")

# Limits, not targets: a wait returns as soon as its condition holds, so these only decide how long
# a broken build takes to fail, and must hold on a busy shared machine. Timing targets live in bench/.
PIPELINE_TIMEOUT = 180.0  # anything that waits on queues, retries, leases or a dev host (re)start
REQUEST_TIMEOUT = 120.0  # one HTTP request to a loopback service


def wait_until(
    condition: Callable[[], T], what: str | Callable[[], str], timeout: float = PIPELINE_TIMEOUT, interval: float = 0.1
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    The condition is evaluated once more after the deadline, so a machine that stalled the test
    itself (not the work) cannot fail a wait whose condition holds by then.
    """
    deadline = time.monotonic() + timeout
    while True:
        expired = time.monotonic() > deadline
        if result := condition():
            return result
        if expired:
            raise AssertionError(f"{what() if callable(what) else what}: not within {timeout:g}s")
        time.sleep(interval)


class Sim:
    """The Graph simulator's control API."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT)

    def user(self, user: str) -> dict[str, Any]:
        response = self.http.get(f"/_sim/users/{user}")
        response.raise_for_status()
        return response.json()

    def fault(self, **rule: Any) -> None:
        self.http.post("/_sim/faults", json=[rule]).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        data = self.http.get("/_sim/requests").json()
        return data["requests"] if isinstance(data, dict) else data

    def add_users(self, *users: dict[str, Any]) -> None:
        self.http.post("/_sim/users", json=list(users)).raise_for_status()


def wait_for_terminal(
    api: httpx.Client, url: str, timeout: float = PIPELINE_TIMEOUT, appears_later: bool = False
) -> dict[str, Any]:
    """Poll a task's or a bulk job's status URL the way a Logic Apps HTTP action does: until the
    first non-202, which must be 200 (the finished record). Every 202 must carry Retry-After; this
    polls sooner than it says so that tests wait no longer than the work takes.

    `appears_later`: the task is created by the worker (direct queue messages), so 404 means "not yet".
    """
    last: list[httpx.Response] = []

    def finished() -> dict[str, Any] | None:
        response = api.get(url)
        last[:] = [response]
        if appears_later and response.status_code == 404:
            return None
        if response.status_code == 202:
            assert int(response.headers["Retry-After"]) >= 1, response.headers
            return None
        assert response.status_code == 200, response.text
        return response.json()

    return wait_until(finished, lambda: f"{url} finished (last answer: {last[0].status_code} {last[0].text})", timeout, 0.2)


def sign_out(api: httpx.Client, *users: str, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    response = api.post("/api/signouts", json={"users": list(users), **extra}, headers=headers)
    assert response.status_code == 202, response.text
    return response


def new_user(sim: Sim, name: str, **props: Any) -> dict[str, Any]:
    """A fresh directory user per test, so tests never share revocation counts."""
    user = {
        "id": str(uuid.uuid4()),
        "userPrincipalName": f"{name}-{uuid.uuid4().hex[:8]}@contoso.com",
        "userType": "Member",
        **props,
    }
    sim.add_users(user)
    return user


class CallbackReceiver:
    """Records POSTs per path; answers each path's scripted statuses (default 200)."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.script: dict[str, list[int]] = {}
        authority = trustme.CA()
        cert = authority.issue_cert("127.0.0.1")
        self._ca = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)  # noqa: SIM115 - its path outlives this call
        authority.cert_pem.write_to_path(self._ca.name)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.setdefault(self.path, []).append(body)
                statuses = receiver.script.get(self.path) or [200]
                self.send_response(statuses.pop(0) if len(statuses) > 1 else statuses[0])
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.ca_file = self._ca.name

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def stack_settings(self, *other_hosts: str) -> dict[str, str]:
        """The settings under which a stack may call this receiver: its host allowed, its CA trusted."""
        return {"CALLBACK_ALLOWED_HOSTS": ",".join([*other_hosts, f"127.0.0.1:{self.port}"]), "SSL_CERT_FILE": self.ca_file}

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def start_own_devhost(stack: Any, started: bool = False, timeout: float = PIPELINE_TIMEOUT) -> None:
    """(Re)start `stack`'s dev host and make sure the process serving its port is this one.

    LocalStack picks the port when the stack is built and only waits for *something* to listen
    there; on a busy machine another process can take the port meanwhile, and a dev host that could
    not bind then looks started. Until it prints that it is ready (or dies) the port proves nothing;
    if it died, move to a fresh port. `started`: the dev host was just started by `stack.start()`.
    """
    from tools.local_stack import free_port  # tools/ is importable wherever these helpers are

    for attempt in range(3):
        banner = f"devhost ready on {stack.base_url}"
        seen = 0 if started and attempt == 0 else stack.devhost.output().count(banner) if stack.devhost else 0
        if not (started and attempt == 0):
            stack.start_devhost()
        process = stack.devhost.process
        deadline = time.monotonic() + timeout
        while process.poll() is None and stack.devhost.output().count(banner) <= seen and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None and stack.devhost.output().count(banner) > seen:
            return
        stack.devhost.kill()
        stack.port = free_port()
    raise RuntimeError(f"the dev host did not start:\n{stack.devhost.output()[-3000:]}")


async def write_task_record(stack: Any, record: Any, claim_for: Any = None) -> None:
    """A task record written as intake writes it (with the user's pending slot when `claim_for`
    names the user), straight into the stack's table, without a queue message."""
    from shared.adapters.storage import StorageConnection, table_service
    from shared.adapters.tables.pending import PendingSlots
    from shared.adapters.tables.table import Table
    from shared.adapters.tables.tasks import TaskTable

    table = Table(table_service(StorageConnection(connection_string=stack.azurite.connection_string)), "signouttasks")
    try:
        if claim_for is not None:
            await PendingSlots(table).claim(claim_for, record, None)
        await TaskTable(table).create(record)
    finally:
        await table.close()
