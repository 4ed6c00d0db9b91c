"""One local stack per test worker: Azurite + identity endpoint + Graph simulator + dev host.

The stack's environment always points azure-identity at the loopback identity endpoint, so
no test can reach the instance-metadata address, Entra ID or Microsoft Graph.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.helpers import REQUEST_TIMEOUT, CallbackReceiver, Sim
from tools.local_stack import LocalStack

TEST_SETTINGS = {
    "RETRY_BUDGET_MINUTES": "0.25",  # a failing task gives up after 15 s
    "RETRY_BASE_SECONDS": "0.5",
    "GRAPH_TIMEOUT_SECONDS": "3",
    "DEVHOST_MESSAGE_LEASE_SECONDS": "5",
    "PROTECTED_USERS": "breakglass@contoso.com",
}


@pytest.fixture(scope="session")
def callbacks() -> Iterator[CallbackReceiver]:
    """An https Logic-Apps-like callback endpoint on loopback, trusted by the dev host only."""
    with CallbackReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def stack(callbacks: CallbackReceiver) -> Iterator[LocalStack]:
    with LocalStack(settings={**TEST_SETTINGS, **callbacks.stack_settings("*.logic.azure.com")}) as running:
        yield running


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=REQUEST_TIMEOUT) as client:
        yield client


@pytest.fixture(scope="session")
def sim(stack: LocalStack) -> Sim:
    return Sim(stack.sim_url)
