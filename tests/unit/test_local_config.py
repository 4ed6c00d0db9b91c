"""Local runs sign out simulated users unless a real tenant is chosen explicitly, with break-glass accounts."""

import asyncio
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.identity.aio import ManagedIdentityCredential

from shared.adapters.credentials import create_credential
from shared.settings import LOOPBACK_HOSTS, load_settings
from tools import local_stack

ROOT = Path(__file__).parents[2]
TEMPLATE = json.loads((ROOT / "local.settings.json.template").read_text())["Values"]


def test_core_tools_template_points_at_the_simulator_not_a_real_tenant() -> None:
    settings = load_settings(TEMPLATE)
    assert urlsplit(settings.graph_endpoint).hostname in LOOPBACK_HOSTS
    assert "LOCAL_DEV_CREDENTIAL" not in TEMPLATE
    assert urlsplit(TEMPLATE["IDENTITY_ENDPOINT"]).hostname in LOOPBACK_HOSTS and TEMPLATE["IDENTITY_HEADER"]
    assert settings.protected_users == {"breakglass@contoso.com"}  # the simulator's break-glass account


def test_core_tools_template_sets_the_retry_budget_instead_of_max_attempts() -> None:
    assert TEMPLATE["RETRY_BUDGET_MINUTES"] == "60" and "MAX_ATTEMPTS" not in TEMPLATE


def test_core_tools_template_uses_the_managed_identity_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_DEV_CREDENTIAL", raising=False)
    for name, value in TEMPLATE.items():
        monkeypatch.setenv(name, value)
    credential = create_credential()
    try:
        assert isinstance(credential, ManagedIdentityCredential)
    finally:
        asyncio.run(credential.close())


def test_readme_starts_what_the_template_points_at() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### With Azure Functions Core Tools") : readme.index("## API")]
    graph_port, identity_port = urlsplit(TEMPLATE["GRAPH_ENDPOINT"]).port, urlsplit(TEMPLATE["IDENTITY_ENDPOINT"]).port
    assert re.search(rf"tools\.graph_sim --port {graph_port}\b", section)
    assert re.search(
        rf"IDENTITY_HEADER={TEMPLATE['IDENTITY_HEADER']} \S+ -m tools\.identity_endpoint --port {identity_port}\b", section
    )


@pytest.mark.parametrize("protected", [None, "", "  "])
def test_real_tenant_run_refuses_to_start_without_protected_users(monkeypatch: pytest.MonkeyPatch, protected: str | None) -> None:
    monkeypatch.setattr(local_stack, "LocalStack", lambda *a, **k: pytest.fail("the stack was created"))
    if protected is None:
        monkeypatch.delenv("PROTECTED_USERS", raising=False)
    else:
        monkeypatch.setenv("PROTECTED_USERS", protected)
    with pytest.raises(SystemExit) as caught:
        local_stack.main(["--real-tenant", "azure_cli"])
    assert str(caught.value) == local_stack.NO_PROTECTED_USERS
    assert "PROTECTED_USERS" in str(caught.value) and "break-glass" in str(caught.value)


def test_real_tenant_run_refuses_to_start_with_an_entry_that_protects_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_stack, "LocalStack", lambda *a, **k: pytest.fail("the stack was created"))
    monkeypatch.setenv("PROTECTED_USERS", "bg1@contoso.com; ['bg2@contoso.com']")
    with pytest.raises(SystemExit, match="PROTECTED_USERS entry 2"):
        local_stack.main(["--real-tenant", "azure_cli"])


def test_real_tenant_run_protects_the_tenants_accounts_not_the_simulators(tmp_path: Path) -> None:
    stack = local_stack.LocalStack(log_dir=tmp_path)
    protected = local_stack.check_real_tenant({"PROTECTED_USERS": "BG1@contoso.com bg2@contoso.com"})
    stack.use_real_tenant("azure_cli", "https://graph.microsoft.com", protected)
    settings = load_settings(stack.app_settings)  # what the dev host is started with
    assert settings.protected_users == {"bg1@contoso.com", "bg2@contoso.com"}
    assert "REAL TENANT" in local_stack.example(stack) and "adele.vance" not in local_stack.example(stack)
