"""Regression tests for the defects the security review found, one section per defect, numbered as in
docs/security.md ("Defects found by this review, and their fixes"). They fail on the code before the
fixes, except the few that pin what must keep working (printable log values, dates inside the range).

Defects 4 (Idempotency-Key on bulk requests) and 6 (a job whose group Graph cannot read) need the
running stack: tests/integration/test_bulk.py proves them; only the parts that need no storage are
repeated here.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
import pytest

from shared.adapters.tables.keys import time_key
from shared.domain.messages import (
    CallbackMessage,
    DirectRequest,
    InvalidMessageError,
    JobPageMessage,
    TaskMessage,
    decode_message,
)
from shared.domain.problems import PROBLEM_CONTENT_TYPE, ProblemError, pointer_to
from shared.domain.requests import load_json_object, parse_bulk_request, parse_signout_request
from shared.domain.tasks import TaskRecord, TaskStatus, iso, utcnow
from shared.usecases import audit_log as logs
from shared.usecases.process_task import Lane, Priority, process_message, process_poison
from shared.usecases.queries import parse_log_query
from tests.app_functions import registered_functions

TASK = "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10"
GROUP = "5d1f0c3e-2b4a-4c6d-8e9f-0a1b2c3d4e5f"
HUGE_INTEGER = b"1" * 5000  # CPython refuses to turn more than 4,300 digits into an int (ValueError)
# C0 controls and DEL: what the API refuses in correlationId (and, but for TAB/CR/LF, in description).
C0_AND_DEL = [chr(code) for code in range(32)] + ["\x7f"]
LINE_BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]  # str.splitlines()


@pytest.fixture(autouse=True)
def no_easy_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    monkeypatch.delenv("REQUIRE_APP_ROLES", raising=False)


async def call(name: str, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> func.HttpResponse:
    """One of the app's HTTP functions, called the way the Functions host calls it."""
    handler = registered_functions()[name].get_user_function()
    params = dict(parse_qsl(urlsplit(url).query))  # as the host parses the query string
    request = func.HttpRequest(
        method, url, headers={"content-type": "application/json", **(headers or {})}, params=params, body=body
    )
    return await handler(request)


def problem_of(response: func.HttpResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_body()[:300]
    assert response.mimetype == PROBLEM_CONTENT_TYPE
    body = json.loads(response.get_body())
    assert body["status"] == status
    return body


def raised(call_: Any) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        call_()
    return caught.value


def invalid(raw: bytes) -> InvalidMessageError:
    with pytest.raises(InvalidMessageError) as caught:
        decode_message(raw)
    assert caught.value.reason
    return caught.value


# --- 1. a JSON integer of more than 4,300 digits (and bad UTF-8) is a 400, not a 500 ------------
MALFORMED_BODIES = {
    "5,000-digit integer": b'{"users": ' + HUGE_INTEGER + b"}",
    "5,000-digit negative integer in an unknown field": b'{"users": ["a@contoso.com"], "x": -' + HUGE_INTEGER + b"}",
    "5,000-digit integer in a list": b'{"users": [' + HUGE_INTEGER + b"]}",
    "invalid UTF-8": b'{"users": ["\xff@contoso.com"]}',
    "UTF-16 byte-order mark": b"\xff\xfe{}",
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_defect1_unparseable_json_is_a_400_malformed_json_problem(body: bytes) -> None:
    problem = raised(lambda: load_json_object(body))
    assert (problem.status, problem.title) == (400, "Malformed JSON")
    assert len(problem.detail) < 300  # the parser's message is cut short, never echoing the body


@pytest.mark.parametrize("path", ["signouts", "alerts"])
async def test_defect1_both_post_endpoints_answer_a_huge_integer_with_400(path: str) -> None:
    name = {"signouts": "create_signouts", "alerts": "ingest_alert"}[path]
    for body in (b'{"users": ' + HUGE_INTEGER + b"}", b'{"data": {"essentials": {"alertId": ' + HUGE_INTEGER + b"}}}"):
        problem = problem_of(await call(name, "POST", f"http://localhost/api/{path}", body), 400)
        assert problem["title"] == "Malformed JSON"


# --- 2. no value can forge a log line -----------------------------------------------------------
@pytest.mark.parametrize("char", C0_AND_DEL, ids=[f"U+{ord(char):04X}" for char in C0_AND_DEL])
def test_defect2_api_correlation_id_refuses_every_c0_control_and_del_crlf_tab_included(char: str) -> None:
    value = f"INC-1{char}2026-11-26 15:00:00,000 INFO signout.task: forged"
    single = raised(lambda: parse_signout_request({"user": "a@contoso.com", "correlationId": value}))
    bulk = raised(lambda: parse_bulk_request({"group": GROUP, "correlationId": value}, allow_all_users=False))
    for problem in (single, bulk):
        assert problem.status == 400 and [error["pointer"] for error in problem.errors] == ["/correlationId"]


def test_defect2_description_still_allows_tab_cr_and_lf_but_no_other_control() -> None:
    text = "Sentinel incident 42\r\n\tcompromised mailbox"
    assert parse_signout_request({"user": "a@contoso.com", "description": text}).description == text
    assert parse_bulk_request({"group": GROUP, "description": text}, allow_all_users=False).description == text
    for char in set(C0_AND_DEL) - set("\t\r\n"):
        problem = raised(lambda: parse_signout_request({"user": "a@contoso.com", "description": f"a{char}b"}))
        assert [error["pointer"] for error in problem.errors] == ["/description"], repr(char)


CONTROLS = [chr(code) for code in range(sys.maxunicode + 1) if unicodedata.category(chr(code)) == "Cc"]


def test_defect2_direct_queue_message_correlation_id_refuses_every_control_character() -> None:
    for char in [*CONTROLS, "\u2028", "\u2029"]:
        raw = json.dumps({"user": "a@contoso.com", "correlationId": f"INC-1{char}forged"}).encode()
        assert "correlationId" in invalid(raw).reason, repr(char)
    described = decode_message(
        json.dumps({"user": "a@contoso.com", "description": "a\r\n\tb", "correlationId": "INC-1"}).encode()
    )
    assert isinstance(described, DirectRequest) and (described.description, described.correlation_id) == ("a\r\n\tb", "INC-1")


def record(user: str = "adele@contoso.com", correlation_id: str | None = "INC-1") -> TaskRecord:
    now = utcnow()
    return TaskRecord(
        id=TASK, user=user, status=TaskStatus.SUCCEEDED, created_at=now, updated_at=now, correlation_id=correlation_id
    )


FORGED = "{}2026-11-26 15:00:00,000 INFO signout.task: task taskId={} status=succeeded user=breakglass@contoso.com"


@pytest.mark.parametrize("field", ["correlationId", "user"])
@pytest.mark.parametrize("brk", [*LINE_BREAKS, "\x1b[2J", "\x00"], ids=lambda brk: "+".join(f"U+{ord(ch):04X}" for ch in brk))
def test_defect2_a_state_change_line_stays_one_line_whatever_the_record_holds(
    caplog: pytest.LogCaptureFixture, field: str, brk: str
) -> None:
    forged = FORGED.format("INC-1" + brk, TASK)
    task = record(correlation_id=forged) if field == "correlationId" else record(user=forged)
    caplog.set_level(logging.INFO, logger="signout.task")
    logs.state_change(task, "a note")
    [entry] = [entry for entry in caplog.records if entry.name == "signout.task"]
    for line in (entry.getMessage(), logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(entry)):
        assert len(line.splitlines()) == 1, line
        assert brk not in line and "\x1b" not in line and "\x00" not in line
    assert f"{field}={forged!r}" in entry.getMessage()  # escaped, not lost
    assert entry.custom_dimensions[field] == forged  # type: ignore[attr-defined]  # the structured value is exact


def test_defect2_printable_values_are_logged_as_they_are(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="signout.task")
    logs.state_change(record(user="zoë@contoso.com", correlation_id="INC 1 (Sentinel)"))
    assert f"task taskId={TASK} status=succeeded user=zoë@contoso.com correlationId=INC 1 (Sentinel)" in caplog.text


# --- 3. queue messages that crashed the decoder are InvalidMessageError, dropped once ---------------
CRASHING_MESSAGES = {
    "non-ASCII plain text": "Zoë@contoso.com".encode(),
    "non-ASCII text padded": "  é  ".encode(),
    "non-ASCII text starting like base64": "e30=é".encode(),
    "5,000-digit integer": b'{"user": "a@contoso.com", "x": ' + HUGE_INTEGER + b"}",
    "5,000-digit integer in a task message": b'{"version": 1, "taskId": "%s", "user": "a@contoso.com", "page": %s}'
    % (TASK.encode(), HUGE_INTEGER),
    "5,000-digit integer, base64": base64.b64encode(b'{"user": "a@contoso.com", "version": ' + HUGE_INTEGER + b"}"),
}


@pytest.mark.parametrize("raw", CRASHING_MESSAGES.values(), ids=CRASHING_MESSAGES.keys())
def test_defect3_messages_that_crashed_the_decoder_are_invalid_messages(raw: bytes) -> None:
    assert invalid(raw).task_id is None  # unreadable, so it names no task


@pytest.mark.parametrize("raw", CRASHING_MESSAGES.values(), ids=CRASHING_MESSAGES.keys())
async def test_defect3_the_worker_and_the_poison_handler_drop_them_without_raising(
    caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    """An exception escaping to the Functions host means retries and the poison queue; these return.
    No runtime is needed: a message that names no task touches no storage."""
    caplog.set_level(logging.ERROR, logger="signout.worker")
    lane = Lane("signout-requests", Priority.HIGH, (TaskMessage, DirectRequest, CallbackMessage))
    await process_message(None, raw, "message-1", lane)  # type: ignore[arg-type]
    await process_poison(None, raw, "message-1", lane)  # type: ignore[arg-type]
    assert caplog.text.count("dropped invalid queue message message-1 on signout-requests") == 2


# --- 4. (extra) a bulk request's Idempotency-Key is validated like any other ---------------------
async def test_defect4_a_malformed_idempotency_key_on_a_bulk_request_is_400() -> None:
    body = json.dumps({"group": GROUP}).encode()
    for key in ["k" * 201, "   ", "key\x85x", "a\x00b"]:
        problem = problem_of(
            await call("create_signouts", "POST", "http://localhost/api/signouts", body, {"Idempotency-Key": key}), 400
        )
        assert problem["title"] == "Invalid Idempotency-Key"


def test_defect4_a_bulk_request_fingerprint_binds_its_key_to_the_body() -> None:
    def fingerprint(**data: Any) -> str:
        return parse_bulk_request(data, allow_all_users=True).fingerprint()

    assert fingerprint(group=GROUP) == fingerprint(group=GROUP, description="")
    others = {
        fingerprint(group=GROUP, description="other"),
        fingerprint(group=GROUP, correlationId="c"),
        fingerprint(group=str(uuid.UUID(int=1))),
        fingerprint(allUsers=True, confirm="sign out all users"),
    }
    assert len(others) == 4 and fingerprint(group=GROUP) not in others


# --- 5. the remediation log's time window must fit its 13-digit time keys ------------------------
OUT_OF_RANGE = [
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:00:00+00:01",  # 1969-12-31T23:59Z
    "1969-01-01",
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC: OverflowError when it was turned back into text
    "0001-01-01T00:00:00Z",
    "2286-01-01T00:00:00Z",
    "2285-12-31T23:00:00-01:00",  # 2286-01-01T00:00Z
    "9999-12-31T23:59:59-01:00",
]
IN_RANGE = ["1970-01-01T00:00:00Z", "1970-01-01T01:00:00+01:00", "2026-11-26", "2285-12-31T23:59:59.999Z"]


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("moment", OUT_OF_RANGE)
def test_defect5_since_and_until_outside_1970_to_2285_are_400(name: str, moment: str) -> None:
    problem = raised(lambda: parse_log_query({name: moment, "top": "1"}))
    assert problem.status == 400 and [error["pointer"] for error in problem.errors] == [f"/{name}"]
    assert "1970" in problem.errors[0]["detail"]


@pytest.mark.parametrize("moment", IN_RANGE)
def test_defect5_edges_of_the_range_are_accepted_and_keep_13_digit_time_keys(moment: str) -> None:
    query = parse_log_query({"since": moment, "until": moment, "top": "1"})
    for parsed in (query.since, query.until):
        assert parsed is not None and len(time_key(parsed)) == 13
    assert parse_log_query(query.as_params()) == query  # the nextLink's query reads back the same


async def test_defect5_a_year_1_until_with_top_1_is_400_not_500() -> None:
    response = await call("list_signouts", "GET", "http://localhost/api/signouts?until=0001-01-01T00:00:00%2B01:00&top=1")
    assert [error["pointer"] for error in problem_of(response, 400)["errors"]] == ["/until"]


def test_defect5_the_latest_accepted_moment_is_before_the_time_keys_run_out() -> None:
    latest = datetime(2285, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert int(time_key(latest)) > 0 and iso(latest) == "2285-12-31T23:59:59.999Z"


# --- 7. problem pointers are RFC 6901 JSON Pointers --------------------------------------------
def resolve(document: Any, pointer: str) -> Any:
    """RFC 6901 evaluation (a KeyError/IndexError when the pointer names nothing)."""
    assert pointer == "" or pointer.startswith("/")
    node = document
    for escaped in pointer.split("/")[1:]:
        token = escaped.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


ODD_NAMES = ["a/b", "m~n", "~1", "~0", "/", "~", "", "a~1b/c"]


def test_defect7_pointer_to_escapes_tilde_then_slash() -> None:
    assert [pointer_to(name) for name in ODD_NAMES] == ["/a~1b", "/m~0n", "/~01", "/~00", "/~1", "/~0", "/", "/a~01b~1c"]
    for name in ODD_NAMES:
        assert resolve({name: "here"}, pointer_to(name)) == "here"


def test_defect7_unknown_body_fields_are_pointed_at_exactly() -> None:
    body = {"user": "a@contoso.com", **{name: index for index, name in enumerate(ODD_NAMES)}}
    problem = raised(lambda: parse_signout_request(body))
    assert sorted(resolve(body, error["pointer"]) for error in problem.errors) == sorted(range(len(ODD_NAMES)))
    bulk_body = {"group": GROUP, **{name: index for index, name in enumerate(ODD_NAMES)}}
    problem = raised(lambda: parse_bulk_request(bulk_body, allow_all_users=False))
    assert sorted(resolve(bulk_body, error["pointer"]) for error in problem.errors) == sorted(range(len(ODD_NAMES)))


def test_defect7_unknown_query_parameters_are_pointed_at_exactly() -> None:
    params = {name: f"value-{index}" for index, name in enumerate(ODD_NAMES)}
    problem = raised(lambda: parse_log_query(params))
    assert sorted(resolve(params, error["pointer"]) for error in problem.errors) == sorted(params.values())


# --- 8. a message's version is the integer 1 ---------------------------------------------------
MESSAGES: dict[str, tuple[dict[str, Any], type]] = {
    "direct request": ({"user": "a@contoso.com"}, DirectRequest),
    "task message": ({"taskId": TASK, "user": "a@contoso.com"}, TaskMessage),
    "job page message": ({"jobId": TASK, "page": 1}, JobPageMessage),
}


@pytest.mark.parametrize("kind", MESSAGES)
@pytest.mark.parametrize("version", ["true", "1.0", "1e0", '"1"', "[1]", "2", "0", "null"])
def test_defect8_a_version_other_than_the_integer_1_is_refused(kind: str, version: str) -> None:
    fields, _ = MESSAGES[kind]
    raw = json.dumps(fields)[:-1].encode() + b', "version": ' + version.encode() + b"}"
    refused = invalid(raw)
    assert refused.task_id == (TASK if kind == "task message" else None)  # a task message fails its task


@pytest.mark.parametrize("kind", MESSAGES)
def test_defect8_version_1_is_accepted_and_optional_only_for_direct_requests(kind: str) -> None:
    fields, expected = MESSAGES[kind]
    assert isinstance(decode_message(json.dumps({"version": 1, **fields}).encode()), expected)
    if expected is DirectRequest:
        assert isinstance(decode_message(json.dumps(fields).encode()), DirectRequest)
    else:
        invalid(json.dumps(fields).encode())
