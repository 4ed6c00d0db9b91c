"""Caller authorization: app roles from App Service Authentication, and forged headers."""

from __future__ import annotations

import asyncio
import base64
import json

import azure.functions as func
import pytest

from shared.domain.problems import ProblemError
from shared.triggers.auth import CREATE_ROLE, READ_ROLE, authorize, parse_principal
from tests.app_functions import registered_functions


def principal_header(roles: list[str], oid: str = "11111111-2222-3333-4444-555555555555") -> str:
    claims = [
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid},
        {"typ": "name", "val": "SOC automation"},
    ]
    claims += [{"typ": "roles", "val": role} for role in roles]
    body = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(body).encode()).decode()


def request(
    headers: dict[str, str] | None = None, method: str = "GET", url: str = "http://localhost/api/signouts"
) -> func.HttpRequest:
    return func.HttpRequest(method, url, headers=headers or {}, body=b"")


@pytest.fixture
def easy_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    monkeypatch.setenv("REQUIRE_APP_ROLES", "true")


def status_of(call: object) -> int:
    with pytest.raises(ProblemError) as caught:
        call()  # type: ignore[operator]
    return caught.value.status


def test_without_easy_auth_a_principal_header_is_forged_and_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    assert status_of(lambda: authorize(request({"x-ms-client-principal": principal_header([CREATE_ROLE])}), CREATE_ROLE)) == 401


def test_without_roles_required_anonymous_function_key_callers_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUIRE_APP_ROLES", raising=False)
    assert authorize(request(), CREATE_ROLE) is None


@pytest.mark.usefixtures("easy_auth")
def test_roles_required_means_signed_in_with_the_right_role() -> None:
    assert status_of(lambda: authorize(request(), READ_ROLE)) == 401
    assert status_of(lambda: authorize(request({"x-ms-client-principal": principal_header([READ_ROLE])}), CREATE_ROLE)) == 403
    requested_by = authorize(request({"x-ms-client-principal": principal_header([CREATE_ROLE])}), CREATE_ROLE)
    assert requested_by is not None
    assert requested_by.as_api() == {"objectId": "11111111-2222-3333-4444-555555555555", "displayName": "SOC automation"}


@pytest.mark.parametrize(
    "header", ["not base64!", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{").decode(), "A" * 20000]
)
def test_unreadable_principal_is_401(header: str) -> None:
    assert status_of(lambda: parse_principal(header)) == 401


@pytest.mark.usefixtures("easy_auth")
@pytest.mark.parametrize(
    ("name", "method", "url", "role"),
    [
        ("create_signouts", "POST", "http://localhost/api/signouts", CREATE_ROLE),
        ("ingest_alert", "POST", "http://localhost/api/alerts", CREATE_ROLE),
        ("list_signouts", "GET", "http://localhost/api/signouts", READ_ROLE),
    ],
)
def test_every_endpoint_enforces_its_role_before_touching_anything(name: str, method: str, url: str, role: str) -> None:
    handler = registered_functions()[name].get_user_function()
    wrong = READ_ROLE if role == CREATE_ROLE else CREATE_ROLE
    response = asyncio.run(handler(request({"x-ms-client-principal": principal_header([wrong])}, method, url)))
    assert response.status_code == 403
    assert role in json.loads(response.get_body())["detail"]
