"""Test tiers: every test gets exactly one tier marker, from the directory it lives in.

`make unit` runs `-m unit` (the fast tier), `make test` runs every tier. A test file may also name
its tier itself (`pytestmark = pytest.mark.integration`); it must then be its directory's.
Unit tests reach no network, not even loopback: what needs a socket belongs to another tier.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import NoReturn

import pytest

TESTS = Path(__file__).resolve().parent
# First directory below tests/ -> its tier marker (each declared in pyproject.toml).
TIERS = {name: name for name in ("unit", "integration", "devhost", "tools", "fuzz", "infra", "browser")}


def tier_of(path: Path) -> str:
    """The tier of a test file, from its first directory below tests/."""
    try:
        parts = path.resolve().relative_to(TESTS).parts
    except ValueError:
        parts = ()
    if len(parts) < 2 or parts[0] not in TIERS:
        raise pytest.UsageError(f"{path}: tests live in a tier's directory, tests/{{{','.join(TIERS)}}}/")
    return TIERS[parts[0]]


def check_declared(nodeid: str, tier: str, declared: set[str]) -> None:
    """A tier a test names itself must be its directory's: one test, one tier."""
    if declared - {tier}:
        raise pytest.UsageError(f"{nodeid} is in the {tier} tier (its directory) but is marked {', '.join(sorted(declared))}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = tier_of(item.path)
        check_declared(item.nodeid, tier, {mark.name for mark in item.iter_markers() if mark.name in TIERS.values()})
        if item.get_closest_marker(tier) is None:
            item.add_marker(tier)


def _no_network(*_args: object, **_kwargs: object) -> NoReturn:
    # Not an OSError: code under test must not mistake it for a refused connection and retry.
    raise RuntimeError("a unit test opened a network connection: move it to a tier that runs services")


@pytest.fixture(autouse=True)
def _unit_tests_reach_no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("unit") is not None:
        monkeypatch.setattr(socket.socket, "connect", _no_network)
        monkeypatch.setattr(socket.socket, "connect_ex", _no_network)
