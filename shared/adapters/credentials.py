"""Credential policy in one place.

In Azure the Function App's managed identity is used (user-assigned when AZURE_CLIENT_ID is
set). Locally the very same ManagedIdentityCredential talks to the loopback identity endpoint.
Developer credentials for a real tenant are opt-in (LOCAL_DEV_CREDENTIAL), never a fallback, and
need the tenant's break-glass accounts in PROTECTED_USERS (enforced by `load_settings`, which every
use case runs before it asks for a credential).
"""

from __future__ import annotations

import os

from azure.core.credentials_async import AsyncTokenCredential

from shared.settings import SettingsError


def create_credential() -> AsyncTokenCredential:
    developer = os.environ.get("LOCAL_DEV_CREDENTIAL", "").strip().lower()
    if developer:
        return _developer_credential(developer)
    if not (os.environ.get("IDENTITY_ENDPOINT") and os.environ.get("IDENTITY_HEADER")):
        # Without them ManagedIdentityCredential would probe the instance-metadata address;
        # Functions always sets both, so their absence means a misconfigured local run.
        raise SettingsError(
            "IDENTITY_ENDPOINT and IDENTITY_HEADER are not set: run inside Azure Functions, "
            "use `make run` (local identity endpoint), or opt in to a real tenant with LOCAL_DEV_CREDENTIAL=azure_cli "
            "and its break-glass accounts in PROTECTED_USERS"
        )
    from azure.identity.aio import ManagedIdentityCredential

    client_id = os.environ.get("AZURE_CLIENT_ID", "").strip() or None
    return ManagedIdentityCredential(client_id=client_id)


def _developer_credential(kind: str) -> AsyncTokenCredential:
    from azure.identity.aio import AzureCliCredential, AzureDeveloperCliCredential

    if kind == "azure_cli":
        return AzureCliCredential()
    if kind == "azd":
        return AzureDeveloperCliCredential()
    raise SettingsError(f"LOCAL_DEV_CREDENTIAL must be one of ['azd', 'azure_cli'], got {kind!r}", setting="LOCAL_DEV_CREDENTIAL")
