"""Fixtures of the fast tier: the in-memory ports of tests/fakes.py, and a user Graph knows."""

from __future__ import annotations

import pytest

from shared.domain.identifiers import UserRef, parse_user
from tests.fakes import FakeRuntime, FakeUser, fake_runtime


@pytest.fixture
def rt() -> FakeRuntime:
    """Every port in memory, `Settings()` defaults; tests needing other settings call `fake_runtime(...)`."""
    return fake_runtime()


@pytest.fixture
def alice(rt: FakeRuntime) -> FakeUser:
    return rt.graph.add_user("alice@contoso.com")


@pytest.fixture
def alice_ref(alice: FakeUser) -> UserRef:
    """Alice as a caller names her (by UPN)."""
    return parse_user(alice.upn)
