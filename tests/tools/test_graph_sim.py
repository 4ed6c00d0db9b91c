"""The Graph simulator, driven by the real msgraph-sdk client and by plain httpx."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.groups.item.transitive_members.graph_user.graph_user_request_builder import GraphUserRequestBuilder
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from tools import graph_sim
from tools.local_tokens import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, issue_token

ROOT = Path(__file__).resolve().parents[2]
ADELE = "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
ADELE_UPN = "adele.vance@contoso.com"
GUEST_UPN = "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com"
REVOKE = f"/v1.0/users/{ADELE}/revokeSignInSessions"


def mint(graph, signing_key: str, roles: list[str], **claims) -> dict[str, str]:
    """Authorization header for a hand-made token (for permission and validation cases)."""
    token, _ = issue_token(signing_key, audience=claims.pop("audience", graph.url), roles=roles, **claims)
    return {"Authorization": f"Bearer {token}"}


async def log(control: httpx.AsyncClient) -> list[dict]:
    return (await control.get("/_sim/requests")).json()["requests"]


def assert_graph_error(response: httpx.Response, status: int, code: str) -> dict:
    """Graph's error shape, with innerError ids matching the response headers."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json;odata.metadata=minimal")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    inner = error["innerError"]
    assert inner["request-id"] == response.headers["request-id"]
    assert inner["client-request-id"] == response.headers["client-request-id"]
    assert datetime.strptime(inner["date"], "%Y-%m-%dT%H:%M:%S")  # noqa: DTZ007 - the format only
    return error


# ------------------------------------------------------------------ the real msgraph-sdk client


async def test_msgraph_client_revokes_through_the_simulator(graph_client, control) -> None:
    before = datetime.now(UTC).replace(microsecond=0)  # the simulator keeps whole seconds
    result = await graph_client.users.by_user_id(ADELE_UPN).revoke_sign_in_sessions.post()
    after = datetime.now(UTC)

    assert result.value is True
    state = (await control.get(f"/_sim/users/{ADELE_UPN}")).json()
    assert state["revokeCount"] == 1
    valid_from = datetime.strptime(state["signInSessionsValidFromDateTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= valid_from <= after  # the moment of the revocation, however long the call took
    [entry] = await log(control)
    assert (entry["method"], entry["status"]) == ("POST", 200)
    assert entry["path"] == "/v1.0/users/adele.vance%40contoso.com/revokeSignInSessions"  # one slash, @ encoded
    # msgraph-core adds client-request-id only for graph.microsoft.com hosts: the app must send its own.
    assert entry["authorization"] is True and "kiota" in entry["User-Agent"]


@pytest.mark.parametrize("key", [ADELE, ADELE.upper(), ADELE_UPN, "Adele.Vance@CONTOSO.com"])
async def test_msgraph_client_gets_user_by_id_or_upn(graph_client, key) -> None:
    select = ["id", "userType", "signInSessionsValidFromDateTime"]
    query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=select)
    user = await graph_client.users.by_user_id(key).get(RequestConfiguration(query_parameters=query))
    assert (user.id, user.user_type) == (ADELE, "Member")
    assert user.sign_in_sessions_valid_from_date_time == datetime(2024, 1, 1, tzinfo=UTC)


async def test_msgraph_client_gets_guest_and_path_stays_percent_encoded(graph_client, control) -> None:
    user = await graph_client.users.by_user_id(GUEST_UPN).get()
    assert user.user_principal_name == GUEST_UPN and user.mail == "alex@fabrikam.com"
    [entry] = await log(control)
    assert entry["path"] == "/v1.0/users/alex_fabrikam.com%23EXT%23%40contoso.onmicrosoft.com"


async def test_msgraph_client_sees_graph_errors(graph_client) -> None:
    with pytest.raises(ODataError) as caught:
        await graph_client.users.by_user_id("nobody@contoso.com").get()
    assert caught.value.response_status_code == 404
    assert caught.value.error.code == "Request_ResourceNotFound"


async def test_msgraph_client_pages_users_via_next_link(graph_client, graph) -> None:
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(top=3, select=["id", "userPrincipalName"])
    page = await graph_client.users.get(RequestConfiguration(query_parameters=query))
    ids = [user.id for user in page.value]
    while page.odata_next_link:
        assert page.odata_next_link.startswith(f"{graph.url}/v1.0/users?")
        page = await graph_client.users.with_url(page.odata_next_link).get()
        assert all(user.display_name is None for user in page.value)  # $select survives paging
        ids += [user.id for user in page.value]
    assert len(ids) == 5 + 7 and ids == sorted(set(ids))  # seeded + generated, each once, stable order


async def test_msgraph_client_pages_transitive_user_members(graph_client) -> None:
    query = GraphUserRequestBuilder.GraphUserRequestBuilderGetQueryParameters(top=1, select=["id", "userPrincipalName"])
    members = graph_client.groups.by_group_id(graph_sim.SEED_GROUP_ID).transitive_members.graph_user
    page = await members.get(RequestConfiguration(query_parameters=query))
    upns = [user.user_principal_name for user in page.value]
    while page.odata_next_link:
        page = await members.with_url(page.odata_next_link).get()
        upns += [user.user_principal_name for user in page.value]
    assert sorted(upns) == sorted([ADELE_UPN, "megan.bowen@contoso.com", GUEST_UPN])  # nested group included


# ------------------------------------------------------------------ users over plain httpx


async def test_select_is_honoured_and_defaults_are_graphs(http) -> None:
    selected = (await http.get(f"/v1.0/users/{ADELE}", params={"$select": "displayName,accountEnabled"})).json()
    assert selected == {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(displayName,accountEnabled)/$entity",
        "displayName": "Adele Vance",
        "accountEnabled": True,
    }
    default = (await http.get(f"/v1.0/users/{ADELE}")).json()
    assert "userType" not in default and "signInSessionsValidFromDateTime" not in default  # not default properties
    assert default["businessPhones"] == [] and default["userPrincipalName"] == ADELE_UPN


async def test_success_headers_are_graphs(http) -> None:
    response = await http.get(f"/v1.0/users/{ADELE}", headers={"client-request-id": "my-correlation"})
    headers = response.headers
    assert headers["client-request-id"] == "my-correlation" and headers["request-id"] != "my-correlation"
    assert headers["Content-Type"].startswith("application/json;odata.metadata=minimal")
    assert headers["Date"] and '"ServerInfo"' in headers["x-ms-ags-diagnostic"]


async def test_not_found_and_malformed_ids(http) -> None:
    error = assert_graph_error(await http.get("/v1.0/users/nobody%40contoso.com"), 404, "Request_ResourceNotFound")
    assert error["message"] == (
        "Resource 'nobody@contoso.com' does not exist or one of its queried reference-property objects are not present."
    )
    # Decoded exactly once: a double-encoded @ is not an @.
    assert_graph_error(await http.get("/v1.0/users/adele.vance%2540contoso.com"), 404, "Request_ResourceNotFound")
    error = assert_graph_error(await http.get("/v1.0/users/a%2Fb"), 400, "Request_BadRequest")
    assert error["message"] == "Invalid object identifier 'a/b'."
    assert_graph_error(await http.post("/v1.0/users//revokeSignInSessions"), 400, "Request_BadRequest")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1.0//users", 400, "BadRequest"),
        ("GET", "//v1.0/users", 400, "BadRequest"),
        ("GET", "/v1.0/me", 400, "BadRequest"),
        ("GET", "/users/" + ADELE, 400, "BadRequest"),
        ("GET", "/beta/users", 400, "BadRequest"),
        ("GET", f"/v1.0/users/{ADELE}/revokeSignInSessions", 405, "Request_BadRequest"),
        ("POST", f"/v1.0/users/{ADELE}/revokeSessions", 400, "BadRequest"),
        ("GET", "/v1.0/groups/not-a-guid/transitiveMembers", 400, "Request_BadRequest"),
        ("GET", "/v1.0/groups/11111111-1111-4111-8111-111111111111/transitiveMembers", 404, "Request_ResourceNotFound"),
        ("GET", "/v1.0/users?$top=1000", 400, "Request_BadRequest"),
        ("GET", "/v1.0/users?$top=0", 400, "Request_BadRequest"),
        ("GET", "/v1.0/users?$filter=userType eq 'Guest'", 400, "Request_UnsupportedQuery"),
        ("GET", f"/v1.0/users/{ADELE}?$select=id,favouriteColour", 400, "Request_BadRequest"),
        ("GET", "/v1.0/users?$skiptoken=forged", 400, "Directory_ExpiredPageToken"),
    ],
)
async def test_wrong_requests_get_graph_errors(http, method, path, status, code) -> None:
    assert_graph_error(await http.request(method, path), status, code)


async def test_revoke_response_and_headers(http, control) -> None:
    response = await http.post(REVOKE)
    assert response.json() == {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": True}
    assert response.headers["x-ms-resource-unit"] == "1"
    user = (await http.get(f"/v1.0/users/{ADELE}", params={"$select": "signInSessionsValidFromDateTime"})).json()
    assert user["signInSessionsValidFromDateTime"].endswith("Z") and "." not in user["signInSessionsValidFromDateTime"]
    assert user["signInSessionsValidFromDateTime"] > "2024-01-01T00:00:00Z"
    stats = (await control.get("/_sim/stats")).json()
    assert (stats["writes"], stats["revocations"], stats["status"]) == (1, 1, {"200": 2})


async def test_list_users_next_link_is_absolute_and_opaque(http, graph) -> None:
    body = (await http.get("/v1.0/users", params={"$top": "4", "$select": "id"})).json()
    assert body["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#users(id)"
    link = urlsplit(body["@odata.nextLink"])
    assert f"{link.scheme}://{link.netloc}" == graph.url and link.path == "/v1.0/users"
    assert set(parse_qs(link.query)) == {"$top", "$select", "$skiptoken"}
    assert [set(user) for user in body["value"]] == [{"id"}] * 4


async def test_transitive_members_of_all_types_carry_odata_type(http) -> None:
    path = f"/v1.0/groups/{graph_sim.SEED_GROUP_ID}/transitiveMembers"
    body = (await http.get(path, params={"$select": "id,displayName"})).json()
    types = sorted(member["@odata.type"] for member in body["value"])
    assert types == ["#microsoft.graph.group"] + ["#microsoft.graph.user"] * 3
    fully_qualified = await http.get(f"/v1.0/groups/{graph_sim.SEED_GROUP_ID}/transitiveMembers/microsoft.graph.user")
    assert len(fully_qualified.json()["value"]) == 3


# ------------------------------------------------------------------ authentication & permissions


@pytest.mark.parametrize(
    ("make_headers", "message"),
    [
        (lambda graph, key: {}, "Access token is empty."),
        (lambda graph, key: {"Authorization": "Bearer"}, "Access token is empty."),
        (lambda graph, key: mint(graph, "another-key-another-key-another-key", ["User.Read.All"]), "validation fail"),
        (lambda graph, key: mint(graph, key, ["User.Read.All"], audience="https://graph.microsoft.com"), "validation fail"),
        (lambda graph, key: mint(graph, key, ["User.Read.All"], now=int(time.time()) - 7200), "validation fail"),
    ],
)
async def test_bad_tokens_are_401(graph, signing_key, make_headers, message) -> None:
    async with httpx.AsyncClient(base_url=graph.url) as client:
        response = await client.get(f"/v1.0/users/{ADELE}", headers=make_headers(graph, signing_key))
    error = assert_graph_error(response, 401, "InvalidAuthenticationToken")
    assert message in error["message"] and response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("roles", "method", "path"),
    [
        (["User.Read.All", "GroupMember.Read.All"], "POST", REVOKE),
        (["User.RevokeSessions.All"], "GET", f"/v1.0/users/{ADELE}"),
        (["User.Read.All"], "GET", f"/v1.0/groups/{graph_sim.SEED_GROUP_ID}/transitiveMembers"),
    ],
)
async def test_missing_permissions_are_403(graph, signing_key, control, roles, method, path) -> None:
    async with httpx.AsyncClient(base_url=graph.url, headers=mint(graph, signing_key, roles)) as client:
        response = await client.request(method, path)
    error = assert_graph_error(response, 403, "Authorization_RequestDenied")
    assert error["message"] == "Insufficient privileges to complete the operation."
    assert (await control.get(f"/_sim/users/{ADELE}")).json()["revokeCount"] == 0


@pytest.mark.parametrize("role", ["User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"])
async def test_any_sufficient_role_may_revoke(graph, signing_key, role) -> None:
    async with httpx.AsyncClient(base_url=graph.url, headers=mint(graph, signing_key, [role])) as client:
        assert (await client.post(REVOKE)).status_code == 200


# ------------------------------------------------------------------ write quota


async def test_write_quota_throttles_with_graph_headers(http, control) -> None:
    await control.post("/_sim/config", json={"write_quota": "5/3600"})  # no refill worth a percent while this runs
    responses = [await http.post(REVOKE) for _ in range(6)]

    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert [r.headers.get("x-ms-throttle-limit-percentage") for r in responses[:5]] == [None, None, None, "0.80", "1.00"]
    throttled = responses[5]
    assert_graph_error(throttled, 429, "TooManyRequests")
    assert throttled.json()["error"]["message"] == "Too many requests."
    assert 1 <= int(throttled.headers["Retry-After"]) <= 720  # one write refills every 720 s
    assert throttled.headers["x-ms-throttle-scope"] == f"Tenant_Application/Write/{DEFAULT_CLIENT_ID}/{DEFAULT_TENANT_ID}"
    assert throttled.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
    assert "x-ms-resource-unit" not in throttled.headers
    assert (await control.get(f"/_sim/users/{ADELE}")).json()["revokeCount"] == 5  # the throttled one wasn't done
    stats = (await control.get("/_sim/stats")).json()
    assert (stats["throttled"], stats["revocations"], stats["status"]["429"]) == (1, 5, 1)


async def test_write_quota_is_per_app_and_reads_are_free(graph, signing_key, http, control) -> None:
    await control.post("/_sim/config", json={"write_quota": "1/60"})
    assert (await http.post(REVOKE)).status_code == 200
    assert (await http.post(REVOKE)).status_code == 429
    assert (await http.get(f"/v1.0/users/{ADELE}")).status_code == 200
    other_app = mint(graph, signing_key, ["User.RevokeSessions.All"], client_id="22222222-0000-4000-8000-000000000000")
    assert (await http.post(REVOKE, headers=other_app)).status_code == 200


async def test_write_quota_refills(http, control) -> None:
    await control.post("/_sim/config", json={"write_quota": "3/9"})  # a write every 3 s
    responses = [await http.post(REVOKE) for _ in range(4)]
    assert responses[-1].status_code == 429
    await asyncio.sleep(int(responses[-1].headers["Retry-After"]))  # as told: a write has refilled by then
    assert (await http.post(REVOKE)).status_code == 200


# ------------------------------------------------------------------ faults, latency, request log


async def test_status_fault_with_retry_after_then_expires(http, control) -> None:
    rule = {
        "method": "POST",
        "user": ADELE_UPN,
        "action": "status",
        "status": 503,
        "code": "ServiceUnavailable",
        "headers": {"Retry-After": "1"},
        "count": 1,
    }
    assert (await control.post("/_sim/faults", json=[rule])).status_code == 200
    assert (await http.get(f"/v1.0/users/{ADELE}")).status_code == 200  # GET doesn't match the rule
    faulted = await http.post(REVOKE)  # the request names the user by id, the rule by UPN
    assert_graph_error(faulted, 503, "ServiceUnavailable")
    assert faulted.headers["Retry-After"] == "1"
    assert (await http.post(REVOKE)).status_code == 200  # count exhausted
    assert (await control.get("/_sim/faults")).json() == {"faults": []}
    assert [entry["fault"] for entry in await log(control)] == [None, "status", None]


async def test_reset_fault_drops_the_connection(http, control) -> None:
    await control.post("/_sim/faults", json=[{"path_contains": "revokeSignInSessions", "action": "reset"}])
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await http.post(REVOKE)
    assert (await control.get(f"/_sim/users/{ADELE}")).json()["revokeCount"] == 0
    [entry] = await log(control)
    assert (entry["fault"], entry["status"]) == ("reset", None)


async def test_timeout_fault_holds_until_the_client_gives_up(http, control) -> None:
    await control.post("/_sim/faults", json={"user": ADELE, "action": "timeout"})
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):  # the simulator held the request until the client gave up
        await http.post(REVOKE, timeout=0.3)
    assert time.monotonic() - started >= 0.3
    await control.delete("/_sim/faults")  # releases anything still held
    assert (await http.post(REVOKE)).status_code == 200


async def test_fault_rules_are_validated(control) -> None:
    for rule in ({"action": "explode"}, {"count": 0}, {"status": 200}, {"paths": "x"}, "status"):
        assert (await control.post("/_sim/faults", json=[rule])).status_code == 400


async def test_latency_applies_to_graph_requests(http, control) -> None:
    await control.post("/_sim/config", json={"latency_ms": 150})
    started = time.monotonic()
    await http.get(f"/v1.0/users/{ADELE}")
    assert time.monotonic() - started >= 0.15


async def test_request_log_records_raw_requests(http, control) -> None:
    headers = {"client-request-id": "task-1", "x-ms-throttle-priority": "high", "User-Agent": "signout-tests"}
    await http.get("/v1.0/users/alex_fabrikam.com%23EXT%23%40contoso.onmicrosoft.com?%24select=id", headers=headers)
    [entry] = await log(control)
    assert entry["path"] == "/v1.0/users/alex_fabrikam.com%23EXT%23%40contoso.onmicrosoft.com"
    assert entry["query"] == "%24select=id"
    assert [entry[name] for name in headers] == ["task-1", "high", "signout-tests"]
    assert entry["status"] == 200 and entry["request-id"] and entry["timestamp"].endswith("Z")
    await control.delete("/_sim/requests")
    assert await log(control) == []


# ------------------------------------------------------------------ control API & directory


async def test_control_api_users_groups_and_reset(http, control) -> None:
    guest = {"userPrincipalName": "kim_partner.example#EXT#@contoso.onmicrosoft.com", "displayName": "Kim"}
    added = (await control.post("/_sim/users", json=[guest])).json()["users"][0]
    assert (added["userType"], added["mail"], added["revokeCount"]) == ("Guest", "kim@partner.example", 0)
    inner = {"id": "aaaaaaaa-0000-4000-8000-000000000001", "members": [added["id"]]}
    outer = {"id": "aaaaaaaa-0000-4000-8000-000000000002", "members": [ADELE_UPN, inner["id"]]}
    assert (await control.post("/_sim/groups", json=[inner, outer])).status_code == 200
    members = (await http.get(f"/v1.0/groups/{outer['id']}/transitiveMembers/graph.user", params={"$select": "id"})).json()
    assert {m["id"] for m in members["value"]} == {ADELE, added["id"]}
    assert (await control.post("/_sim/groups", json={"id": outer["id"], "members": ["ghost@contoso.com"]})).status_code == 400
    assert (await control.post("/_sim/users", json={"userPrincipalName": "user000001@contoso.com"})).status_code == 400

    await control.post("/_sim/reset")
    assert (await control.get(f"/_sim/users/{added['id']}")).status_code == 404


async def test_replacing_a_user_moves_its_upn(http, control) -> None:
    user = {"id": "bbbbbbbb-0000-4000-8000-000000000001", "userPrincipalName": "old@contoso.com"}
    await control.post("/_sim/users", json=user)
    await control.post("/_sim/users", json={**user, "userPrincipalName": "new@contoso.com"})
    assert (await http.get("/v1.0/users/old%40contoso.com")).status_code == 404
    assert (await http.get("/v1.0/users/new%40contoso.com")).json()["id"] == user["id"]


def test_generated_directory_is_virtual() -> None:
    """100,000 users answered without building them (a speed target would belong in bench/)."""
    directory = graph_sim.Directory(generated=100_000)
    last = directory.find_user("USER099999@contoso.com")
    assert last is not None and directory.find_user(last.id.upper()) == last
    assert directory.find_user("user100000@contoso.com") is None and directory.find_user("user1@contoso.com") is None
    everyone, after = 0, ""
    while page := directory.users_after(after, 999):
        everyone, after = everyone + len(page), page[-1].id
    assert everyone == 100_000 + len(graph_sim.SEED_USERS)

    last.revokeCount, last.validFrom = 1, 1_800_000_000
    directory.save(last)
    assert directory.find_user(last.id).revokeCount == 1 and len(directory._users) == len(graph_sim.SEED_USERS)


def test_settings_come_from_the_environment() -> None:
    with pytest.raises(ValueError, match="LOCAL_TOKEN_SIGNING_KEY"):
        graph_sim.SimSettings.from_env({})
    settings = graph_sim.SimSettings.from_env(
        {
            "LOCAL_TOKEN_SIGNING_KEY": "k",
            "GRAPH_SIM_USERS": "100000",
            "GRAPH_SIM_LATENCY_MS": "5",
            "GRAPH_SIM_WRITE_QUOTA": "3000/150",
        }
    )
    assert (settings.generated_users, settings.latency_ms, settings.write_quota) == (100_000, 5, graph_sim.WriteQuota(3000, 150))


def test_command_line_serves_until_sigterm(signing_key) -> None:
    env = {**os.environ, "LOCAL_TOKEN_SIGNING_KEY": signing_key, "GRAPH_SIM_USERS": "100000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.graph_sim", "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        url = process.stdout.readline().split()[-1]  # "graph simulator listening on http://127.0.0.1:PORT"
        token, _ = issue_token(signing_key, audience=url, roles=["User.Read.All"])
        response = httpx.get(f"{url}/v1.0/users/user099999%40contoso.com", headers={"Authorization": f"Bearer {token}"})
        assert response.json()["id"] == graph_sim.generated_id(99_999)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


# ------------------------------------------------------------------ $count (advanced queries)

EVENTUAL = {"ConsistencyLevel": "eventual"}
GROUP_COUNT = f"/v1.0/groups/{graph_sim.SEED_GROUP_ID}/transitiveMembers/microsoft.graph.user/$count"


async def test_msgraph_client_counts_users_and_group_members_with_consistency_level(graph_client) -> None:
    config: RequestConfiguration = RequestConfiguration()
    config.headers.add("ConsistencyLevel", "eventual")
    assert await graph_client.users.count.get(request_configuration=config) == 5 + 7  # seeded + generated
    members = graph_client.groups.by_group_id(graph_sim.SEED_GROUP_ID).transitive_members.graph_user
    assert await members.count.get(request_configuration=config) == 3  # Adele, Megan, and the nested group's guest


@pytest.mark.parametrize("path", ["/v1.0/users/$count", GROUP_COUNT, GROUP_COUNT.replace("microsoft.graph.user", "graph.user")])
async def test_count_is_text_and_needs_consistency_level_eventual_as_in_graph(http, path) -> None:
    error = assert_graph_error(await http.get(path), 400, "Request_BadRequest")
    assert error["message"] == "$count is not currently supported."  # Graph's documented answer
    response = await http.get(path, headers=EVENTUAL)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    assert int(response.text) in (3, 12)


@pytest.mark.parametrize(
    ("path", "odata_filter", "expected"),
    [
        ("/v1.0/users/$count", "userType eq 'Guest'", 1),
        ("/v1.0/users/$count", f"id in ('{ADELE}', '00000000-5100-4000-8000-000000000002', 'a-missing-id')", 2),
        (GROUP_COUNT, "userType eq 'Guest'", 1),
        (GROUP_COUNT, f"id in ('{ADELE}', '00000000-5100-4000-8000-000000000002')", 1),  # a generated user is no member
    ],
)
async def test_count_takes_the_filters_the_service_sends(http, path, odata_filter, expected) -> None:
    response = await http.get(path, params={"$filter": odata_filter}, headers=EVENTUAL)
    assert (response.status_code, response.text) == (200, str(expected))


async def test_count_refuses_other_filters_and_unknown_groups(http) -> None:
    unsupported = await http.get("/v1.0/users/$count", params={"$filter": "accountEnabled eq false"}, headers=EVENTUAL)
    assert_graph_error(unsupported, 400, "Request_UnsupportedQuery")
    unknown = "/v1.0/groups/11111111-1111-4111-8111-111111111111/transitiveMembers/microsoft.graph.user/$count"
    assert_graph_error(await http.get(unknown, headers=EVENTUAL), 404, "Request_ResourceNotFound")
    assert_graph_error(await http.post("/v1.0/users/$count", headers=EVENTUAL), 405, "Request_BadRequest")


async def test_the_service_s_graph_gateway_counts_through_the_simulator(graph_client, credential, graph, control) -> None:
    """shared/adapters/graph.py as the app runs it: one $count call per figure, no enumeration."""
    from shared.adapters.graph import GraphGateway
    from shared.domain.directory import GraphError

    gateway = GraphGateway(graph_client, 60, credential, graph.scope)
    group = graph_sim.SEED_GROUP_ID
    assert (await gateway.count_users(None, "req-1")).value == 12
    assert (await gateway.count_users(group, "req-2")).value == 3
    assert (await gateway.count_users(None, "req-3", guests=True)).value == 1
    assert (await gateway.count_users(group, "req-4", guests=True)).value == 1
    many = frozenset({ADELE, *(f"00000000-5100-4000-8000-{index:012x}" for index in range(20))})  # 21 ids: two filters
    assert (await gateway.count_users(None, "req-5", among=many)).value == 1 + 7
    assert (await gateway.count_users(group, "req-6", among=frozenset())).value == 0  # nothing to ask
    entries = await log(control)
    assert [entry["path"].rsplit("/", 1)[-1] for entry in entries] == ["$count"] * 6
    assert {entry["x-ms-throttle-priority"] for entry in entries} == {"low"}
    with pytest.raises(GraphError, match="only object ids"):
        await gateway.count_users(None, "req-7", among=frozenset({"adele.vance@contoso.com"}))


async def test_a_fault_can_target_page_reads_and_spare_the_same_collection_s_count(http, control) -> None:
    page_reads_only = {"status": 503, "path_contains": graph_sim.SEED_GROUP_ID, "query_contains": "$top", "count": 5}
    await control.post("/_sim/faults", json=[page_reads_only])
    assert (await http.get(GROUP_COUNT, headers=EVENTUAL)).text == "3"
    page = GROUP_COUNT.removesuffix("/$count")
    assert_graph_error(await http.get(page, params={"$top": "2"}), 503, "ServiceUnavailable")
