"""Whatever text a caller sends as a user, nothing but `/users/{one segment}` can reach Microsoft Graph.

Two layers are checked on arbitrary input: `parse_user` accepts only object ids and UPNs made of
characters that are harmless in a URL path, and msgraph-sdk percent-encodes the accepted value into
exactly one path segment. The second layer is checked twice: on the request information the SDK
builds, and on the bytes that the project's own GraphGateway would put on the wire (the real
middleware pipeline, with an in-memory transport instead of the network).
"""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from azure.core.credentials import AccessToken
from hypothesis import event, example, given
from hypothesis import strategies as st
from kiota_abstractions.authentication import AnonymousAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient

from shared.adapters.graph import USER_FIELDS, GraphGateway, create_graph_client
from shared.domain.identifiers import MAX_UPN_LENGTH, InvalidIdentifierError, UserRef, is_object_id, parse_user
from shared.settings import Settings
from tests.fuzz.strategies import fuzz_settings, guest_upn, guid, identifier_text, json_values, valid_upn

GRAPH_BASE = "https://graph.microsoft.com/v1.0"
# Every character an accepted identifier may contain: the UPN grammar, '@', and a GUID's.
ALLOWED = frozenset(string.ascii_letters + string.digits + "'._!#^~+-@")
SEGMENT_ENDERS = frozenset("/?#\\")  # left raw in a path, these end the segment (or the path)
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def accepted(raw: object) -> UserRef | None:
    try:
        user = parse_user(raw)
    except InvalidIdentifierError:
        event("refused")
        return None
    event(f"accepted {user.kind}")
    return user


# --- parse_user ---------------------------------------------------------------------------------
@fuzz_settings(300)
@given(raw=identifier_text | json_values)
@example(raw="o'neil@contoso.com")
@example(raw="alex_fabrikam.com#EXT#@contoso.onmicrosoft.com")
@example(raw="a@contoso.com/../../me")
@example(raw="a%40contoso.com%2F..%2Fx")
@example(raw="a@contoso.com#/revokeSignInSessions")
@example(raw="a@contoso.com?$filter=1 eq 1")
@example(raw="..")
@example(raw=".@contoso.com")
def test_parse_user_returns_a_safe_user_or_raises_invalid_identifier(raw: object) -> None:
    user = accepted(raw)  # any exception other than InvalidIdentifierError fails the test here
    if user is None:
        return
    assert isinstance(raw, str)
    assert user.kind in ("objectId", "upn")
    assert user.value == (raw.strip().lower() if user.kind == "objectId" else raw.strip())
    assert (user.kind == "objectId") == is_object_id(user.value)
    assert 0 < len(user.value) <= MAX_UPN_LENGTH
    assert set(user.value) <= ALLOWED, f"accepted characters outside the UPN grammar: {set(user.value) - ALLOWED}"
    assert user.value not in (".", "..")
    if user.kind == "upn":
        local, _, dom = user.value.rpartition("@")
        assert local and "@" not in local  # exactly one '@'
        assert re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", dom)  # '#', "'" etc. only in the local part
    else:
        assert GUID.fullmatch(user.value)
    assert parse_user(user.value) == user  # idempotent: what is stored parses to the same user again
    assert re.fullmatch(r"user-[0-9a-f]{40}", user.partition)  # a valid Table key, whatever the UPN holds
    assert user.partition == parse_user(user.value.upper()).partition  # case never splits a user's history


# --- the request msgraph-sdk builds ---------------------------------------------------------------
def sdk_client() -> tuple[GraphServiceClient, GraphRequestAdapter]:
    adapter = GraphRequestAdapter(AnonymousAuthenticationProvider())
    adapter.base_url = GRAPH_BASE
    return GraphServiceClient(request_adapter=adapter), adapter


SDK, ADAPTER = sdk_client()


def built_url(request_information: Any) -> str:
    ADAPTER.set_base_url_for_request_information(request_information)  # what the adapter does before sending
    return request_information.url


def single_segment(url: str, suffix: str) -> str:
    """The one path segment between /v1.0/users/ and `suffix`; fails if there is anything else."""
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == ("https", "graph.microsoft.com", "", ""), url
    match = re.fullmatch(r"/v1\.0/users/([^/?#]+)" + re.escape(suffix), parts.path)
    assert match, f"not /v1.0/users/<one segment>{suffix}: {url}"
    segment = match.group(1)
    assert not SEGMENT_ENDERS & set(segment), segment
    assert re.fullmatch(r"(?:[^%]|%[0-9A-F]{2})*", segment), segment  # every '%' is an encoding (a literal one is %25)
    assert segment not in (".", "..")
    return segment


def assert_one_encoded_segment(value: str) -> None:
    revoke = built_url(SDK.users.by_user_id(value).revoke_sign_in_sessions.to_post_request_information())
    read = built_url(SDK.users.by_user_id(value).to_get_request_information())
    for segment in (single_segment(revoke, "/revokeSignInSessions"), single_segment(read, "")):
        assert unquote(segment) == value
        # httpx (the transport under msgraph-sdk) keeps the path as built: no dot-segment or slash rewriting
        assert httpx.URL(f"{GRAPH_BASE}/users/{segment}").raw_path == f"/v1.0/users/{segment}".encode()


@fuzz_settings(250)
@given(raw=identifier_text)
@example(raw="o'neil#EXT#@contoso.com")
@example(raw="a+b@contoso.com")
def test_accepted_identifiers_become_exactly_one_encoded_graph_path_segment(raw: str) -> None:
    user = accepted(raw)
    if user is not None:
        assert_one_encoded_segment(user.value)


@fuzz_settings(300)
@given(raw=st.text(min_size=1, max_size=80).filter(lambda text: text not in (".", "..")))
@example(raw="a/b")
@example(raw="a?$select=passwordProfile")
@example(raw="a#b")
@example(raw="a%2Fb")
@example(raw="../groups/x")
@example(raw="a b\r\nHost: evil")
def test_the_sdk_encodes_even_text_that_validation_would_refuse(raw: str) -> None:
    """Defence in depth: were parse_user ever bypassed, the SDK still keeps the value in one segment.

    The only values this layer cannot neutralise are the dot segments "." and ".." (unreserved
    characters are never percent-encoded, and URL resolution removes dot segments); parse_user
    refuses those, which test_parse_user_returns_a_safe_user_or_raises_invalid_identifier shows.
    """
    assert_one_encoded_segment(raw)


def test_dot_segments_are_refused_before_the_sdk() -> None:
    for raw in (".", "..", " .. ", "./..", "..@contoso.com", ".@contoso.com", "a@.", "a@..", "a@contoso.com/.."):
        with pytest.raises(InvalidIdentifierError):
            parse_user(raw)


# --- the bytes on the wire through the project's GraphGateway ------------------------------------
class StaticCredential:
    """An async TokenCredential that never leaves the process."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("test-token", int(datetime.now(UTC).timestamp()) + 3600)

    async def close(self) -> None:
        pass


class Wire:
    """The project's Graph client over an in-memory transport that records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.loop = asyncio.new_event_loop()
        real_client = httpx.AsyncClient
        transport = httpx.MockTransport(self.answer)
        with mock.patch.object(httpx, "AsyncClient", lambda **kwargs: real_client(transport=transport, **kwargs)):
            credential = StaticCredential()
            client = create_graph_client(Settings(), credential)  # type: ignore[arg-type]
        self.gateway = GraphGateway(client, 5, credential, Settings().graph_scope)  # type: ignore[arg-type]

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST":
            return httpx.Response(200, json={"value": True}, headers={"request-id": "r"})
        return httpx.Response(
            200, json={"id": "6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b", "userType": "Member"}, headers={"request-id": "r"}
        )

    def send(self, value: str) -> list[httpx.Request]:
        self.requests.clear()
        self.loop.run_until_complete(self.gateway.get_user(value, "00000000-0000-0000-0000-000000000000", "high"))
        self.loop.run_until_complete(self.gateway.revoke_sessions(value, "00000000-0000-0000-0000-000000000000", "high"))
        return list(self.requests)


@pytest.fixture(scope="module")
def wire() -> Iterator[Wire]:
    recorder = Wire()
    yield recorder
    recorder.loop.close()


@fuzz_settings(120)
@given(raw=valid_upn | guest_upn | guid | identifier_text)
@example(raw="o'neil#EXT#@contoso.onmicrosoft.com")
def test_graph_gateway_sends_only_the_user_path_and_the_fixed_select(wire: Wire, raw: str) -> None:
    user = accepted(raw)
    if user is None:
        return
    read, revoke = wire.send(user.value)
    segment = single_segment(str(read.url.copy_with(query=None)), "")
    assert unquote(segment) == user.value
    assert (read.method, read.url.raw_path) == ("GET", f"/v1.0/users/{segment}?$select={','.join(USER_FIELDS)}".encode())
    assert (revoke.method, revoke.url.raw_path) == ("POST", f"/v1.0/users/{segment}/revokeSignInSessions".encode())
    for request in (read, revoke):
        assert request.url.host == "graph.microsoft.com" and request.url.scheme == "https"
        assert request.headers["authorization"] == "Bearer test-token"
        assert "\r" not in request.headers["client-request-id"] and "\n" not in request.headers["client-request-id"]
