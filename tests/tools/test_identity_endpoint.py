"""The local managed-identity endpoint, exercised by the real azure-identity credentials."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential as SyncManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential

from tools import identity_endpoint
from tools.local_tokens import DEFAULT_CLIENT_ID, DEFAULT_PRINCIPAL_ID, DEFAULT_TENANT_ID, verify_token

ROOT = Path(__file__).resolve().parents[2]
RESOURCE = "http://127.0.0.1:8082"


def token_params(resource: str = RESOURCE, **extra: str) -> dict[str, str]:
    return {"api-version": "2019-08-01", "resource": resource, **extra}


async def test_aio_credential_gets_an_app_only_token(credential, identity, signing_key) -> None:
    before = int(time.time())
    result = await credential.get_token(f"{RESOURCE}/.default")

    claims = verify_token(result.token, signing_key, RESOURCE)
    assert claims["aud"] == RESOURCE
    assert claims["iss"] == f"https://sts.windows.net/{DEFAULT_TENANT_ID}/"
    assert (claims["tid"], claims["oid"], claims["idtyp"]) == (DEFAULT_TENANT_ID, DEFAULT_PRINCIPAL_ID, "app")
    assert claims["appid"] == claims["azp"] == DEFAULT_CLIENT_ID
    assert claims["roles"] == ["User.RevokeSessions.All", "User.Read.All", "GroupMember.Read.All"]
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"] >= before
    assert result.expires_on == claims["exp"]


async def test_sync_credential_works_too(identity, signing_key) -> None:
    # The sync client (MSAL) blocks, so it runs in a thread while the endpoint serves on this loop.
    credential = SyncManagedIdentityCredential()
    result = await asyncio.to_thread(credential.get_token, f"{RESOURCE}/.default")
    assert verify_token(result.token, signing_key, RESOURCE)["aud"] == RESOURCE


async def test_client_id_becomes_appid(identity, signing_key) -> None:
    client_id = "11111111-2222-4333-8444-555555555555"
    async with ManagedIdentityCredential(client_id=client_id) as credential:
        result = await credential.get_token(f"{RESOURCE}/.default")
    claims = verify_token(result.token, signing_key, RESOURCE)
    assert claims["appid"] == claims["azp"] == client_id
    assert claims["oid"] != DEFAULT_PRINCIPAL_ID  # a user-assigned identity is another principal


async def test_response_has_the_app_service_shape(identity) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(identity.token_url, params=token_params(), headers={"X-IDENTITY-HEADER": identity.header})
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["expires_on"].isdigit() and body["resource"] == RESOURCE and body["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, token_params(), 401),
        ({"X-IDENTITY-HEADER": "wrong"}, token_params(), 401),
        ("ok", {"api-version": "2019-08-01"}, 400),
        ("ok", token_params(**{"api-version": "2017-09-01"}), 400),
    ],
)
async def test_bad_requests_are_rejected_as_json(identity, headers, params, status) -> None:
    headers = {"X-IDENTITY-HEADER": identity.header} if headers == "ok" else headers
    async with httpx.AsyncClient() as client:
        response = await client.get(identity.token_url, params=params, headers=headers)
    assert response.status_code == status
    assert response.json()["statusCode"] == status and response.json()["message"]


async def test_credential_with_wrong_header_fails(identity, monkeypatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    async with ManagedIdentityCredential() as credential:
        with pytest.raises(ClientAuthenticationError):
            await credential.get_token(f"{RESOURCE}/.default")


async def test_roles_can_change_at_run_time(identity, signing_key) -> None:
    async with httpx.AsyncClient(base_url=identity.url, headers={"X-IDENTITY-HEADER": identity.header}) as client:
        config = await client.post("/_identity/config", json={"roles": ["User.Read.All"]})
        assert config.json()["roles"] == ["User.Read.All"]
        issued = (await client.get("/msi/token", params=token_params())).json()["access_token"]
        assert verify_token(issued, signing_key, RESOURCE)["roles"] == ["User.Read.All"]

        await client.post("/_identity/reset")
        issued = (await client.get("/msi/token", params=token_params())).json()["access_token"]
        assert "User.RevokeSessions.All" in verify_token(issued, signing_key, RESOURCE)["roles"]


async def test_fail_next_then_recovers_and_counts(identity) -> None:
    async with httpx.AsyncClient(base_url=identity.url, headers={"X-IDENTITY-HEADER": identity.header}) as client:
        await client.post("/_identity/config", json={"fail_next": 2, "fail_status": 503})
        statuses = [(await client.get("/msi/token", params=token_params())).status_code for _ in range(3)]
        stats = (await client.get("/_identity/stats")).json()
    assert statuses == [503, 503, 200]
    assert stats == {"requests": 3, "served": 1, "failed": 2}


async def test_delay_slows_every_token_response(identity) -> None:
    async with httpx.AsyncClient(base_url=identity.url, headers={"X-IDENTITY-HEADER": identity.header}) as client:
        await client.post("/_identity/config", json={"delay_ms": 200})
        started = time.monotonic()
        await client.get("/msi/token", params=token_params())
    assert time.monotonic() - started >= 0.2


async def test_config_rejects_nonsense(identity) -> None:
    async with httpx.AsyncClient(base_url=identity.url) as client:
        for body in ({"role": ["x"]}, {"fail_next": -1}, {"fail_status": 200}, {"roles": "User.Read.All"}):
            assert (await client.post("/_identity/config", json=body)).status_code == 400


def test_settings_come_from_the_environment() -> None:
    with pytest.raises(ValueError, match="IDENTITY_HEADER"):
        identity_endpoint.IdentitySettings.from_env({"LOCAL_TOKEN_SIGNING_KEY": "k"})
    settings = identity_endpoint.IdentitySettings.from_env(
        {
            "IDENTITY_HEADER": "h",
            "LOCAL_TOKEN_SIGNING_KEY": "k",
            "LOCAL_IDENTITY_ROLES": " User.Read.All, ",
            "LOCAL_TENANT_ID": "t",
            "LOCAL_TOKEN_LIFETIME_SECONDS": "60",
        }
    )
    assert (settings.roles, settings.tenant_id, settings.lifetime_seconds) == (("User.Read.All",), "t", 60)


def test_command_line_refuses_to_start_without_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("IDENTITY_HEADER", "LOCAL_TOKEN_SIGNING_KEY")}
    done = subprocess.run(
        [sys.executable, "-m", "tools.identity_endpoint", "--port", "0"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "IDENTITY_HEADER" in done.stderr


def test_command_line_serves_until_sigterm(signing_key) -> None:
    env = {**os.environ, "IDENTITY_HEADER": "h", "LOCAL_TOKEN_SIGNING_KEY": signing_key}
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.identity_endpoint", "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        url = process.stdout.readline().split()[-1]  # "... listening on http://127.0.0.1:PORT/msi/token"
        response = httpx.get(url, params=token_params(), headers={"X-IDENTITY-HEADER": "h"})
        assert jwt.decode(response.json()["access_token"], signing_key, ["HS256"], audience=RESOURCE)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
