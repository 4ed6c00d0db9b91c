"""The test tiers of tests/conftest.py: one tier per test, from its directory; unit tests reach no network."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import pytest

from tests.conftest import TESTS, TIERS, check_declared, tier_of

ROOT = TESTS.parent


@pytest.mark.parametrize("directory", sorted(TIERS))
def test_a_test_file_gets_its_directory_tier(directory: str) -> None:
    assert tier_of(TESTS / directory / "test_x.py") == TIERS[directory]
    assert tier_of(TESTS / directory / "deeper" / "test_x.py") == TIERS[directory]


@pytest.mark.parametrize("path", [TESTS / "test_x.py", TESTS / "elsewhere" / "test_x.py", ROOT / "bench" / "test_x.py"])
def test_a_test_outside_the_tier_directories_fails_collection(path: Path) -> None:
    with pytest.raises(pytest.UsageError, match="tier's directory"):
        tier_of(path)


def test_a_test_marked_with_another_tier_than_its_directory_fails_collection() -> None:
    check_declared("tests/integration/test_x.py::t", "integration", {"integration"})  # as the integration modules say
    with pytest.raises(pytest.UsageError, match=r"in the fuzz tier .* but is marked integration"):
        check_declared("tests/fuzz/test_x.py::t", "fuzz", {"integration"})


def test_every_tier_is_declared_for_strict_markers() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert {line.split(":")[0] for line in declared} >= set(TIERS.values())


def test_this_test_has_exactly_the_unit_tier(request: pytest.FixtureRequest) -> None:
    tiers = [mark.name for mark in request.node.iter_markers() if mark.name in TIERS.values()]
    assert tiers == ["unit"]


def test_a_unit_test_cannot_open_a_connection_even_to_loopback() -> None:
    with pytest.raises(RuntimeError, match="unit test opened a network connection"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
