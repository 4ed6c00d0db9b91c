"""The running app under hostile input, on one private local stack per test process (the `live`
module-scoped fixture; tests/fuzz/live.py):

1. what it must refuse: injection attempts in every parameter (OData, Graph paths, CR/LF and other
   control characters), a forged client principal, huge and deeply nested bodies. Each is a 4xx
   problem+json that reaches Graph not at all. These run first, while nothing calls Graph, so "no
   Graph call" is checked exactly, as an unchanged simulator log;
2. a live property: what the API accepts as a user is exactly what parse_user accepts;
3. schemathesis over every operation of the served OpenAPI document.

When the module is done with its stack, every Graph call the stack made must be one the service is
meant to make (live.GRAPH_CALLS), the protected account must never have been revoked, and the dev
host must have logged no unexpected exception.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import example, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, NegativeDataRejectionConfig
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.domain.identifiers import InvalidIdentifierError, parse_user
from tests.fuzz.live import (
    FUNCTION_KEY,
    PROBLEM,
    GraphLog,
    assert_graph_saw_only_allowed_calls,
    assert_problem,
    running_stack,
)
from tests.fuzz.strategies import fuzz_settings, guest_upn, guid, identifier_text, mutated, valid_upn
from tests.integration.helpers import REQUEST_TIMEOUT, wait_for_terminal
from tests.openapi_nulls import without_nulls
from tools.local_stack import LocalStack

DOCUMENT = Path(__file__).parents[2] / "shared" / "openapi.json"
RSS_LIMIT_BYTES = 500 * 1024 * 1024
MAX_EXAMPLES = 25  # per operation and generation mode: reaches every parameter, a few seconds on 2 cores


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LocalStack, httpx.Client, GraphLog]]:
    """The stack, audited when the module is done with it (on each xdist worker that used it)."""
    with running_stack() as running:
        yield running
        assert_graph_saw_only_allowed_calls(*running)


@pytest.fixture(scope="module")
def fuzz_stack(live: tuple[LocalStack, httpx.Client, GraphLog]) -> LocalStack:
    return live[0]


@pytest.fixture(scope="module")
def client(live: tuple[LocalStack, httpx.Client, GraphLog]) -> httpx.Client:
    return live[1]


@pytest.fixture(scope="module")
def graph_log(live: tuple[LocalStack, httpx.Client, GraphLog]) -> GraphLog:
    return live[2]


# --- 1. what the app must refuse ------------------------------------------------------------------
GRAPH_PATH = [
    "../",
    "../../groups/00000000-0000-0000-0000-000000000000",
    "%2F",
    "..%2F..%2Fme",
    "/revokeSignInSessions",
    "?$select=passwordProfile",
    "#/x",
]
ODATA = ["' or 1 eq 1", "') or ('1' eq '1", "$filter=userType eq 'Guest'", "&$expand=memberOf", "users('x')"]
# (Whitespace around an identifier, CR and LF included, is trimmed, not refused: parse_user strips it.)
CONTROL = ["\r\nX-Injected: 1", "\nb@contoso.com", "\x00", "\x1b[2J", "x\u2028y"]
ANY_PAYLOAD = GRAPH_PATH + ODATA + CONTROL
USERS_IN_BODY = (
    [f"a@contoso.com{payload}" for payload in ANY_PAYLOAD]
    + [f"{payload}a@contoso.com" for payload in ANY_PAYLOAD]
    + [
        "me",
        "/me",
        "a@[127.0.0.1]",
        "a@contoso.com:443",
        "a%40contoso.com",
        "a@contoso.com%0d%0aX: y",
        "*",
        "a@contoso.com,b@contoso.com",
    ]
)


def no_graph_call_during(graph_log: GraphLog, action: Any) -> Any:
    before = len(graph_log.entries())
    result = action()
    time.sleep(0.05)
    assert len(graph_log.entries()) == before, "a refused request reached Graph"
    return result


@pytest.mark.parametrize("field", ["users", "user"])
def test_user_injections_in_the_body_are_400_before_any_graph_call(client: httpx.Client, graph_log: GraphLog, field: str) -> None:
    for evil in USERS_IN_BODY:
        body = {"users": ["ok@contoso.com", evil]} if field == "users" else {"user": evil}
        response = no_graph_call_during(graph_log, lambda: client.post("/api/signouts", json=body))
        problem = assert_problem(response, 400, evil)
        assert [error["pointer"] for error in problem["errors"]] == (["/users/1"] if field == "users" else ["/user"]), evil


# Both free-text fields refuse C0 controls and DEL; the description (multi-line by nature) keeps TAB,
# CR and LF, the correlationId (a one-line reference that is logged) refuses them too.
FREE_TEXT_CONTROLS = ["\x00", "\x1b[2J", "\x07", "\x0b", "\x0c", "a\x08b", "\x1f", "\x7f"]
LOG_LINE_BREAKS = ["\r\n2026-11-26 15:00:00,000 INFO signout.task: task status=succeeded", "\n", "\r", "\t"]


@pytest.mark.parametrize("field", ["description", "correlationId"])
def test_control_characters_in_free_text_are_400(client: httpx.Client, graph_log: GraphLog, field: str) -> None:
    for evil in FREE_TEXT_CONTROLS + (LOG_LINE_BREAKS if field == "correlationId" else []):
        body = {"users": ["ok@contoso.com"], field: f"INC-1{evil}"}
        problem = assert_problem(no_graph_call_during(graph_log, lambda: client.post("/api/signouts", json=body)), 400, evil)
        assert [error["pointer"] for error in problem["errors"]] == [f"/{field}"]


def token_for(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# CPython's datetime.fromisoformat ignores a NUL after a time zone ("...Z\x00" parses): harmless, as
# only the parsed datetime is used, so NUL is not among the date payloads.
DATE_CONTROL = [payload for payload in CONTROL if payload != "\x00"]
QUERY_INJECTIONS = {
    "user": [f"a@contoso.com{payload}" for payload in ANY_PAYLOAD] + ["' or 1 eq 1", "*"],
    "status": [f"succeeded{payload}" for payload in ODATA + CONTROL] + ["$filter=Status eq 'succeeded'"],
    "since": [f"2026-01-01T00:00:00Z{payload}" for payload in ODATA + DATE_CONTROL] + ["$filter=1"],
    "until": [f"2026-01-01{payload}" for payload in ODATA + CONTROL],
    "top": [f"10{payload}" for payload in ODATA + CONTROL] + ["0", "101", "-1"],
    "continuationToken": ["' or RowKey gt ''", token_for("0' or RowKey gt '"), token_for("1" * 13 + "-x"), "\r\n", "%2F..%2F"],
    "$filter": ["PartitionKey ne ''"],
    "a/b~c": ["1"],  # an unknown parameter is pointed at as RFC 6901 says: /a~1b~0c
}
# The remediation log's time keys hold 1970 to 2285: a moment outside is 400 (a year-1 `until` with
# `top=1` was a 500 when the nextLink was built).
QUERY_INJECTIONS["since"] += ["1969-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "2286-01-01T00:00:00Z"]
QUERY_INJECTIONS["until"] += ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1969-01-01"]


def json_pointer(name: str) -> str:
    return "/" + name.replace("~", "~0").replace("/", "~1")


@pytest.mark.parametrize("name", sorted(QUERY_INJECTIONS))
def test_query_injections_are_400_before_any_graph_call(client: httpx.Client, graph_log: GraphLog, name: str) -> None:
    for evil in QUERY_INJECTIONS[name]:
        problem = assert_problem(
            no_graph_call_during(graph_log, lambda: client.get("/api/signouts", params={name: evil})), 400, evil
        )
        assert [error["pointer"] for error in problem["errors"]] == [json_pointer(name)], evil


TASK_IDS = [
    "' or 1 eq 1",
    "00000000-0000-0000-0000-000000000000' or '1' eq '1",
    "..%2F..%2Fsignouts",
    "../signouts",
    "x/../../health",
    "00000000-0000-0000-0000-000000000000?$select=x",
    "00000000-0000-0000-0000-000000000000\r\nX: y",
    "ABCDEF00-0000-0000-0000-000000000000",
    "00000000-0000-0000-0000-000000000000%00",
    "00000000-0000-0000-0000-00000000000",
    "task",
    "*",
]


def test_task_id_injections_are_400(client: httpx.Client, graph_log: GraphLog) -> None:
    for evil in TASK_IDS:
        response = no_graph_call_during(graph_log, lambda: client.get(f"/api/signouts/{quote(evil, safe='')}"))
        if "\n" in evil and response.status_code == 404 and not response.headers.get("content-type", "").startswith(PROBLEM):
            # The dev host's catch-all route (aiohttp `{path:.*}`) cannot match a decoded line feed, so
            # aiohttp answers 404 before any function runs; the Functions host would hand the id to the app.
            continue
        assert [error["pointer"] for error in assert_problem(response, 400, evil)["errors"]] == ["/id"], evil


def test_non_printable_idempotency_keys_are_400(client: httpx.Client, graph_log: GraphLog) -> None:
    # (DEL and other C0 controls never get this far: the HTTP parser refuses the header itself.)
    for evil in [b"key\x85", b"key\xa0x", b"k" * 201]:
        response = no_graph_call_during(
            graph_log, lambda: client.post("/api/signouts", json={"users": ["ok@contoso.com"]}, headers={"Idempotency-Key": evil})
        )
        assert_problem(response, 400, evil)


def test_a_forged_client_principal_is_refused(client: httpx.Client, graph_log: GraphLog) -> None:
    forged = base64.b64encode(json.dumps({"claims": [{"typ": "roles", "val": "SignOuts.Create"}]}).encode()).decode()
    response = no_graph_call_during(
        graph_log,
        lambda: client.post("/api/signouts", json={"users": ["ok@contoso.com"]}, headers={"x-ms-client-principal": forged}),
    )
    assert_problem(response, 401)


# --- 1b. huge and deeply nested bodies -----------------------------------------------------------
def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process has ever had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


TEN_MB = 10 * 1024 * 1024
HOSTILE_BODIES = {
    "10 MB of string": (b'{"users": ["' + b"a" * TEN_MB + b'"]}', {413}),
    "10 MB of nesting": (b"[" * TEN_MB, {413}),
    "100k levels of arrays": (b"[" * 100_000 + b"]" * 100_000, {400}),
    "100k levels of objects": (b'{"a":' * 100_000 + b"0" + b"}" * 100_000, {400, 413}),
    "100k levels in a field": (b'{"users": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {400}),
    "100k users": (json.dumps({"users": [f"u{i}@contoso.com" for i in range(100_000)]}).encode(), {413}),
    "a 5,000-digit integer": (b'{"users": ' + b"1" * 5000 + b"}", {400}),  # over CPython's 4,300-digit int limit
    "invalid UTF-8": (b'{"users": ["\xff\xfe@contoso.com"]}', {400}),
}


@pytest.mark.parametrize("path", ["/api/signouts", "/api/alerts"])
def test_huge_and_deeply_nested_bodies_are_4xx_and_memory_stays_bounded(
    live: tuple[LocalStack, httpx.Client, GraphLog], client: httpx.Client, graph_log: GraphLog, path: str
) -> None:
    stack = live[0]
    assert stack.devhost and stack.devhost.process
    pid = stack.devhost.process.pid
    for name, (body, statuses) in HOSTILE_BODIES.items():
        response = no_graph_call_during(
            graph_log, lambda: client.post(path, content=body, headers={"content-type": "application/json"})
        )
        assert response.status_code in statuses, (name, response.status_code, response.text[:300])
        assert_problem(response, response.status_code)
        assert peak_rss(pid) < RSS_LIMIT_BYTES, f"dev host peaked at {peak_rss(pid) // 2**20} MiB after {name}"
    assert client.get("/api/health").status_code == 200  # and it still serves


# --- 2. what the API accepts as a user ----------------------------------------------------------
PROTECTED = [
    "breakglass@contoso.com",
    "BreakGlass@Contoso.com",
    " breakglass@CONTOSO.com\t",
    "e3f1b0c2-7d54-4b8e-9f1a-0b6c2d4e8a11",
]


@fuzz_settings(30)
@given(
    users=st.lists(
        valid_upn | guest_upn | guid | mutated(valid_upn | guest_upn) | identifier_text | st.sampled_from(PROTECTED),
        min_size=1,
        max_size=4,
    )
)
@example(users=["adele.vance@contoso.com", "o'neil#EXT#@contoso.onmicrosoft.com", "a+b@contoso.com"])
@example(users=PROTECTED)
def test_what_the_api_accepts_is_exactly_what_the_parser_accepts(
    client: httpx.Client, graph_log: GraphLog, users: list[str]
) -> None:
    """Live, on top of the unit properties: the API refuses exactly the entries parse_user refuses
    (naming each one), and queues the accepted ones as given; the `live` fixture's audit then shows
    that each reached Graph as one percent-encoded path segment, and nothing else did."""
    expected: dict[int, str | None] = {}
    for index, raw in enumerate(users):
        try:
            expected[index] = parse_user(raw).value
        except InvalidIdentifierError:
            expected[index] = None
    response = client.post("/api/signouts", json={"users": users, "description": "fuzz"})
    refused = sorted(index for index, value in expected.items() if value is None)
    if refused:
        assert [error["pointer"] for error in assert_problem(response, 400, users)["errors"]] == [
            f"/users/{index}" for index in refused
        ]
        return
    assert response.status_code == 202, response.text
    queued = {task["user"] for task in response.json()["tasks"]}
    assert {value.lower() for value in queued} == {value.lower() for value in expected.values() if value}
    graph_log.accepted_users |= queued


def test_accepted_identifiers_reached_graph_only_as_one_segment(
    live: tuple[LocalStack, httpx.Client, GraphLog], graph_log: GraphLog
) -> None:
    """The audit, now (the fixture repeats it when the module ends, after schemathesis)."""
    if not graph_log.accepted_users:  # xdist ran the property on the other worker: make this stack see some
        response = live[1].post(
            "/api/signouts", json={"users": ["adele.vance@contoso.com", "o'neil#EXT#@contoso.onmicrosoft.com"]}
        )
        assert response.status_code == 202, response.text
        graph_log.accepted_users |= {task["user"] for task in response.json()["tasks"]}
    entries = assert_graph_saw_only_allowed_calls(*live)
    assert any(entry["method"] == "POST" for entry in entries), "nothing was revoked: the audit proved little"


def test_a_job_for_a_group_graph_does_not_know_fails_without_an_exception(client: httpx.Client) -> None:
    """Schemathesis sends bulk requests for random group ids too; this one makes sure the stack sees
    one whatever xdist does. Graph answers 404: the job must end `failed` with the reason, and the
    module's audit then finds no exception in the dev host (the worker used to raise, retry the page
    and poison it, leaving the job `enumerating` for ever)."""
    response = client.post("/api/signouts", json={"group": str(uuid.uuid4())})
    assert response.status_code == 202, response.text
    job = wait_for_terminal(client, response.headers["Location"])
    assert job["state"] == "failed", job
    assert "404" in job["error"] and job["counts"]["discovered"] == 0


# --- 3. schemathesis over the served document ---------------------------------------------------
def response_schema_conformance_nulls_as_absent(ctx: Any, response: Response, case: Any) -> bool | None:
    """schemathesis' response_schema_conformance, applied after the document's stated convention.

    The Task definition says "Fields without a value (not yet known or not applicable) are null", and
    Swagger 2.0 has no `nullable`: a null optional field means an absent one (tests/unit/test_openapi.py
    validates the code's records the same way, with `without_nulls`). Required fields still must be
    present and non-null, and everything else is checked exactly as the stock check does.
    """
    if "json" not in (response.headers.get("content-type") or [""])[0]:
        return response_schema_conformance(ctx, response, case)
    stripped = Response(
        status_code=response.status_code,
        headers=response.headers,
        content=json.dumps(without_nulls(json.loads(response.content))).encode(),
        request=response.request,
        elapsed=response.elapsed,
        verify=response.verify,
        message=response.message,
        http_version=response.http_version,
        encoding=response.encoding,
    )
    return response_schema_conformance(ctx, stripped, case)


def errors_are_problem_json(ctx: Any, response: Response, case: Any) -> bool | None:
    """Every 4xx/5xx the app writes is RFC 9457 problem+json with its status in the body.

    Not the app's: the Functions host's own bodyless 401 (missing or wrong function key, before the
    app runs; the document declares those 401s without a schema), and its 404 for a method that no
    function registers (schemathesis also sends e.g. TRACE to each path)."""
    if response.status_code < 400 or platform_401(response) or case.method.upper() != case.operation.method.upper():
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith(PROBLEM), f"{response.status_code} answered as {content_type!r}: {response.content[:200]!r}"
    body = json.loads(response.content)
    assert body.get("status") == response.status_code and body.get("title"), body
    return None


def platform_401(response: Response) -> bool:
    return response.status_code == 401 and not response.content


def content_type_conformance_except_platform_401(ctx: Any, response: Response, case: Any) -> bool | None:
    """The stock check, except for the host's bodyless 401, which has no Content-Type at all (in Azure
    too); the document declares 401 without a schema for that reason (tests/unit/test_openapi.py,
    BODYLESS_STATUSES)."""
    return None if platform_401(response) else content_type_conformance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance_except_platform_401,  # instead of content_type_conformance: see its docstring
    response_headers_conformance,
    response_schema_conformance_nulls_as_absent,  # instead of response_schema_conformance: see its docstring
    negative_data_rejection,  # an empty optional query parameter is valid: the document says allowEmptyValue
    ignored_auth,  # the dev host enforces the function key (DEVHOST_FUNCTION_KEY) like the Functions host
    errors_are_problem_json,
]
# Not run, on purpose:
# - positive_data_acceptance: a schema-valid `user` (any string of 1-256 characters) is usually not an
#   Entra identifier, so 400 is the documented answer; the document cannot express the UPN grammar.
# - unsupported_method: Azure Functions answers 404 (not 405) for a method a function does not
#   register, and the dev host mirrors that; the app never sees those requests.
# - missing_required_header, use_after_free, ensure_resource_availability: no required headers, no
#   DELETE operations and no links in this document.


def load_schema() -> Any:
    """The document from shared/openapi.json; test_the_served_document_is_the_file shows it is what
    GET /api/openapi.json serves. (Loaded at import: schemathesis' lazy `from_fixture` loader reads
    pytest's private `Node._nodeid`, which pytest 9 no longer has.)"""
    loaded = schemathesis.openapi.from_path(DOCUMENT)
    loaded.config.update(request_timeout=REQUEST_TIMEOUT)
    # 413 is how the app refuses more than 1000 users (`maxItems`) or an oversized body, as documented.
    loaded.config.checks.negative_data_rejection = NegativeDataRejectionConfig(
        expected_statuses=[*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
    )
    loaded.config.generation.update(
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        with_security_parameters=False,  # the key is the real one, passed to each call (so ignored_auth probes it)
        database="none",
    )
    return loaded


schema = load_schema()


def test_the_served_document_is_the_file(client: httpx.Client) -> None:
    served = client.get("/api/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(DOCUMENT.read_text())


# The key travels in the header the document declares. This parametrization also gives each
# operation's item its own node id: without one, under pytest 9 every schemathesis item gets the same
# id, and `pytest-xdist --dist loadgroup` then silently runs only one of them.
@schema.parametrize()
@pytest.mark.parametrize("key_header", ["x-functions-key"])
def test_every_operation_conforms_to_the_document_under_fuzzing(case: Any, fuzz_stack: LocalStack, key_header: str) -> None:
    case.call_and_validate(base_url=f"{fuzz_stack.base_url}/api", headers={key_header: FUNCTION_KEY}, checks=CHECKS)
