"""Fixtures for the infrastructure tests (helpers: infra_helpers.py)."""

from __future__ import annotations

from typing import Any

import pytest
from infra_helpers import body, one_resource, parse, variable


@pytest.fixture(scope="session")
def main_bicep() -> dict[str, Any]:
    return parse("main.bicep")


@pytest.fixture(scope="session")
def function_bicep() -> dict[str, Any]:
    return parse("app/function.bicep")


@pytest.fixture(scope="session")
def storage_bicep() -> dict[str, Any]:
    return parse("app/storage.bicep")


@pytest.fixture(scope="session")
def app_settings(function_bicep) -> dict[str, Any]:
    """name -> value expression of every app setting of the Function App."""
    _, site = one_resource(function_bicep, "Microsoft.Web/sites")
    declared = body(site)["properties"]["siteConfig"]["appSettings"]
    # The site takes them from the `appSettings` variable (one list, easy to review).
    assert declared == "appSettings"
    settings = variable(function_bicep, "appSettings")
    names = [entry["name"] for entry in settings]
    assert len(names) == len(set(names)), "duplicate app setting"
    return {entry["name"]: entry["value"] for entry in settings}
