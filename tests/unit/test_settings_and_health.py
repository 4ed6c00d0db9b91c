"""App settings validation and the health endpoint's permission report."""

import base64
import json

import pytest

from shared.domain.problems import ProblemError
from shared.settings import SettingsError, load_settings
from shared.triggers.health import permission_report, token_roles
from shared.usecases.queries import parse_log_query


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.graph_scope == "https://graph.microsoft.com/.default"
    assert settings.poison_queue == "signout-requests-poison"


def test_sovereign_cloud_endpoint() -> None:
    settings = load_settings({"GRAPH_ENDPOINT": "https://graph.microsoft.us/"})
    assert settings.graph_base_url == "https://graph.microsoft.us/v1.0"
    assert settings.graph_scope == "https://graph.microsoft.us/.default"


@pytest.mark.parametrize(
    "endpoint",
    ["http://graph.microsoft.com", "https://graph.microsoft.com/v1.0", "ftp://x", "http://10.0.0.1:80", "https://x?y=1"],
)
def test_rejects_unsafe_graph_endpoints(endpoint: str) -> None:
    with pytest.raises(SettingsError, match="GRAPH_ENDPOINT"):
        load_settings({"GRAPH_ENDPOINT": endpoint})


def test_plain_http_only_for_loopback_simulator() -> None:
    assert load_settings({"GRAPH_ENDPOINT": "http://127.0.0.1:7072"}).graph_base_url == "http://127.0.0.1:7072/v1.0"


def test_protected_users_are_case_insensitive() -> None:
    settings = load_settings({"PROTECTED_USERS": " BreakGlass@Contoso.com, 6F3E2B1A-0C4D-4E5F-8A9B-1C2D3E4F5A6B ,"})
    assert settings.protected_users == {"breakglass@contoso.com", "6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b"}


BREAK_GLASS = ("bg1@contoso.com", "6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b", "bg2@contoso.com")


@pytest.mark.parametrize(
    "raw",
    [
        "bg1@contoso.com;6F3E2B1A-0C4D-4E5F-8A9B-1C2D3E4F5A6B;bg2@contoso.com",
        "bg1@contoso.com 6F3E2B1A-0C4D-4E5F-8A9B-1C2D3E4F5A6B bg2@contoso.com",
        "bg1@contoso.com\n6F3E2B1A-0C4D-4E5F-8A9B-1C2D3E4F5A6B\r\n\tbg2@contoso.com\n",
        " bg1@contoso.com ; 6F3E2B1A-0C4D-4E5F-8A9B-1C2D3E4F5A6B,, bg2@contoso.com ,",
    ],
)
def test_protected_users_separated_by_semicolons_spaces_or_newlines_protect_every_entry(raw: str) -> None:
    assert load_settings({"PROTECTED_USERS": raw}).protected_users == set(BREAK_GLASS)


@pytest.mark.parametrize(
    "entry",
    [
        '"bg2@contoso.com"',
        "'bg2@contoso.com'",
        "['bg2@contoso.com']",
        '["bg2@contoso.com"]',
        "{6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b}",
        "bg2",  # a display name or alias protects nobody either
    ],
)
def test_a_protected_users_entry_that_is_no_user_identifier_makes_the_configuration_invalid(entry: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"PROTECTED_USERS": f"bg1@contoso.com, {entry}"})
    error = caught.value
    assert error.setting == "PROTECTED_USERS"
    assert error.public == "PROTECTED_USERS entry 2 is neither a user principal name nor an object id"
    assert "bg1" not in error.public and "bg2" not in error.public and "6f3e" not in error.public
    assert repr(entry) in str(error)  # the log line quotes it


def test_no_protected_users_is_allowed_with_the_managed_identity() -> None:
    assert load_settings({"PROTECTED_USERS": " ;, "}).protected_users == frozenset()


@pytest.mark.parametrize("credential", ["azure_cli", "azd", "1"])
def test_a_developer_credential_without_protected_users_is_refused(credential: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"LOCAL_DEV_CREDENTIAL": credential, "PROTECTED_USERS": " "})
    assert caught.value.setting == "PROTECTED_USERS"
    assert "real-tenant mode needs break-glass accounts in PROTECTED_USERS" in str(caught.value)
    settings = load_settings({"LOCAL_DEV_CREDENTIAL": credential, "PROTECTED_USERS": "bg1@contoso.com"})
    assert settings.protected_users == {"bg1@contoso.com"}


@pytest.mark.parametrize(
    ("name", "value"), [("RETRY_BUDGET_MINUTES", "0"), ("RETRY_BUDGET_MINUTES", "many"), ("RETRY_BASE_SECONDS", "-1")]
)
def test_bad_numbers_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def jwt(claims: dict) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"e30.{part}.sig"


def test_token_roles_are_read_from_the_claim() -> None:
    assert token_roles(jwt({"roles": ["User.Read.All", "User.RevokeSessions.All"]})) == [
        "User.Read.All",
        "User.RevokeSessions.All",
    ]
    assert token_roles(jwt({})) == []


def test_missing_revoke_permission_disables_sign_out_with_the_fix() -> None:
    report = permission_report(["User.Read.All"])
    assert report["ok"] is False
    assert report["features"]["signOut"] == {
        "available": False,
        "requires": "User.RevokeSessions.All",
        "fix": "grant the managed identity the Microsoft Graph application permission User.RevokeSessions.All "
        "and admin-consent it",
    }


def test_least_privilege_set_is_healthy_and_broad_grants_are_flagged() -> None:
    assert permission_report(["User.RevokeSessions.All", "User.Read.All", "GroupMember.Read.All"]) == {
        "ok": True,
        "granted": ["GroupMember.Read.All", "User.Read.All", "User.RevokeSessions.All"],
        "features": {
            "signOut": {"available": True, "requires": "User.RevokeSessions.All"},
            "resolveAndVerifyUsers": {"available": True, "requires": "User.Read.All"},
            "bulkByGroup": {"available": True, "requires": "GroupMember.Read.All"},
        },
    }
    assert "User.ReadWrite.All" in permission_report(["User.ReadWrite.All"])["warning"]


@pytest.mark.parametrize(
    "params",
    [
        {"top": "0"},
        {"top": "101"},
        {"top": "x"},
        {"status": "done"},
        {"since": "yesterday"},
        {"user": "a/b"},
        {"continuationToken": "bad!"},
        {"filter": "x"},
    ],
)
def test_log_query_rejects_bad_parameters(params: dict) -> None:
    with pytest.raises(ProblemError) as caught:
        parse_log_query(params)
    assert caught.value.status == 400
