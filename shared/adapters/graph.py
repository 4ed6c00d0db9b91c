"""The only module that talks to Microsoft Graph (msgraph-sdk, async, one client per process).

Retries are not done here: a transient failure is raised as GraphError(transient=True)
and the worker reschedules the task on the queue (visibility delay = Retry-After), so a
throttled task never holds a worker while it waits.
"""

from __future__ import annotations

import asyncio
import json
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from kiota_http.middleware.options import HeadersInspectionHandlerOption, RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.groups.item.transitive_members.graph_user.count.count_request_builder import (
    CountRequestBuilder as GroupUserCountRequestBuilder,
)
from msgraph.generated.groups.item.transitive_members.graph_user.graph_user_request_builder import GraphUserRequestBuilder
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.count.count_request_builder import CountRequestBuilder as UserCountRequestBuilder
from msgraph.generated.users.item.revoke_sign_in_sessions.revoke_sign_in_sessions_post_response import (
    RevokeSignInSessionsPostResponse,
)
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core import GraphClientFactory
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from shared.domain.directory import PAGE_FIELDS, TOKEN_TIMEOUT_SECONDS, GraphError, GraphResult, GraphUser, PageUser, UserPage
from shared.domain.identifiers import is_object_id
from shared.domain.page_links import is_own_page_link
from shared.domain.tasks import parse_iso, utcnow
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

_tracer = trace.get_tracer("signout.graph")
USER_FIELDS = ["id", "userPrincipalName", "userType", "signInSessionsValidFromDateTime"]
READ_PERMISSION = "User.Read.All"
GROUP_PERMISSION = "GroupMember.Read.All"
REVOKE_PERMISSION = "User.RevokeSessions.All"
TRANSIENT_STATUSES = frozenset({401, 408, 429, 500, 502, 503, 504})
GUEST_FILTER = "userType eq 'Guest'"
MAX_IN_VALUES = 15  # object ids per `id in (...)` filter: Graph's limit for directory objects


def warm_up() -> None:
    """Load the model modules msgraph-sdk imports lazily on first use, once at worker start-up,
    so that the first sign-out after a cold start is not late."""
    for model in (ODataError(), RevokeSignInSessionsPostResponse()):
        model.get_field_deserializers()


def create_graph_client(settings: Settings, credential: AsyncTokenCredential) -> GraphServiceClient:
    timeout = httpx.Timeout(settings.graph_timeout_seconds, connect=min(5.0, settings.graph_timeout_seconds))
    no_inline_retries = {RetryHandlerOption.get_key(): RetryHandlerOption(max_retries=0)}
    http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(timeout=timeout), options=no_inline_retries)
    host = urlsplit(settings.graph_endpoint).hostname or ""
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[settings.graph_scope], allowed_hosts=[host])
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = settings.graph_base_url  # explicit: the default yields /v1.0//users
    return GraphServiceClient(request_adapter=adapter)


class GraphGateway:
    def __init__(self, client: GraphServiceClient, timeout_seconds: float, credential: AsyncTokenCredential, scope: str) -> None:
        self._client = client
        self._host = urlsplit(client.request_adapter.base_url).hostname or ""
        self._timeout = timeout_seconds
        self._credential = credential
        self._scope = scope

    async def _ensure_token(self) -> None:
        """Get (or reuse the cached) token with its own deadline, so an identity-endpoint problem
        is reported as such, not as a Graph timeout; the SDK then takes it from the cache."""
        try:
            await asyncio.wait_for(self._credential.get_token(self._scope, enable_cae=True), TOKEN_TIMEOUT_SECONDS)
        except TimeoutError as exc:
            raise GraphError(
                "the managed identity endpoint did not answer in time", code="TokenUnavailable", transient=True
            ) from exc
        except ClientAuthenticationError as exc:
            raise GraphError(
                f"could not get a token from the managed identity: {exc.message}", code="TokenUnavailable", transient=True
            ) from exc

    async def get_user(self, user: str, client_request_id: str, priority: str) -> GraphResult[GraphUser]:
        """GET /users/{id}?$select=... read as raw JSON: kiota's User model builds a ~150-entry
        deserializer table per parse, which dominated the worker's CPU for four fields."""
        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=USER_FIELDS)
        config, inspect = _config(client_request_id, priority, query)
        request = self._client.users.by_user_id(user).to_get_request_information(config)
        adapter = self._client.request_adapter
        call = adapter.send_primitive_async(request, "bytes", {"XXX": ODataError})
        found = await self._call(call, inspect, READ_PERMISSION, "GET /users/{id}")
        return GraphResult(_graph_user(found.value, found.request_id), found.request_id)

    async def list_users(
        self, group_id: str | None, next_link: str | None, request_id: str, page_size: int
    ) -> GraphResult[UserPage]:
        """One page of the tenant's users, or of a group's transitive user members."""
        priority = "low"  # enumeration for bulk jobs never competes with alert-driven work
        if next_link is not None and not is_own_page_link(next_link, self._client.request_adapter.base_url, group_id, page_size):
            raise GraphError("the page link is not the job's own collection", code="UnexpectedNextLink")
        query: Any  # the two builders' query parameter classes share no base
        if group_id is None:
            query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(select=list(PAGE_FIELDS), top=page_size)
            builder: Any = self._client.users
        else:
            query = GraphUserRequestBuilder.GraphUserRequestBuilderGetQueryParameters(select=list(PAGE_FIELDS), top=page_size)
            builder = self._client.groups.by_group_id(group_id).transitive_members.graph_user
        config, inspect = _config(request_id, priority, None if next_link else query)
        if next_link:
            builder = builder.with_url(next_link)
        request = builder.to_get_request_information(config)
        call = self._client.request_adapter.send_primitive_async(request, "bytes", {"XXX": ODataError})
        found = await self._call(call, inspect, GROUP_PERMISSION if group_id else READ_PERMISSION, "GET users page")
        page = _user_page(found.value, found.request_id)
        base_url = self._client.request_adapter.base_url
        if page.next_link is not None and not is_own_page_link(page.next_link, base_url, group_id, page_size):
            raise GraphError(
                "Graph returned a nextLink outside the job's collection", code="UnexpectedNextLink", request_id=found.request_id
            )
        return GraphResult(page, found.request_id)

    async def count_users(
        self, group_id: str | None, request_id: str, *, guests: bool = False, among: frozenset[str] | None = None
    ) -> GraphResult[int]:
        """$count of the tenant's users or a group's transitive user members (an advanced query:
        ConsistencyLevel: eventual), one call, no enumeration; optionally only guests, or only the
        given object ids (the only filters ever built, from constants and validated GUIDs)."""
        if among is not None:
            return await self._count_among(group_id, request_id, sorted(among))
        return await self._count(group_id, request_id, GUEST_FILTER if guests else None)

    async def _count_among(self, group_id: str | None, request_id: str, ids: list[str]) -> GraphResult[int]:
        if not all(is_object_id(user_id) for user_id in ids):
            raise GraphError("only object ids can be counted", code="InvalidObjectId")
        chunks = [ids[start : start + MAX_IN_VALUES] for start in range(0, len(ids), MAX_IN_VALUES)]
        quoted = [", ".join(f"'{user_id.lower()}'" for user_id in chunk) for chunk in chunks]
        counted = await asyncio.gather(*(self._count(group_id, request_id, f"id in ({values})") for values in quoted))
        return GraphResult(sum(result.value for result in counted), counted[0].request_id if counted else None)

    async def _count(self, group_id: str | None, request_id: str, odata_filter: str | None) -> GraphResult[int]:
        builder: Any  # the two builders share no base
        if group_id is None:
            query: Any = UserCountRequestBuilder.CountRequestBuilderGetQueryParameters(filter=odata_filter)
            builder = self._client.users.count
        else:
            query = GroupUserCountRequestBuilder.CountRequestBuilderGetQueryParameters(filter=odata_filter)
            builder = self._client.groups.by_group_id(group_id).transitive_members.graph_user.count
        config, inspect = _config(request_id, "low", query)
        config.headers.add("ConsistencyLevel", "eventual")  # $count is an advanced query
        permission = GROUP_PERMISSION if group_id else READ_PERMISSION
        found = await self._call(builder.get(request_configuration=config), inspect, permission, "GET users/$count")
        if not isinstance(found.value, int) or found.value < 0:
            raise GraphError("Graph returned an unreadable count", request_id=found.request_id, transient=True)
        return GraphResult(found.value, found.request_id)

    async def revoke_sessions(self, user_id: str, client_request_id: str, priority: str) -> GraphResult[Any]:
        config, inspect = _config(client_request_id, priority)
        call = self._client.users.by_user_id(user_id).revoke_sign_in_sessions.post(request_configuration=config)
        return await self._call(call, inspect, REVOKE_PERMISSION, "POST /users/{id}/revokeSignInSessions")

    async def _call(
        self, call: Any, inspect: HeadersInspectionHandlerOption, permission: str, operation: str
    ) -> GraphResult[Any]:
        """One Graph call as a client span (HTTP semantic conventions, Graph's request-id); the span
        names the route template, never the user or the query."""
        method, _, template = operation.partition(" ")
        attributes = {"http.request.method": method, "url.template": template, "server.address": self._host}
        with _tracer.start_as_current_span(f"graph {operation}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            try:
                result = await self._call_once(call, inspect, permission)
            except GraphError as failure:
                span.set_attributes(_failure_attributes(failure))
                raise
            span.set_attributes({"http.response.status_code": 200, "graph.request_id": result.request_id or ""})
            return result

    async def _call_once(self, call: Any, inspect: HeadersInspectionHandlerOption, permission: str) -> GraphResult[Any]:
        try:
            await self._ensure_token()
        except GraphError:
            call.close()  # never awaited: close the coroutine
            raise
        try:
            value = await asyncio.wait_for(call, timeout=self._timeout)
        except APIError as exc:
            raise _from_api_error(exc, permission) from exc
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise GraphError("Microsoft Graph did not answer in time", code="Timeout", transient=True) from exc
        except httpx.TransportError as exc:
            raise GraphError(
                f"connection to Microsoft Graph failed: {type(exc).__name__}", code="ConnectionError", transient=True
            ) from exc
        except ClientAuthenticationError as exc:
            # The managed-identity endpoint failed or is slow: not a permission problem.
            raise GraphError(
                f"could not get a token from the managed identity: {exc.message}", code="TokenUnavailable", transient=True
            ) from exc
        headers = inspect.response_headers
        percentage = _first(headers.get("x-ms-throttle-limit-percentage"))
        return GraphResult(value, _first(headers.get("request-id")), float(percentage) if percentage else None)


def _graph_user(raw: bytes | None, request_id: str | None) -> GraphUser:
    try:
        data = json.loads(raw or b"")
        return GraphUser(
            id=str(data["id"]),
            user_principal_name=data.get("userPrincipalName"),
            user_type=data.get("userType"),
            sessions_valid_from=parse_iso(data.get("signInSessionsValidFromDateTime")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphError(f"Graph returned an unreadable user: {exc}", request_id=request_id, transient=True) from exc


def _user_page(raw: bytes | None, request_id: str | None) -> UserPage:
    try:
        data = json.loads(raw or b"")
        users = [PageUser(str(item["id"]), item.get("userPrincipalName"), item.get("userType")) for item in data["value"]]
        return UserPage(users, data.get("@odata.nextLink"))
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphError(f"Graph returned an unreadable page: {exc}", request_id=request_id, transient=True) from exc


def _config(
    client_request_id: str, priority: str, query: Any = None
) -> tuple[RequestConfiguration[Any], HeadersInspectionHandlerOption]:
    inspect = HeadersInspectionHandlerOption(inspect_response_headers=True)
    config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query, options=[inspect])
    config.headers.add("client-request-id", client_request_id)
    config.headers.add("x-ms-throttle-priority", priority)
    return config, inspect


def _first(values: set[str] | None) -> str | None:
    return next(iter(values), None) if values else None


def _header(headers: dict[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _failure_attributes(failure: GraphError) -> dict[str, str | int]:
    """A failed call's span: status, Graph's error code and request-id (never the message text)."""
    found = {
        "http.response.status_code": failure.status,
        "error.type": failure.code or "GraphError",
        "graph.request_id": failure.request_id,
    }
    return {key: value for key, value in found.items() if value is not None}


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), None when absent or unusable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def _from_api_error(exc: APIError, permission: str) -> GraphError:
    status = exc.response_status_code
    error = getattr(exc, "error", None)
    inner = getattr(error, "inner_error", None)
    request_id = getattr(inner, "request_id", None) or _header(exc.response_headers, "request-id")
    return GraphError(
        getattr(error, "message", None) or exc.message or f"Graph answered HTTP {status}",
        status=status,
        code=getattr(error, "code", None),
        request_id=request_id,
        retry_after=parse_retry_after(_header(exc.response_headers, "retry-after")),
        transient=status is None or status in TRANSIENT_STATUSES,
        permission=permission,
    )
