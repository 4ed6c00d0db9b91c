"""Fixtures: the identity endpoint and the Graph simulator in-process on free loopback ports,
plus the real azure-identity and msgraph-sdk clients pointed at them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from azure.identity.aio import ManagedIdentityCredential
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory

from tools import graph_sim, identity_endpoint

# Anything that could send azure-identity somewhere other than the local endpoint.
FOREIGN_IDENTITY_ENV = (
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "IDENTITY_SERVER_THUMBPRINT",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
)


@pytest.fixture(autouse=True)
def no_cloud_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before anything else: any credential built in a test talks App Service protocol to a dead
    loopback port unless the identity fixture points it at the live endpoint. Never 169.254.169.254."""
    for name in FOREIGN_IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "no-live-identity-endpoint")


@pytest.fixture
def signing_key() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Running:
    server: TestServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@dataclass
class Identity(Running):
    header: str

    @property
    def token_url(self) -> str:
        return f"{self.url}{identity_endpoint.TOKEN_PATH}"


@dataclass
class Graph(Running):
    sim: graph_sim.Simulator

    @property
    def scope(self) -> str:
        return f"{self.url}/.default"


@pytest_asyncio.fixture
async def identity(signing_key: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Identity]:
    header = secrets.token_urlsafe(16)
    settings = identity_endpoint.IdentitySettings(identity_header=header, signing_key=signing_key)
    server = TestServer(identity_endpoint.build_app(settings), host="127.0.0.1")
    await server.start_server()
    running = Identity(server, header)
    monkeypatch.setenv("IDENTITY_ENDPOINT", running.token_url)
    monkeypatch.setenv("IDENTITY_HEADER", header)
    yield running
    await server.close()


@pytest.fixture
def sim_settings(signing_key: str) -> graph_sim.SimSettings:
    return graph_sim.SimSettings(signing_key=signing_key, generated_users=7)


@pytest_asyncio.fixture
async def graph(sim_settings: graph_sim.SimSettings) -> AsyncIterator[Graph]:
    app = graph_sim.build_app(sim_settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Graph(server, app[graph_sim.SIM])
    await server.close()


@pytest_asyncio.fixture
async def credential(identity: Identity) -> AsyncIterator[ManagedIdentityCredential]:
    # `identity` has already pointed IDENTITY_ENDPOINT/IDENTITY_HEADER at the live endpoint.
    async with ManagedIdentityCredential() as cred:
        yield cred


@pytest_asyncio.fixture
async def token(credential: ManagedIdentityCredential, graph: Graph) -> str:
    return (await credential.get_token(graph.scope)).token


@pytest_asyncio.fixture
async def http(graph: Graph, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx to the simulator with a real token from the identity endpoint."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=graph.url, headers=headers, timeout=60) as client:
        yield client


@pytest_asyncio.fixture
async def control(graph: Graph) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator's /_sim control API."""
    async with httpx.AsyncClient(base_url=graph.url, timeout=60) as client:
        yield client


@pytest_asyncio.fixture
async def graph_client(credential: ManagedIdentityCredential, graph: Graph) -> AsyncIterator[GraphServiceClient]:
    """msgraph-sdk wired exactly as the function app wires it."""
    http_client = httpx.AsyncClient(timeout=httpx.Timeout(60))
    transport = GraphClientFactory.create_with_default_middleware(client=http_client)
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[graph.scope], allowed_hosts=["127.0.0.1"])
    adapter = GraphRequestAdapter(auth, client=transport)
    adapter.base_url = f"{graph.url}/v1.0"
    yield GraphServiceClient(request_adapter=adapter)
    await http_client.aclose()
