"""Fast tests of the trust issue's rules: page links, protection by object id, durable intake,
message kinds per queue and idempotency scopes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError

from shared.domain.directory import GraphError, GraphResult, GraphUser
from shared.domain.identifiers import parse_user
from shared.domain.messages import CallbackMessage, DirectRequest, JobPageMessage, TaskMessage, decode_message, new_token
from shared.domain.page_links import is_own_page_link
from shared.domain.principal import Principal
from shared.domain.tasks import TaskRecord, TaskStatus, utcnow
from shared.usecases.intake import ANONYMOUS_SCOPE, _create, idempotency_scope
from shared.usecases.process_task import Lane, Priority, decode_for
from shared.usecases.protection import REFRESH_SECONDS, ProtectedAccounts

BASE = "https://graph.microsoft.com/v1.0"
GROUP = "0f8fad5b-d9cb-469f-a165-70867728950e"
GROUP_PAGE = f"{BASE}/groups/{GROUP}/transitiveMembers/microsoft.graph.user"
QUERY = "$select=id,userPrincipalName,userType&$top=999&$skiptoken=X1"


# --- page links -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("link", "group"),
    [
        (f"{GROUP_PAGE}?{QUERY}", GROUP),
        (f"{BASE}/groups/{GROUP}/transitiveMembers/graph.user?{QUERY}", GROUP),
        (f"{BASE}/users?{QUERY}", None),
        (f"{BASE}/users?%24select=id%2CuserPrincipalName%2CuserType&%24top=999&%24skiptoken=X1", None),
        (f"{BASE}/users?$skiptoken=X1", None),  # Graph may drop options it applied: nothing widens
    ],
)
def test_own_page_links_are_followed(link: str, group: str | None) -> None:
    assert is_own_page_link(link, BASE, group, 999)


@pytest.mark.parametrize(
    ("link", "group"),
    [
        (f"{BASE}/users?$select=id&$top=999", None),  # the reviewed attack: no skiptoken, fewer fields
        (f"{BASE}/users?$select=id&$top=999&$skiptoken=X1", None),  # fields the project does not ask for
        (f"{BASE}/users?{QUERY}&$filter=accountEnabled eq true", None),
        (f"{BASE}/users?{QUERY}&$search=%22displayName:soc%22", None),
        (f"{BASE}/users?{QUERY}", GROUP),  # a group job never lists the tenant
        (f"{BASE}/groups/{'1' * 8}-0000-0000-0000-000000000000/transitiveMembers/microsoft.graph.user?{QUERY}", GROUP),
        (f"{BASE}/groups/{GROUP}/members?{QUERY}", GROUP),
        (f"{BASE}/users?{QUERY}&$top=1", None),  # a repeated option
        (f"{BASE}/users?$select=id,userPrincipalName,userType&$top=5&$skiptoken=X1", None),
        (f"https://evil.example.com/v1.0/users?{QUERY}", None),
        (f"http://graph.microsoft.com/v1.0/users?{QUERY}", None),
        (f"{BASE}/users/../users?{QUERY}", None),
        (f"{BASE}/users?{QUERY}#frag", None),
        (f"{BASE}/users?$skiptoken=", None),
    ],
)
def test_other_links_are_refused(link: str, group: str | None) -> None:
    assert not is_own_page_link(link, BASE, group, 999)


# --- protection resolved to object ids ---------------------------------------------------------------
class Directory:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users  # upn -> id
        self.calls = 0
        self.down = False

    async def get_user(self, upn: str, request_id: str, priority: str) -> GraphResult:
        self.calls += 1
        if self.down:
            raise GraphError("down", status=503, code="ServiceUnavailable", transient=True)
        if upn not in self.users:
            raise GraphError("no such user", status=404, code="Request_ResourceNotFound")
        return GraphResult(GraphUser(self.users[upn], upn, "Member", None), "req")


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_protected_upn_protects_its_object_id_and_is_looked_up_once_an_hour() -> None:
    directory, clock = Directory({"bg@contoso.com": "aaaaaaaa-0000-0000-0000-000000000001"}), Clock()
    protected = ProtectedAccounts(
        frozenset({"bg@contoso.com", "bbbbbbbb-0000-0000-0000-000000000002"}), directory.get_user, clock
    )
    current = await protected.current()
    assert current.covers("AAAAAAAA-0000-0000-0000-000000000001") and current.covers("bbbbbbbb-0000-0000-0000-000000000002")
    assert not current.covers("cccccccc-0000-0000-0000-000000000003", None)
    await protected.current()
    assert directory.calls == 1  # cached for the process
    directory.users["bg@contoso.com"] = "dddddddd-0000-0000-0000-000000000004"  # the account was re-created
    clock.now += REFRESH_SECONDS
    assert (await protected.current()).covers("dddddddd-0000-0000-0000-000000000004")


@pytest.mark.parametrize("reason", ["unknown entry", "graph down"])
async def test_undecided_protection_is_a_transient_failure_so_nobody_is_revoked(reason: str) -> None:
    directory = Directory({} if reason == "unknown entry" else {"bg@contoso.com": "aaaaaaaa-0000-0000-0000-000000000001"})
    directory.down = reason == "graph down"
    protected = ProtectedAccounts(frozenset({"bg@contoso.com"}), directory.get_user)
    with pytest.raises(GraphError) as raised:
        await protected.current()
    assert raised.value.transient and "bg@contoso.com" not in raised.value.message  # named by position only


async def test_a_failed_refresh_keeps_the_set_resolved_before() -> None:
    directory, clock = Directory({"bg@contoso.com": "aaaaaaaa-0000-0000-0000-000000000001"}), Clock()
    protected = ProtectedAccounts(frozenset({"bg@contoso.com"}), directory.get_user, clock)
    await protected.current()
    directory.down, clock.now = True, REFRESH_SECONDS + 1
    assert (await protected.current()).covers("aaaaaaaa-0000-0000-0000-000000000001")


# --- each queue takes its own kinds ------------------------------------------------------------------
TASK = "5b1f1b36-3b4e-4a3c-8f27-1d7f6d1a2b3c"
KINDS = {
    "task": TaskMessage(TASK, parse_user("adele@contoso.com"), new_token()).to_text(),
    "page": JobPageMessage(TASK, 1, new_token()).to_text(),
    "callback": CallbackMessage(TASK, new_token()).to_text(),
    "direct": '{"user": "adele@contoso.com"}',
}
LANES = {
    "signout-requests": (
        {"task", "direct", "callback"},
        Lane("signout-requests", Priority.HIGH, (TaskMessage, DirectRequest, CallbackMessage)),
    ),
    "signout-bulk": ({"task"}, Lane("signout-bulk", Priority.LOW, (TaskMessage,))),
    "signout-bulk-pages": ({"page"}, Lane("signout-bulk-pages", Priority.LOW, (JobPageMessage,))),
}


@pytest.mark.parametrize("queue", LANES)
@pytest.mark.parametrize("kind", KINDS)
def test_each_queue_takes_only_its_own_message_kinds(queue: str, kind: str) -> None:
    accepted, lane = LANES[queue]
    decoded = decode_for(KINDS[kind].encode(), "m1", lane)
    assert (decoded is not None) == (kind in accepted)
    if decoded is not None:
        assert decoded == decode_message(KINDS[kind].encode())


def test_a_page_message_never_carries_a_link() -> None:
    decoded = decode_message(
        b'{"version":1,"jobId":"' + TASK.encode() + b'","page":2,"link":"https://graph.microsoft.com/v1.0/users"}'
    )
    assert isinstance(decoded, JobPageMessage) and "link" not in decoded.to_text()


def test_the_token_is_never_shown_by_the_api() -> None:
    now = utcnow()
    record = TaskRecord(
        id=TASK, user="adele@contoso.com", status=TaskStatus.QUEUED, created_at=now, updated_at=now, token=new_token()
    )
    assert record.token not in str(record.to_api()) and record.token not in repr(record)


# --- Idempotency-Key scopes ----------------------------------------------------------------------------
def test_idempotency_keys_are_scoped_by_caller_and_never_reach_the_alert_namespace() -> None:
    a = idempotency_scope("signouts", Principal("oid-a", None, None), "INC-43")
    b = idempotency_scope("signouts", Principal("oid-b", None, None), "INC-43")
    app = idempotency_scope("signouts", Principal(None, "app-1", None), "INC-43")
    anonymous = idempotency_scope("signouts", None, "alert:azure_monitor:x:adele@contoso.com")
    assert len({a, b, app}) == 3
    assert anonymous.startswith(f"api:signouts:{ANONYMOUS_SCOPE}:") and not anonymous.startswith("alert:")


# --- 3(a). a 202 only when the record is known to be written ---------------------------------------------
class UnsureTasks:
    """The record write fails, and so does the read-back: storage cannot say whether it landed."""

    async def create(self, record: TaskRecord, user: Any = None) -> TaskRecord:
        raise ServiceRequestError("connection reset")

    async def get(self, task_id: str) -> TaskRecord | None:
        raise ServiceRequestError("connection reset")


class Recorder:
    """Any other port: records the calls made to it."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    def __getattr__(self, name: str) -> Any:
        async def step(*args: Any, **kwargs: Any) -> str:
            self.steps.append(name)
            return "receipt"

        return step


def test_an_accept_whose_record_write_cannot_be_confirmed_is_refused_not_202() -> None:
    now = utcnow()
    record = TaskRecord(
        id=TASK, user="adele@contoso.com", status=TaskStatus.QUEUED, created_at=now, updated_at=now, token=new_token()
    )
    rt = SimpleNamespace(
        tasks=UnsureTasks(),
        index=Recorder(),
        pending=Recorder(),
        queue=Recorder(),
        settings=SimpleNamespace(signout_queue="signout-requests"),
    )
    with pytest.raises(ServiceRequestError):
        asyncio.run(_create(rt, parse_user("adele@contoso.com"), record))  # type: ignore[arg-type]
    assert "release" not in rt.queue.steps  # the hidden message surfaces only after the accept window
    assert "withdraw" not in rt.queue.steps  # it may be the record's: if it landed, the task runs


def test_retry_budget_defaults_to_an_hour() -> None:
    from shared.settings import load_settings

    assert load_settings({}).retry_budget == timedelta(minutes=60)


@pytest.mark.parametrize("encode", [False, True])
def test_a_dropped_message_is_logged_without_its_token(caplog: pytest.LogCaptureFixture, encode: bool) -> None:
    import base64
    import logging

    token = new_token()
    text = f'{{"version":2,"taskId":"{TASK}","user":"adele@contoso.com","token":"{token}"}}'.encode()
    caplog.set_level(logging.ERROR, logger="signout.worker")
    assert decode_for(base64.b64encode(text) if encode else text, "m1", LANES["signout-requests"][1]) is None
    assert TASK in caplog.text and token not in caplog.text and "(redacted)" in caplog.text


# --- docs/security.md open findings A-C (fixed in code before this round; pinned here) -----------
def test_finding_a_the_api_refuses_c1_controls_in_correlation_id() -> None:
    from shared.domain.problems import ProblemError
    from shared.domain.requests import parse_signout_request

    for char in ("\x85", "\x9b", "\x80"):
        with pytest.raises(ProblemError) as refused:
            parse_signout_request({"user": "a@contoso.com", "correlationId": f"INC-1{char}forged"})
        assert refused.value.status == 400 and refused.value.errors[0]["pointer"] == "/correlationId"


def test_finding_c_an_unknown_field_name_cannot_forge_a_log_line() -> None:
    from shared.domain.messages import InvalidMessageError

    raw = b'{"user": "a@contoso.com", "x\\n2026-11-26 15:00:00,000 INFO signout.task: forged": 1}'
    with pytest.raises(InvalidMessageError) as refused:
        decode_message(raw)
    assert "\n" not in refused.value.reason and len(refused.value.reason.splitlines()) == 1
