"""Request parsing never trusts the caller: any body, content type or query string is either a
well-formed request or an RFC 9457 ProblemError with a 4xx status; nothing else escapes.

(Alert payloads have their own property tests in tests/unit/test_alerts_properties.py.)
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from shared.adapters.tables.keys import time_key
from shared.domain.callback_urls import check_callback_url
from shared.domain.identifiers import parse_user
from shared.domain.problems import ProblemError
from shared.domain.requests import (
    MAX_BODY_BYTES,
    MAX_CORRELATION_ID,
    MAX_DESCRIPTION,
    MAX_USERS,
    SignoutRequest,
    load_json_object,
    parse_signout_request,
    require_json,
)
from shared.domain.tasks import TaskStatus
from shared.usecases.queries import KNOWN_PARAMS, MAX_TOP, LogQuery, parse_log_query
from tests.fuzz.strategies import encoded, fuzz_settings, identifier_text, json_values, nested

HOSTS = ("*.logic.azure.com", "127.0.0.1:8443")
ROW_KEY = re.compile(r"\d{13}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

urls = st.one_of(
    st.sampled_from(
        [
            "https://prod-01.westus.logic.azure.com/workflows/1/triggers/manual/paths/invoke?sig=x",
            "https://127.0.0.1:8443/cb",
            "http://prod-01.westus.logic.azure.com/x",
            "https://evil.com/.logic.azure.com",
            "https://user:pw@prod-01.westus.logic.azure.com/x",
            "https://prod-01.westus.logic.azure.com.evil.com/x",
            "https://169.254.169.254/metadata/identity",
            "https://[::1]:8443/x",
            "https://127.0.0.1:99999/x",
            "https:///x",
            "https://evil.com\\@prod-01.westus.logic.azure.com/",
            "file:///etc/passwd",
            "",
        ]
    ),
    st.text(max_size=60).map(lambda tail: "https://prod-01.westus.logic.azure.com/" + tail),
    st.text(max_size=60).map(lambda text: "https://" + text),
)
texts = st.text(max_size=40) | st.sampled_from(
    [
        "x" * MAX_DESCRIPTION,
        "x" * (MAX_DESCRIPTION + 1),
        "x" * MAX_CORRELATION_ID,
        "x" * (MAX_CORRELATION_ID + 1),
        "a\r\nb",
        "a\tb",
        "a\rb",
        "a\x00b",
        "a\x1b[31mb",
        "a\x7fb",
        "\ud800",
    ]
)
users_lists = st.lists(identifier_text, max_size=6) | st.lists(identifier_text | json_values, max_size=4)
signout_fields = st.fixed_dictionaries(
    {},
    optional={
        "users": users_lists | json_values,
        "user": identifier_text | json_values,
        "description": texts | json_values,
        "correlationId": texts | json_values,
        "callbackUrl": urls | json_values,
    },
)
signout_bodies = signout_fields | st.dictionaries(st.text(max_size=12), json_values, max_size=5)
raw_bodies = st.one_of(st.binary(max_size=200), signout_bodies.map(encoded), json_values.map(encoded))
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        " application/json ;x=y",
        None,
        "",
        "text/plain",
        "application/jsonx",
        "application/problem+json",
        "multipart/form-data",
    ]
) | st.text(max_size=30)


def signout(content_type: str | None, body: bytes) -> SignoutRequest | ProblemError:
    """What POST /api/signouts does with a body before anything is stored or queued."""
    try:
        require_json(content_type)
        return parse_signout_request(load_json_object(body), HOSTS)
    except ProblemError as problem:
        return problem


def assert_well_formed_problem(problem: ProblemError, statuses: set[int]) -> None:
    assert problem.status in statuses, problem
    body = json.loads(json.dumps(problem.body("/api/signouts")))  # serialisable as problem+json
    assert body["status"] == problem.status and body["title"] and body["type"] == "about:blank"
    for error in body.get("errors", []):
        assert set(error) == {"pointer", "detail"}
        assert error["pointer"] == "" or error["pointer"].startswith("/")
        assert isinstance(error["detail"], str) and error["detail"]


def assert_well_formed_request(request: SignoutRequest) -> None:
    assert 1 <= len(request.users) <= MAX_USERS
    assert all(parse_user(user.value) == user for user in request.users)
    assert len({user.key for user in request.users}) == len(request.users)  # duplicates folded into one task
    assert isinstance(request.description, str) and len(request.description) <= MAX_DESCRIPTION
    assert request.correlation_id is None or len(request.correlation_id) <= MAX_CORRELATION_ID
    # No C0 control or DEL in either; TAB, CR and LF only in the (multi-line) description.
    assert not any((ord(ch) < 32 or ord(ch) == 127) and ch not in "\t\n\r" for ch in request.description)
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in request.correlation_id or "")
    if request.callback_url is not None:
        assert check_callback_url(request.callback_url, HOSTS) == request.callback_url
        assert request.callback_url.startswith("https://")
    assert re.fullmatch(r"[0-9a-f]{64}", request.fingerprint())


@fuzz_settings(250)
@given(content_type=content_types, body=raw_bodies)
@example(content_type="application/json", body=b"{}")
@example(content_type="application/json", body=b'{"users": ["adele.vance@contoso.com"]}')
@example(content_type="application/json", body=b"[" * 100_000 + b"]" * 100_000)
@example(content_type="application/json", body=nested(100_000).encode()[: MAX_BODY_BYTES - 1])
@example(content_type="application/json", body=nested(5_000).encode())
@example(content_type="application/json", body=b'{"description": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}')
@example(content_type="application/json", body=b'{"users": ["\\ud800@contoso.com"], "description": "\\udfff"}')
@example(content_type="application/json", body=b"\xef\xbb\xbf{}")  # a UTF-8 byte-order mark
@example(content_type="application/json", body=b'{"users": NaN, "user": Infinity}')
@example(content_type="application/json", body=encoded({"users": [f"u{i}@contoso.com" for i in range(MAX_USERS + 1)]}))
@example(content_type="application/json", body=encoded({"users": ["a@contoso.com"] * MAX_USERS + ["A@contoso.com"]}))
@example(content_type="text/plain", body=b'{"users": ["adele.vance@contoso.com"]}')
@example(content_type="application/json", body=b'{"users": ' + b"1" * 5000 + b"}")  # over 4,300 digits: 400, not a crash
@example(content_type="application/json", body=b'{"users": ["a@contoso.com"], "x": -' + b"9" * 4301 + b"}")
@example(content_type="application/json", body=b'{"users": ["a@contoso.com"], "correlationId": "INC-1\\r\\nforged"}')
def test_any_body_is_a_request_or_a_4xx_problem(content_type: str | None, body: bytes) -> None:
    outcome = signout(content_type, body)
    if isinstance(outcome, ProblemError):
        assert_well_formed_problem(outcome, {400, 413, 415})
        if outcome.status == 413:
            assert len(body) > MAX_BODY_BYTES or b"users" in body
    else:
        assert isinstance(outcome, SignoutRequest)
        assert_well_formed_request(outcome)


def resolves(data: dict[str, Any], pointer: str) -> bool:
    """Whether the RFC 6901 JSON Pointer names a part of `data` (`~1` is '/', `~0` is '~')."""
    node: Any = data
    for token in (token.replace("~1", "/").replace("~0", "~") for token in pointer.split("/")[1:]):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


# Member names with '/' and '~' are pointed at as RFC 6901 requires ("a/b" is "/a~1b", "~" is "/~0").
member_names = st.text(max_size=10) | st.sampled_from(["a/b", "~", "~1", "~0", "/", "", "a~1b/c", "users/0"])


@fuzz_settings(200)
@given(data=signout_fields | st.dictionaries(member_names, json_values, max_size=5))
@example(data={"user": "a@contoso.com", "users": ["b@contoso.com"]})
@example(data={"user": "a@contoso.com", "a/b": 1, "~1": 2, "users/0": 3})
@example(data={"users": ["ok@contoso.com", "../me", 3]})
def test_every_error_pointer_names_the_offending_part_of_the_body(data: dict[str, Any]) -> None:
    try:
        parse_signout_request(json.loads(encoded(data)), HOSTS)
    except ProblemError as problem:
        assert_well_formed_problem(problem, {400, 413})
        for error in problem.errors:
            missing_users = error["pointer"] == "/users" and "users" not in data and "user" not in data
            assert resolves(data, error["pointer"]) or missing_users, (error, data)


# --- GET /api/signouts query ----------------------------------------------------------------------
def token_for(row_key: str) -> str:
    return base64.urlsafe_b64encode(row_key.encode()).decode().rstrip("=")


moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))  # noqa: DTZ001 - hypothesis takes naive bounds
offsets = st.integers(-23 * 60, 23 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
dates = st.one_of(
    moments.map(lambda moment: moment.isoformat()),
    st.builds(lambda moment, tz: moment.replace(tzinfo=tz).isoformat(), moments, offsets),
    moments.map(lambda moment: moment.isoformat() + "Z"),
    st.sampled_from(
        ["2026-11-26", "2026-11-26T14:41:22.123Z", "2026-13-01T00:00:00Z", "yesterday", "0", "-1", "2026-11-26T14:41:22+25:00"]
    ),
)
row_keys = st.builds(lambda n, u: f"{n:013d}-{u}", st.integers(0, 10**13 - 1), st.uuids())
param_values = st.one_of(
    st.text(max_size=40),
    identifier_text,
    st.sampled_from(
        [s.value for s in TaskStatus] + ["' or 1 eq 1", "$filter=PartitionKey ne ''", "100", "101", "0", " 7 ", "1e2", "١٢"]
    ),
    st.integers(-5, 200).map(str),
    dates,
    row_keys.map(token_for),
    row_keys.map(lambda key: token_for(key) + "' or RowKey gt '"),
    st.text(max_size=40).map(lambda text: token_for(text)),
)
queries = st.dictionaries(
    st.sampled_from([*sorted(KNOWN_PARAMS), "$filter", "$select", "User", "top ", "a/b", "~0"]) | member_names,
    param_values,
    max_size=7,
)
# What the remediation log's 13-digit time keys can hold (inverted epoch milliseconds).
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2286, 1, 1, tzinfo=UTC)


@fuzz_settings(250)
@given(params=queries)
@example(params={"user": "' or 1 eq 1", "status": "succeeded' or '1' eq '1", "continuationToken": "' or RowKey gt ''"})
@example(params={"since": "0001-01-01T00:00:00+01:00", "until": "9999-12-31T23:59:59-01:00"})
@example(params={"until": "0001-01-01T00:00:00+01:00", "top": "1"})
@example(params={"since": "1969-12-31T23:59:59.999Z"})
@example(params={"since": "1970-01-01T00:00:00Z", "until": "2285-12-31T23:59:59.999Z"})
@example(params={"a/b": "1", "~": "2"})
@example(params={"top": "9" * 5000})
@example(params={"continuationToken": token_for("x" * 100_000)})
def test_any_log_query_is_a_query_or_a_400_problem(params: dict[str, str]) -> None:
    try:
        query = parse_log_query(params)
    except ProblemError as problem:
        assert_well_formed_problem(problem, {400})
        assert problem.errors and all(resolves(params, error["pointer"]) for error in problem.errors)
        return
    assert isinstance(query, LogQuery)
    assert not set(params) - KNOWN_PARAMS
    assert query.user is None or parse_user(query.user.value) == query.user
    assert query.status is None or isinstance(query.status, TaskStatus)
    assert 1 <= query.top <= MAX_TOP
    for moment in (query.since, query.until):
        assert moment is None or (moment.tzinfo is not None and EARLIEST <= moment < LATEST)
        assert moment is None or len(time_key(moment)) == 13
    assert parse_log_query(query.as_params()) == replace(query, after=None)  # what a nextLink carries reads back
    assert query.after is None or ROW_KEY.fullmatch(query.after)  # only ever a row key this API issued
