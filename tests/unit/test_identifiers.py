"""User identifiers: what a SOC analyst may paste, and what must never reach a Graph path."""

import pytest

from shared.domain.identifiers import InvalidIdentifierError, parse_user


@pytest.mark.parametrize(
    ("raw", "kind", "value"),
    [
        ("adele.vance@contoso.com", "upn", "adele.vance@contoso.com"),
        ("  Adele.Vance@Contoso.com ", "upn", "Adele.Vance@Contoso.com"),
        ("alex_fabrikam.com#EXT#@contoso.onmicrosoft.com", "upn", "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com"),
        ("o'neil@contoso.com", "upn", "o'neil@contoso.com"),
        ("6F3E2B1A-0C4D-4E5F-8A9B-1C2D3E4F5A6B", "objectId", "6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b"),
    ],
)
def test_accepts_object_ids_and_upns(raw: str, kind: str, value: str) -> None:
    user = parse_user(raw)
    assert (user.kind, user.value) == (kind, value)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "adele",
        "../../groups/123",
        "adele@contoso.com/revokeSignInSessions",
        "adele@contoso.com?$select=passwordProfile",
        "adele@contoso.com%2F..",
        "adele vance@contoso.com",
        "adele@contoso",
        "adele@@contoso.com",
        ".adele@contoso.com",
        "ade..le@contoso.com",
        "adele@con\ntoso.com",
        "adele@-contoso.com",
        "a" * 200 + "@contoso.com",
        "users('x')@contoso.com",
        "6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6",
    ],
)
def test_rejects_anything_that_is_not_an_identifier(raw: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        parse_user(raw)


@pytest.mark.parametrize("raw", [None, 42, ["a@b.com"], {"id": "x"}])
def test_rejects_non_strings(raw: object) -> None:
    with pytest.raises(InvalidIdentifierError, match="string"):
        parse_user(raw)


def test_key_and_partition_ignore_case() -> None:
    first, second = parse_user("Adele@Contoso.com"), parse_user("adele@contoso.com")
    assert first.key == second.key
    assert first.partition == second.partition
    assert not set("/\\#?") & set(first.partition)  # characters Table storage keys forbid


def test_guest_upn_is_detected() -> None:
    assert parse_user("alex_fabrikam.com#EXT#@contoso.onmicrosoft.com").is_guest_upn
    assert not parse_user("alex@contoso.com").is_guest_upn
