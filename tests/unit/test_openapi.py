"""shared/openapi.json: a valid OpenAPI 2.0 document that a Logic Apps / Power Automate custom
connector can import, and that describes the app that is actually registered and the shapes the
code actually produces.

Run from the repository root (pytest's rootdir): `function_app` is imported as the Functions host
would import it, and needs no app settings to import.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, FormatChecker
from openapi_spec_validator import OpenAPIV2SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from shared.domain import callback_urls as callbacks
from shared.domain import requests as signout_request
from shared.domain.alerts import azure_monitor, defender_xdr, sentinel_alert, sentinel_incident
from shared.domain.principal import Principal
from shared.domain.problems import ProblemError, field_error
from shared.domain.tasks import ErrorCategory, TaskError, TaskRecord, TaskStatus
from shared.triggers import http_api as api
from shared.usecases import queries as status_api
from tests.app_functions import registered_functions
from tests.openapi_nulls import without_nulls

DOCUMENT_PATH = Path(__file__).parents[2] / "shared" / "openapi.json"
DOC: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
ALL_METHODS = frozenset(METHODS)
PROBLEM_CT = "application/problem+json"
UNAUTHENTICATED_OPERATIONS = {"getHealth", "getConsoleAsset"}
# Responses the platform writes without a body: the host's 401 for a missing/invalid key or token.
BODYLESS_STATUSES = {"401"}

# The OpenAPI extensions Logic Apps / Power Automate custom connectors document
# (learn.microsoft.com/connectors/custom-connectors/openapi-extensions). Anything else (AutoRest's
# x-ms-long-running-operation, x-ms-pageable, ...) is ignored or refused by the connector runtime.
CONNECTOR_EXTENSIONS = frozenset(
    {
        "x-ms-summary",
        "x-ms-visibility",
        "x-ms-api-annotation",
        "x-ms-operation-context",
        "x-ms-capabilities",
        "x-ms-trigger",
        "x-ms-trigger-hint",
        "x-ms-notification-content",
        "x-ms-notification-url",
        "x-ms-url-encoding",
        "x-ms-dynamic-values",
        "x-ms-dynamic-list",
        "x-ms-dynamic-schema",
        "x-ms-dynamic-properties",
    }
)
VISIBILITY = frozenset({"important", "advanced", "internal"})


# --- helpers -------------------------------------------------------------------------------------


def operations(doc: dict[str, Any] = DOC) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items() if method in METHODS]


def operation(operation_id: str) -> dict[str, Any]:
    (found,) = [op for _, _, op in operations() if op["operationId"] == operation_id]
    return found


def definition(name: str) -> dict[str, Any]:
    return DOC["definitions"][name]


def _normalise_route(route: str) -> str:
    """`signouts/{id:guid?}` -> `/signouts/{id}`: the path the document uses (basePath /api)."""
    route = re.sub(r"\{([^}:?]+)[^}]*\}", r"{\1}", route.strip().strip("/"))
    return "/" + route


def _methods(raw: Any) -> frozenset[str]:
    """`[HttpMethod.POST]` or `["post"]` -> {"post"}; no methods means the trigger accepts all of them."""
    if not raw:
        return ALL_METHODS
    return frozenset(str(getattr(method, "value", method)).lower() for method in raw)


def registered_http_routes() -> dict[tuple[str, str], Any]:
    """(method, path) -> function, for every HTTP-triggered function of the live app."""
    routes: dict[tuple[str, str], Any] = {}
    for function in registered_functions().values():
        trigger = function.get_trigger()
        if trigger is None or not hasattr(trigger, "route"):
            continue  # queue and timer triggers
        route = trigger.route if trigger.route is not None else function.get_function_name()
        for method in _methods(getattr(trigger, "methods", None)):
            routes[(method, _normalise_route(route))] = function
    return routes


def documented_routes() -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, method, op in operations()}


def _describe(routes: set[tuple[str, str]]) -> str:
    return ", ".join(f"{method.upper()} {path}" for method, path in sorted(routes, key=lambda r: (r[1], r[0]))) or "none"


def effective_security(op: dict[str, Any]) -> list[dict[str, list[str]]]:
    return op.get("security", DOC.get("security", []))


def walk(node: Any, path: str = "#"):  # type: ignore[no-untyped-def]
    """Every (json-pointer-ish path, key, value) in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


def json_schema(name: str) -> dict[str, Any]:
    """A definition as a standalone draft-4 JSON Schema (Swagger 2.0 schemas are a draft-4 subset)."""
    schema = copy.deepcopy(definition(name))
    schema["definitions"] = copy.deepcopy(DOC["definitions"])
    return schema


def assert_valid(name: str, instance: Any) -> None:
    validator = Draft4Validator(json_schema(name), format_checker=FormatChecker())
    errors = [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}" for error in validator.iter_errors(instance)
    ]
    assert not errors, f"{name} does not describe what the code produces:\n" + "\n".join(errors)


# --- the document itself -------------------------------------------------------------------------


def test_is_a_valid_openapi_2_document() -> None:
    validate(DOC, cls=OpenAPIV2SpecValidator)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda doc: doc["paths"]["/signouts"]["post"].pop("responses"),
        lambda doc: doc["paths"]["/signouts/{id}"]["get"]["parameters"][0].update({"in": "cookie"}),  # not in v2
        lambda doc: doc["paths"]["/signouts"]["get"]["parameters"].append(
            dict(doc["paths"]["/signouts"]["get"]["parameters"][0])
        ),
        lambda doc: doc.update({"openapi": "3.0.3"}),
    ],
    ids=["no responses", "cookie parameter", "duplicate parameter", "v3 key in a v2 document"],
)
def test_the_validator_really_checks_v2_documents(breakage: Any) -> None:
    broken = copy.deepcopy(DOC)
    breakage(broken)
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV2SpecValidator)


def test_host_agnostic_https_under_api() -> None:
    assert DOC["swagger"] == "2.0"
    assert "host" not in DOC, "the connector wizard or the caller supplies the host; the document must not pin one"
    assert DOC["basePath"] == "/api"
    assert DOC["schemes"] == ["https"]
    assert len(DOC["info"]["title"]) <= 30, "custom connector names are limited to 30 characters"
    assert 30 <= len(DOC["info"]["description"]) <= 500, "connector descriptions are 30-500 characters"


def test_every_definition_is_used_and_every_reference_resolves() -> None:
    refs = {value for _, key, value in walk(DOC) if key == "$ref"}
    assert all(ref.startswith("#/definitions/") for ref in refs), refs
    used = {ref.removeprefix("#/definitions/") for ref in refs}
    assert used <= set(DOC["definitions"]), f"unresolved: {sorted(used - set(DOC['definitions']))}"
    assert set(DOC["definitions"]) <= used, f"unused definitions: {sorted(set(DOC['definitions']) - used)}"


# --- the document and the live app agree ---------------------------------------------------------


def test_documented_routes_are_exactly_the_registered_http_functions() -> None:
    registered = set(registered_http_routes())
    documented = set(documented_routes())
    missing_in_app = documented - registered
    missing_in_document = registered - documented
    assert not (missing_in_app or missing_in_document), (
        "shared/openapi.json and function_app's HTTP functions disagree.\n"
        f"  documented but not registered in function_app (add these routes): {_describe(missing_in_app)}\n"
        f"  registered but not documented in shared/openapi.json: {_describe(missing_in_document)}"
    )


def test_anonymous_functions_are_exactly_the_operations_without_security() -> None:
    registered = registered_http_routes()
    mismatched = []
    for route, op in documented_routes().items():
        function = registered.get(route)
        if function is None:
            continue  # reported by the route test
        level = getattr(function.get_trigger(), "auth_level", None)
        anonymous = str(getattr(level, "value", level) or "").upper() == "ANONYMOUS"
        if anonymous != (effective_security(op) == []):
            mismatched.append(f"{route[0].upper()} {route[1]}: authLevel {level}, document security {effective_security(op)}")
    assert not mismatched, "auth level and documented security disagree:\n  " + "\n  ".join(mismatched)


# --- connector readiness -------------------------------------------------------------------------


def test_api_key_in_the_functions_key_header() -> None:
    scheme = DOC["securityDefinitions"]["apiKey"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "x-functions-key"}
    assert "`code`" in scheme["description"], "the description mentions the ?code= alternative"
    assert len(DOC["securityDefinitions"]) == 1, "a custom connector takes one authentication type"


@pytest.mark.parametrize(("path", "method", "op"), operations(), ids=[f"{m.upper()} {p}" for p, m, _ in operations()])
def test_operation_security(path: str, method: str, op: dict[str, Any]) -> None:
    if op["operationId"] in UNAUTHENTICATED_OPERATIONS:
        assert effective_security(op) == []
    else:
        assert effective_security(op) == [{"apiKey": []}]


@pytest.mark.parametrize(("path", "method", "op"), operations(), ids=[f"{m.upper()} {p}" for p, m, _ in operations()])
def test_operation_is_connector_ready(path: str, method: str, op: dict[str, Any]) -> None:
    assert re.fullmatch(r"[a-z][A-Za-z0-9]*", op["operationId"]), "operationIds are camelCase"
    assert op["summary"].strip() and len(op["summary"]) <= 80 and not op["summary"].endswith(".")
    assert op["summary"][0].isupper(), "sentence case"
    assert len(op["description"]) >= 30
    assert op["responses"], "responses are documented"
    assert op.get("x-ms-visibility", "important") in VISIBILITY
    for status, response in op["responses"].items():
        assert re.fullmatch(r"[1-5]\d\d", status), f"{status}: explicit status codes, no `default`"
        assert response["description"].strip(), f"{status} has a description"
        if (
            status.startswith(("4", "5"))
            and status not in BODYLESS_STATUSES
            and op["operationId"] not in UNAUTHENTICATED_OPERATIONS
        ):
            assert response.get("schema") == {"$ref": "#/definitions/Problem"}, f"{status} answers problem+json"
            assert PROBLEM_CT in op.get("produces", DOC["produces"]), "errors are application/problem+json"
    for parameter in op.get("parameters", []):
        assert parameter.get("description") and parameter.get("x-ms-summary"), f"parameter {parameter['name']}"
        assert parameter.get("x-ms-visibility", "important") in VISIBILITY


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids))
    assert set(ids) == {
        "createSignOuts",
        "getSignOut",
        "listSignOuts",
        "getJob",
        "listJobs",
        "cancelJob",
        "approveJob",
        "rejectJob",
        "ingestAlert",
        "getHealth",
        "getOpenApi",
        "getConsole",
        "getConsoleAsset",
    }


def test_path_parameters_are_declared() -> None:
    for path, method, op in operations():
        names = set(re.findall(r"\{([^}]+)\}", path))
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert names == declared, f"{method.upper()} {path}"
        assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")


def test_only_documented_connector_extensions() -> None:
    used = {key for _, key, _ in walk(DOC) if key.startswith("x-ms-")}
    assert used <= CONNECTOR_EXTENSIONS, f"not custom connector extensions: {sorted(used - CONNECTOR_EXTENSIONS)}"
    for where, key, value in walk(DOC):
        if key == "x-ms-visibility":
            assert value in VISIBILITY, where


def test_polling_contract_is_described_with_real_headers() -> None:
    """Long-running = the 202 + Location + Retry-After async pattern, which Logic Apps and
    connectors follow on their own; there is no connector extension for it."""
    accepted = operation("createSignOuts")["responses"]["202"]["headers"]
    assert {"Location", "Retry-After", "Idempotent-Replayed"} <= set(accepted)
    running = operation("getSignOut")["responses"]["202"]
    assert {"Location", "Retry-After"} <= set(running["headers"])
    assert running["schema"] == operation("getSignOut")["responses"]["200"]["schema"] == {"$ref": "#/definitions/Task"}
    for status in ("409", "503"):
        assert "Retry-After" in operation("createSignOuts")["responses"][status]["headers"]


def test_documented_error_statuses() -> None:
    def errors(op_id: str) -> set[str]:
        return {s for s in operation(op_id)["responses"] if s.startswith(("4", "5"))}

    assert {"400", "409", "413", "415", "422", "503"} <= errors("createSignOuts")
    assert {"400", "404"} <= errors("getSignOut")
    assert {"400"} <= errors("listSignOuts")
    assert {"400", "422"} <= errors("ingestAlert")
    assert set(operation("ingestAlert")["responses"]) >= {"200", "202"}
    assert set(operation("getHealth")["responses"]) == {"200", "503"}


# --- the document describes what the code accepts and produces ---------------------------------


def test_sign_out_request_matches_the_parser() -> None:
    body = definition("SignOutRequest")
    accepted = signout_request.KNOWN_FIELDS | signout_request.BULK_FIELDS  # single and bulk requests share the body
    assert set(body["properties"]) == set(accepted), (
        "SignOutRequest fields vs shared.domain.requests.KNOWN_FIELDS: "
        f"documented only {sorted(set(body['properties']) - accepted)}, "
        f"accepted only {sorted(accepted - set(body['properties']))}"
    )
    assert body["additionalProperties"] is False, "unknown fields are refused"
    assert body["properties"]["users"]["maxItems"] == signout_request.MAX_USERS
    assert body["properties"]["users"]["minItems"] == 1
    assert body["properties"]["description"]["maxLength"] == signout_request.MAX_DESCRIPTION
    assert body["properties"]["correlationId"]["maxLength"] == signout_request.MAX_CORRELATION_ID
    assert body["properties"]["callbackUrl"]["pattern"] == "^https://"
    assert body["properties"]["callbackUrl"]["maxLength"] == callbacks.MAX_URL_LENGTH
    (key,) = [p for p in operation("createSignOuts")["parameters"] if p["in"] == "header"]
    assert key["name"] == "Idempotency-Key" and key["required"] is False
    assert key["maxLength"] == api.MAX_IDEMPOTENCY_KEY


def test_list_query_matches_the_parser() -> None:
    params = {p["name"]: p for p in operation("listSignOuts")["parameters"]}
    assert all(p["in"] == "query" and p["required"] is False for p in params.values())
    assert set(params) == set(status_api.KNOWN_PARAMS) - {"code"}, "`code` is the function key, not an API parameter"
    assert params["top"]["maximum"] == status_api.MAX_TOP and params["top"]["default"] == status_api.DEFAULT_TOP
    assert params["top"]["minimum"] == 1
    assert params["status"]["enum"] == [status.value for status in TaskStatus]
    assert params["since"]["format"] == params["until"]["format"] == "date-time"


def test_status_and_error_enums_match_the_model() -> None:
    assert definition("TaskStatus")["enum"] == [status.value for status in TaskStatus]
    category = definition("TaskError")["properties"]["category"]
    assert category["enum"] == [item.value for item in ErrorCategory]


def _record(**changes: Any) -> TaskRecord:
    now = datetime(2026, 11, 26, 14, 41, 22, tzinfo=UTC)
    record = TaskRecord(
        id="3f0c8e0a-6d1b-4c1e-9a57-0d1f2e3a4b5c",
        user="adele.vance@contoso.com",
        status=TaskStatus.SUCCEEDED,
        created_at=now,
        updated_at=now,
        description="INC-1234 compromised account",
    )
    return replace(record, **changes)


def test_task_schema_has_exactly_the_fields_of_a_task_record() -> None:
    produced = set(_record().to_api("https://app.example/api/signouts/3f0c8e0a-6d1b-4c1e-9a57-0d1f2e3a4b5c"))
    produced |= {"joinedRequests", "joinedCount"}  # getSignOut adds them (status_api.joined_requests)
    documented = set(definition("Task")["properties"])
    assert produced == documented, (
        f"TaskRecord.to_api() only: {sorted(produced - documented)}; Task schema only: {sorted(documented - produced)}"
    )
    error = TaskError(
        ErrorCategory.PERMISSION_DENIED, "Insufficient privileges", "Authorization_RequestDenied", "req-1", 403, "grant it"
    )
    assert set(error.to_api()) == set(definition("TaskError")["properties"])
    assert set(definition("RequestedBy")["properties"]) == {"objectId", "appId", "displayName"}
    assert set(definition("ResolvedUser")["properties"]) == {"id", "userPrincipalName", "userType"}
    assert {"state", "attempts", "lastError"} <= set(definition("CallbackOutcome")["properties"])


def test_the_code_s_task_records_validate_against_the_schema() -> None:
    url = "https://func-signout.azurewebsites.net/api/signouts/3f0c8e0a-6d1b-4c1e-9a57-0d1f2e3a4b5c"
    moment = datetime(2026, 11, 26, 14, 41, 23, tzinfo=UTC)
    samples = [
        _record(status=TaskStatus.QUEUED),
        _record(
            requested_by=Principal(
                "5b1e0c2a-7d3f-4e8a-9b6c-1d2e3f4a5b6c", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "Sentinel playbook"
            ),
            correlation_id="1234",
            resolved_id="6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b",
            resolved_upn="adele.vance@contoso.com",
            user_type="Member",
            completed_at=moment,
            attempts=1,
            graph_request_id="8d2c5f0e-1a2b-4c3d-9e8f-7a6b5c4d3e2f",
            sessions_valid_from=moment,
            verified=True,
        ),
        _record(
            status=TaskStatus.FAILED,
            attempts=1,
            completed_at=moment,
            error=TaskError(
                ErrorCategory.PERMISSION_DENIED,
                "Insufficient privileges",
                "Authorization_RequestDenied",
                "req-1",
                403,
                "grant User.RevokeSessions.All",
            ),
        ),
        _record(
            status=TaskStatus.QUEUED,
            attempts=2,
            next_attempt_at=moment,
            error=TaskError(ErrorCategory.TRANSIENT, "throttled", http_status=429),
        ),
        _record(
            status=TaskStatus.SUCCEEDED,
            user_type="Guest",
            verified=False,
            warnings=("guest: home-tenant sessions are not revoked",),
        ),
    ]
    for record in samples:
        assert_valid("Task", without_nulls(record.to_api(url)))
    summary = {"id": samples[0].id, "user": samples[0].user, "status": "queued", "statusUrl": url}
    assert_valid("SignOutAccepted", {"tasks": [summary]})
    assert_valid("TaskPage", {"tasks": [without_nulls(samples[1].to_api(url))], "continuationToken": "abc", "nextLink": url})


def test_problem_schema_matches_problem_bodies() -> None:
    problem = ProblemError(400, "Invalid request", "1 problem(s) in the request body", [field_error("/users/3", "is not a user")])
    body = problem.body("/api/signouts")
    assert set(body) == set(definition("Problem")["properties"]) - {"tasks"}  # tasks: only for a partly accepted 503
    assert set(body["errors"][0]) == set(definition("ProblemError")["properties"])
    assert_valid("Problem", body)
    assert_valid("Problem", ProblemError(404, "Task not found").body())
    partly = ProblemError(
        503,
        "Partly accepted",
        extra={"tasks": [{"id": "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10", "user": "a@contoso.com", "status": "queued"}]},
    )
    assert_valid("Problem", partly.body())


def test_alert_kinds_match_the_parsers() -> None:
    kinds = [module.KIND for module in (azure_monitor, sentinel_alert, sentinel_incident, defender_xdr)]
    assert sorted(definition("AlertKind")["enum"]) == sorted(kinds)
    assert_valid(
        "AlertAccepted",
        {
            "kind": "sentinel_incident",
            "alertId": "/subscriptions/x/incidents/1",
            "tasks": [
                {
                    "id": "3f0c8e0a-6d1b-4c1e-9a57-0d1f2e3a4b5c",
                    "user": "adele.vance@contoso.com",
                    "status": "queued",
                    "statusUrl": "https://app.example/api/signouts/3f0c8e0a-6d1b-4c1e-9a57-0d1f2e3a4b5c",
                }
            ],
            "unusable": [{"entity": "Account Name='administrator' NTDomain='CONTOSO'", "reason": "no UPN or object id"}],
        },
    )
    assert_valid("AlertIgnored", {"kind": "azure_monitor", "alertId": "abc", "ignored": "resolved"})


def test_health_schema_matches_the_report_shape() -> None:
    from shared.triggers.health import permission_report

    report = {
        "status": "unhealthy",
        "checks": {
            "configuration": {"ok": True},
            "storage": {"ok": False, "error": "ServiceRequestError: boom"},
            "graphPermissions": permission_report(["User.Read.All"]),
        },
    }
    assert_valid("Health", report)
