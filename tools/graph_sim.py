"""Local Microsoft Graph simulator: the slice of Graph v1.0 this service uses, strictly.

    LOCAL_TOKEN_SIGNING_KEY=... python -m tools.graph_sim --port 8082   (127.0.0.1 only; --port 0 picks one)

Graph API (bearer token from tools.identity_endpoint required, roles checked like Graph):
    GET  /v1.0/users                                  $select, $top (1-999), $skiptoken via @odata.nextLink
    GET  /v1.0/users/{id|upn}                         $select
    POST /v1.0/users/{id|upn}/revokeSignInSessions    a write: counts against the write quota
    GET  /v1.0/groups/{id}/transitiveMembers[/microsoft.graph.user]   $select, $top, $skiptoken
    GET  /v1.0/users/$count, /v1.0/groups/{id}/transitiveMembers/microsoft.graph.user/$count
         text/plain; an advanced query: ConsistencyLevel: eventual required (else 400, as Graph);
         $filter: userType eq '<type>' or id in ('<id>', ...)
Anything else gets Graph's error shape (400 unknown segment, 405 wrong method, ...).

Environment: LOCAL_TOKEN_SIGNING_KEY (required), GRAPH_SIM_AUDIENCE (default http://127.0.0.1:<port>),
GRAPH_SIM_USERS (N generated users user000000..@contoso.com), GRAPH_SIM_LATENCY_MS,
GRAPH_SIM_WRITE_QUOTA ("writes/seconds", e.g. "3000/150"; default off).

Control API (JSON; not logged, never throttled or faulted):
    POST /_sim/users  [user, ...]          GET /_sim/users/{id|upn}   (state incl. revokeCount)
    POST /_sim/groups [{id, members}, ...] GET /_sim/groups/{id}
    GET|POST /_sim/config {latency_ms, write_quota}
    GET|POST|DELETE /_sim/faults [rule, ...]
    GET|DELETE /_sim/requests [?since=seq]  GET /_sim/stats   POST /_sim/reset
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import heapq
import itertools
import json
import math
import os
import re
import socket
import struct
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any
from urllib.parse import quote, unquote, urlencode

import jwt
from aiohttp import web

from tools import loopback
from tools.local_tokens import SIGNING_KEY_ENV, verify_token

GRAPH_ROOT = "https://graph.microsoft.com/v1.0"
CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
DIAGNOSTIC = json.dumps(
    {"ServerInfo": {"DataCenter": "Local", "Slice": "E", "Ring": "0", "ScaleUnit": "000", "RoleInstance": "graph-sim"}},
    separators=(",", ":"),
)
WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    'client_id="00000003-0000-0000-c000-000000000000"'
)
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)

READ_USERS = frozenset({"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"})
REVOKE_SESSIONS = frozenset({"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"})
READ_MEMBERS = frozenset({"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"})

SEED_EPOCH = 1704067200  # 2024-01-01T00:00:00Z: deterministic initial signInSessionsValidFromDateTime
HOLD_SECONDS = 120.0  # how long a "timeout" fault holds a request unless delay_ms says otherwise


# ---------------------------------------------------------------- errors & time


class GraphError(Exception):
    """An error answered in Graph's JSON shape."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


def not_found(key: str) -> GraphError:
    message = f"Resource '{key}' does not exist or one of its queried reference-property objects are not present."
    return GraphError(404, "Request_ResourceNotFound", message)


def invalid_id(key: str) -> GraphError:
    return bad_request(f"Invalid object identifier '{key}'.")


def iso_z(epoch: float) -> str:
    """Graph's timestamp format: UTC, second precision, trailing Z."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_z(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


# ---------------------------------------------------------------- directory model

USER_DEFAULT_SELECT = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)  # fmt: skip
# Real v1.0 user properties accepted by $select; the ones the simulator doesn't store read as null/[].
USER_PROPERTIES = (
    *USER_DEFAULT_SELECT,
    "accountEnabled", "ageGroup", "city", "companyName", "country", "createdDateTime", "creationType",
    "department", "employeeId", "externalUserState", "lastPasswordChangeDateTime", "mailNickname",
    "onPremisesImmutableId", "onPremisesSamAccountName", "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName", "otherMails", "proxyAddresses", "signInSessionsValidFromDateTime",
    "state", "usageLocation", "userType",
)  # fmt: skip
GROUP_PROPERTIES = (
    "id", "displayName", "description", "mail", "mailEnabled", "mailNickname",
    "securityEnabled", "groupTypes", "visibility", "createdDateTime",
)  # fmt: skip
COLLECTION_PROPERTIES = frozenset({"businessPhones", "otherMails", "proxyAddresses", "groupTypes"})


@dataclass(slots=True)
class User:
    id: str
    userPrincipalName: str
    displayName: str | None = None
    givenName: str | None = None
    surname: str | None = None
    mail: str | None = None
    jobTitle: str | None = None
    userType: str = "Member"
    accountEnabled: bool = True
    validFrom: int = SEED_EPOCH  # signInSessionsValidFromDateTime as epoch seconds
    revokeCount: int = 0

    ODATA_TYPE = "#microsoft.graph.user"
    PROPERTIES = USER_PROPERTIES
    DEFAULT_SELECT = USER_DEFAULT_SELECT

    def prop(self, name: str) -> Any:
        if name == "signInSessionsValidFromDateTime":
            return iso_z(self.validFrom)
        if name in COLLECTION_PROPERTIES:
            return []
        return getattr(self, name, None)

    def state(self) -> dict[str, Any]:
        """Everything the simulator knows, for the control API."""
        data = asdict(self)
        data["signInSessionsValidFromDateTime"] = iso_z(data.pop("validFrom"))
        return data


@dataclass(slots=True)
class Group:
    id: str
    displayName: str
    members: list[str]  # canonical ids of direct member users and groups
    description: str | None = None

    ODATA_TYPE = "#microsoft.graph.group"
    PROPERTIES = GROUP_PROPERTIES
    DEFAULT_SELECT = GROUP_PROPERTIES

    def prop(self, name: str) -> Any:
        defaults = {"mailEnabled": False, "securityEnabled": True, "createdDateTime": iso_z(SEED_EPOCH)}
        if name in COLLECTION_PROPERTIES:
            return []
        return getattr(self, name, defaults.get(name))


DirectoryObject = User | Group

SEED_USERS = (
    User("87d349ed-44d7-43e1-9a83-5f2406dee5bd", "adele.vance@contoso.com", "Adele Vance", "Adele", "Vance",
         "adele.vance@contoso.com", "Retail Manager"),
    User("48d31887-5fad-4d73-a9f5-3c356e68a038", "megan.bowen@contoso.com", "Megan Bowen", "Megan", "Bowen",
         "megan.bowen@contoso.com", "Marketing Manager"),
    User("e3f1b0c2-7d54-4b8e-9f1a-0b6c2d4e8a11", "breakglass@contoso.com", "Break Glass (emergency access)",
         mail=None, jobTitle="Emergency access account"),
    User("5c0e7a3b-2f6d-4a91-8e47-c1d9b2a6f3e8", "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com", "Alex Wilber",
         "Alex", "Wilber", "alex@fabrikam.com", userType="Guest"),
    User("2a7f4c91-83d6-4e25-b0f8-6d1e9c3a5b74", "diego.siciliani@contoso.com", "Diego Siciliani", "Diego",
         "Siciliani", "diego.siciliani@contoso.com", "HR Manager", accountEnabled=False),
)  # fmt: skip
SEED_GROUP_ID = "0f6e9d2c-4b1a-4c8e-9d7f-3a2b1c0d9e8f"  # "Sign-out pilot": Adele, Megan, nested Partners
SEED_NESTED_GROUP_ID = "7b3c5d1e-9f2a-4e6b-8c0d-1a2b3c4d5e6f"  # "Partners": the guest Alex

GENERATED_ID_PREFIX = "00000000-5100-4000-8000-"  # + 12 hex digits of the index
GENERATED_UPN = re.compile(r"^user(\d{6,})@contoso\.com$")


def generated_id(index: int) -> str:
    return f"{GENERATED_ID_PREFIX}{index:012x}"


class GeneratedIds:
    """The sorted ids of the generated users as a lazy sequence (bisect works on it)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> str:
        return generated_id(index)


class Directory:
    """Users and groups. Generated users are virtual: only their write state is stored."""

    def __init__(self, generated: int = 0, seed: bool = True) -> None:
        self.generated = generated
        self.groups: dict[str, Group] = {}
        self._users: dict[str, User] = {}  # explicit users by lower-case id
        self._upns: dict[str, str] = {}  # lower-case UPN -> id
        self._ids: list[str] = []  # sorted explicit ids, for keyset paging
        self._generated_state: dict[int, tuple[int, int]] = {}  # index -> (validFrom, revokeCount)
        if seed:
            self._seed()

    def _seed(self) -> None:
        for user in SEED_USERS:
            self.put_user(replace(user))
        self.put_group(SEED_NESTED_GROUP_ID, "Partners", [SEED_USERS[3].id])
        self.put_group(SEED_GROUP_ID, "Sign-out pilot", [SEED_USERS[0].id, SEED_USERS[1].id, SEED_NESTED_GROUP_ID])

    # users

    def find_user(self, key: str) -> User | None:
        key = key.lower()
        user_id = self._upns.get(key, key)
        if user_id in self._users:
            return self._users[user_id]
        index = self._generated_index(key)
        return None if index is None else self._generated_user(index)

    def require_user(self, key: str) -> User:
        user = self.find_user(key)
        if user is None:
            raise not_found(key)
        return user

    def save(self, user: User) -> None:
        """Persist a mutated user; explicit users are already stored by reference."""
        if user.id not in self._users:
            self._generated_state[self._generated_index(user.id)] = (user.validFrom, user.revokeCount)

    def put_user(self, user: User) -> None:
        user.id = user.id.lower()
        upn = user.userPrincipalName.lower()
        if self._generated_index(user.id) is not None or self._generated_index(upn) is not None:
            raise ValueError(f"{user.userPrincipalName} collides with a generated user")
        owner = self._upns.get(upn)
        if owner not in (None, user.id):
            raise ValueError(f"userPrincipalName {user.userPrincipalName} already belongs to {owner}")
        previous = self._users.get(user.id)
        if previous is None:
            bisect.insort(self._ids, user.id)
        else:
            del self._upns[previous.userPrincipalName.lower()]
        self._users[user.id] = user
        self._upns[upn] = user.id

    def users_after(self, after: str, limit: int) -> list[User]:
        """Up to `limit` users with id > after, in id order, merging explicit and generated users."""
        start = bisect.bisect_right(self._ids, after)
        explicit = (self._users[self._ids[i]] for i in range(start, len(self._ids)))
        first = bisect.bisect_right(GeneratedIds(self.generated), after)  # type: ignore[call-overload]
        generated = (self._generated_user(i) for i in range(first, self.generated))
        return list(itertools.islice(heapq.merge(explicit, generated, key=attrgetter("id")), limit))

    def user_count(self) -> int:
        return len(self._ids) + self.generated

    def all_users(self) -> Iterator[User]:
        """Every user, explicit ones first (generated users are made one at a time)."""
        yield from self._users.values()
        yield from (self._generated_user(index) for index in range(self.generated))

    def _generated_index(self, key: str) -> int | None:
        if key.startswith(GENERATED_ID_PREFIX) and GUID.match(key):
            index = int(key[len(GENERATED_ID_PREFIX) :], 16)
        elif match := GENERATED_UPN.match(key):
            index = int(match[1])
            if match[1] != f"{index:06d}":  # only the canonical spelling exists
                return None
        else:
            return None
        return index if index < self.generated else None

    def _generated_user(self, index: int) -> User:
        number = f"{index:06d}"
        valid_from, revokes = self._generated_state.get(index, (SEED_EPOCH, 0))
        upn = f"user{number}@contoso.com"
        return User(generated_id(index), upn, f"User {number}", "User", number, upn,
                    validFrom=valid_from, revokeCount=revokes)  # fmt: skip

    # groups

    def put_group(self, group_id: str, display_name: str, member_refs: list[str]) -> Group:
        members = [self._member_id(ref) for ref in member_refs]
        group = Group(group_id.lower(), display_name, members)
        self.groups[group.id] = group
        return group

    def _member_id(self, ref: str) -> str:
        if ref.lower() in self.groups:
            return ref.lower()
        user = self.find_user(ref)
        if user is None:
            raise ValueError(f"unknown member {ref!r} (define nested groups first)")
        return user.id

    def require_group(self, key: str) -> Group:
        if not GUID.match(key):
            raise invalid_id(key)
        group = self.groups.get(key.lower())
        if group is None:
            raise not_found(key)
        return group

    def transitive_members(self, group: Group) -> list[DirectoryObject]:
        """Members of the group and of its nested groups, each once, in id order (cycles are fine)."""
        found: dict[str, DirectoryObject] = {}
        pending = list(group.members)
        while pending:
            ref = pending.pop()
            if ref in found or ref == group.id:
                continue
            if ref in self.groups:
                found[ref] = self.groups[ref]
                pending.extend(self.groups[ref].members)
            elif user := self.find_user(ref):
                found[ref] = user
        return [found[ref] for ref in sorted(found)]


# ---------------------------------------------------------------- throttling


@dataclass(frozen=True)
class WriteQuota:
    writes: int
    seconds: float

    @classmethod
    def parse(cls, text: str | None) -> WriteQuota | None:
        if text is None or not text.strip() or text.strip().lower() in {"off", "none"}:
            return None
        writes, _, seconds = text.partition("/")
        quota = cls(int(writes), float(seconds))
        if quota.writes < 1 or quota.seconds <= 0:
            raise ValueError(f"invalid write quota {text!r}; expected e.g. '3000/150'")
        return quota

    def __str__(self) -> str:
        return f"{self.writes}/{self.seconds:g}"


class TokenBucket:
    """Graph's write quota per app+tenant: `writes` tokens refilled evenly over `seconds`."""

    def __init__(self, quota: WriteQuota, now: float) -> None:
        self.quota, self.tokens, self.updated = quota, float(quota.writes), now

    def take(self, now: float) -> float:
        """Consume one write; return 0 if allowed, else the seconds until one is available."""
        rate = self.quota.writes / self.quota.seconds
        self.tokens = min(self.quota.writes, self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate

    @property
    def usage(self) -> float:
        return 1 - self.tokens / self.quota.writes


# ---------------------------------------------------------------- fault injection

FAULT_DEFAULTS = {  # status -> (code, message) when a rule gives none
    400: ("BadRequest", "Bad request."),
    404: ("Request_ResourceNotFound", "Resource does not exist."),
    429: ("TooManyRequests", "Too many requests."),
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "Gateway timeout."),
}


@dataclass
class FaultRule:
    action: str = "status"  # status | reset | timeout
    method: str | None = None
    path_contains: str | None = None
    query_contains: str | None = None  # e.g. "$top": a page read, not the same collection's $count
    user: str | None = None
    count: int = 1
    status: int = 503
    code: str | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_ms: int = 0

    @classmethod
    def parse(cls, raw: Any) -> FaultRule:
        if not isinstance(raw, dict):
            raise ValueError("a fault rule must be a JSON object")
        known = {f.name for f in fields(cls)}
        if unknown := set(raw) - known:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        rule = cls(**{k: v for k, v in raw.items() if v is not None})  # null means "the default"
        rule._validate()
        return rule

    def _validate(self) -> None:
        if self.action not in {"status", "reset", "timeout"}:
            raise ValueError("action must be status, reset or timeout")
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError("count must be a positive integer")
        if not isinstance(self.status, int) or not 400 <= self.status <= 599:
            raise ValueError("status must be 400-599")
        if not isinstance(self.delay_ms, int) or self.delay_ms < 0:
            raise ValueError("delay_ms must be a non-negative integer")
        if not isinstance(self.headers, dict) or not all(isinstance(v, str) for v in self.headers.values()):
            raise ValueError("headers must map names to strings")

    def error(self) -> GraphError:
        code, message = FAULT_DEFAULTS.get(self.status, ("UnknownError", "Injected fault."))
        return GraphError(self.status, self.code or code, self.message or message, self.headers)


# ---------------------------------------------------------------- settings & state


@dataclass(frozen=True)
class SimSettings:
    signing_key: str
    audience: str | None = None  # None: http://127.0.0.1:<the port actually bound>
    generated_users: int = 0
    latency_ms: int = 0
    write_quota: WriteQuota | None = None
    log_limit: int = 200_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> SimSettings:
        if not env.get(SIGNING_KEY_ENV):
            raise ValueError(f"missing required environment variable {SIGNING_KEY_ENV}")
        return cls(
            signing_key=env[SIGNING_KEY_ENV],
            audience=env.get("GRAPH_SIM_AUDIENCE") or None,
            generated_users=int(env.get("GRAPH_SIM_USERS") or 0),
            latency_ms=int(env.get("GRAPH_SIM_LATENCY_MS") or 0),
            write_quota=WriteQuota.parse(env.get("GRAPH_SIM_WRITE_QUOTA")),
        )


@dataclass(slots=True)
class LogEntry:
    """One Graph request as received. Slotted and interned: the log keeps up to 200,000 of them."""

    seq: int
    received: float
    method: str
    path: str  # raw, still percent-encoded
    query: str  # raw
    client_request_id: str | None
    throttle_priority: str | None
    user_agent: str | None
    authorization: bool
    request_id: str
    status: int | None = None  # None while in flight, or when the connection was dropped
    fault: str | None = None

    @classmethod
    def of(cls, seq: int, request: web.Request, request_id: str) -> LogEntry:
        headers = request.headers
        path, _, query = request.raw_path.partition("?")
        return cls(
            seq, time.time(), _intern(request.method), path, query, headers.get("client-request-id"),
            _intern(headers.get("x-ms-throttle-priority")), _intern(headers.get("User-Agent")),
            "Authorization" in headers, request_id,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(self.received, UTC).isoformat(timespec="milliseconds")
        return {
            "seq": self.seq,
            "timestamp": stamp.replace("+00:00", "Z"),
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "client-request-id": self.client_request_id,
            "x-ms-throttle-priority": self.throttle_priority,
            "User-Agent": self.user_agent,
            "authorization": self.authorization,
            "request-id": self.request_id,
            "status": self.status,
            "fault": self.fault,
        }


def _intern(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


@dataclass
class Call:
    """One Graph request in flight."""

    request: web.Request
    request_id: str
    client_request_id: str
    entry: LogEntry  # completed when answered
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """Raw, still percent-encoded, without the query."""
        return self.entry.path

    @property
    def segments(self) -> list[str]:
        """Decoded path segments after the version; each decoded exactly once."""
        return [unquote(part) for part in self.path.split("/")[2:]]

    @property
    def user_key(self) -> str | None:
        parts = self.segments
        return parts[1] if len(parts) > 1 and parts[0].lower() == "users" else None


class Simulator:
    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self._sequence = itertools.count(1)
        self._release = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        self.directory = Directory(self.settings.generated_users)
        self.latency_ms = self.settings.latency_ms
        self.write_quota = self.settings.write_quota
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        self.faults: list[FaultRule] = []
        self.log: deque[LogEntry] = deque(maxlen=self.settings.log_limit)
        self.stats: Counter[str] = Counter()
        self.status_counts: Counter[str] = Counter()
        self.release_held()

    def release_held(self) -> None:
        """Let every request held by a timeout fault go (they are then dropped)."""
        self._release.set()
        self._release = asyncio.Event()

    # the pipeline

    async def handle(self, request: web.Request) -> web.StreamResponse:
        call = self._begin(request)
        try:
            response = await self._respond(call)
        except GraphError as error:
            response = error_response(call, error)
        if response is None:
            return web.Response(status=499)  # the connection was dropped on purpose: never sent
        self._finish(call, response)
        return response

    def _begin(self, request: web.Request) -> Call:
        request_id = str(uuid.uuid4())
        entry = LogEntry.of(next(self._sequence), request, request_id)
        self.log.append(entry)
        self.stats["requests"] += 1
        # Like Graph, echo the caller's id, else reuse the request id.
        client_request_id = entry.client_request_id or request_id
        return Call(request, request_id, client_request_id, entry)

    async def _respond(self, call: Call) -> web.Response | None:
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        if rule := self._take_fault(call):
            return await self._inject(call, rule)
        version = call.path.split("/")[1]
        if version != "v1.0":
            raise GraphError(400, "BadRequest", f"Invalid version: {unquote(version)}")
        claims = self._authenticate(call.request)
        route, key = match_route(call.segments, call.request.method)
        if not set(claims.get("roles") or ()) & route.roles:
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        if key is not None and (not key or "/" in key):
            raise invalid_id(key)
        if route.write:
            self.stats["writes"] += 1
            call.extra_headers.update(self._consume_write(claims))
        body = route.handler(self, call, key)
        if isinstance(body, web.Response):  # $count answers text/plain
            body.headers.update({"x-ms-resource-unit": "1", **call.extra_headers})
            return body
        return json_response(body, 200, {"x-ms-resource-unit": "1", **call.extra_headers})

    def _finish(self, call: Call, response: web.Response) -> None:
        response.headers.update(
            {
                "request-id": call.request_id,
                "client-request-id": call.client_request_id,
                "x-ms-ags-diagnostic": DIAGNOSTIC,
                "Cache-Control": "no-cache",
                "OData-Version": "4.0",
            }
        )
        call.entry.status = response.status
        self.status_counts[str(response.status)] += 1

    def _authenticate(self, request: web.Request) -> dict[str, Any]:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("Access token is empty.")
        try:
            return verify_token(token.strip(), self.settings.signing_key, self.audience(request))
        except jwt.ExpiredSignatureError:
            raise unauthorized("Lifetime validation failed, the token is expired.") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("Access token validation failure. Invalid audience.") from None
        except jwt.InvalidTokenError:
            raise unauthorized("Access token validation failure.") from None

    def audience(self, request: web.Request) -> str:
        if self.settings.audience:
            return self.settings.audience
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        return f"http://127.0.0.1:{sockname[1] if sockname else request.url.port}"

    def _consume_write(self, claims: Mapping[str, Any]) -> dict[str, str]:
        """Apply the write quota; returns headers for the successful response or raises 429."""
        if self.write_quota is None:
            return {}
        app_id, tenant_id = claims["appid"], claims["tid"]
        now = time.monotonic()
        bucket = self.buckets.setdefault((app_id, tenant_id), TokenBucket(self.write_quota, now))
        if wait := bucket.take(now):
            self.stats["throttled"] += 1
            headers = {
                "Retry-After": str(max(1, math.ceil(wait))),
                "x-ms-throttle-scope": f"Tenant_Application/Write/{app_id}/{tenant_id}",
                "x-ms-throttle-information": "WriteLimitExceeded",
            }
            raise GraphError(429, "TooManyRequests", "Too many requests.", headers)
        usage = round(bucket.usage, 2)  # the refill since the last write shouldn't hide "80 % used"
        return {"x-ms-throttle-limit-percentage": f"{usage:.2f}"} if usage >= 0.8 else {}

    # faults

    def _take_fault(self, call: Call) -> FaultRule | None:
        for rule in self.faults:
            if self._fault_matches(rule, call):
                rule.count -= 1
                if rule.count == 0:
                    self.faults.remove(rule)
                return rule
        return None

    def _fault_matches(self, rule: FaultRule, call: Call) -> bool:
        if rule.method and rule.method.upper() != call.request.method:
            return False
        if rule.path_contains and rule.path_contains not in call.path and rule.path_contains not in unquote(call.path):
            return False
        if rule.query_contains and rule.query_contains not in unquote(call.entry.query):
            return False
        return rule.user is None or (call.user_key is not None and self._same_user(rule.user, call.user_key))

    def _same_user(self, a: str, b: str) -> bool:
        user_a, user_b = self.directory.find_user(a), self.directory.find_user(b)
        if user_a and user_b:
            return user_a.id == user_b.id
        return a.lower() == b.lower()

    async def _inject(self, call: Call, rule: FaultRule) -> web.Response | None:
        call.entry.fault = rule.action
        self.stats["faults"] += 1
        if rule.action == "timeout":
            await self._hold(rule.delay_ms / 1000 if rule.delay_ms else HOLD_SECONDS)
        elif rule.delay_ms:
            await asyncio.sleep(rule.delay_ms / 1000)
        if rule.action == "status":
            raise rule.error()
        reset_connection(call.request)
        return None

    async def _hold(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release.wait(), seconds)


def unauthorized(message: str) -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", message, {"WWW-Authenticate": WWW_AUTHENTICATE})


def reset_connection(request: web.Request) -> None:
    """Abort with a TCP RST (SO_LINGER 0) so the client sees 'connection reset', not a clean close."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def json_response(body: Any, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    payload = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(body=payload, status=status, headers={"Content-Type": CONTENT_TYPE, **(headers or {})})


def error_response(call: Call, error: GraphError) -> web.Response:
    inner = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": call.request_id,
        "client-request-id": call.client_request_id,
    }
    body = {"error": {"code": error.code, "message": error.message, "innerError": inner}}
    return json_response(body, error.status, error.headers)


# ---------------------------------------------------------------- routing & Graph handlers

Handler = Callable[[Simulator, Call, str | None], dict[str, Any] | web.Response]


@dataclass(frozen=True)
class Route:
    pattern: tuple[str, ...]  # "{id}" marks the key; "a|b" accepts either spelling
    method: str
    roles: frozenset[str]
    handler: Handler
    write: bool = False

    def fits(self, segments: list[str]) -> bool:
        return len(segments) == len(self.pattern) and _leads_to(self.pattern, segments)


def _leads_to(pattern: tuple[str, ...], segments: list[str]) -> bool:
    """Whether the segments match the start of the pattern (segment names are case-insensitive)."""
    return len(segments) <= len(pattern) and all(
        p == "{id}" or s.lower() in p.lower().split("|") for p, s in zip(pattern, segments, strict=False)
    )


def match_route(segments: list[str], method: str) -> tuple[Route, str | None]:
    candidates = [route for route in ROUTES if route.fits(segments)]
    for route in candidates:
        if route.method == method:
            key = segments[route.pattern.index("{id}")] if "{id}" in route.pattern else None
            return route, key
    if candidates:
        raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
    raise bad_request(f"Resource not found for the segment '{_unknown_segment(segments)}'.", code="BadRequest")


def _unknown_segment(segments: list[str]) -> str:
    """The first segment no route explains (Graph names it in its 400)."""
    for depth, segment in enumerate(segments):
        if not any(_leads_to(route.pattern, segments[: depth + 1]) for route in ROUTES):
            return segment
    return segments[-1] if segments else ""


def query_options(call: Call, allowed: set[str]) -> dict[str, str]:
    """The request's $-options (lower-cased names), rejecting repeats and unsupported ones."""
    options: dict[str, str] = {}
    for name, value in call.request.query.items():
        if not name.startswith("$"):
            continue  # Graph ignores unknown plain parameters
        lowered = name.lower()
        if lowered in options:
            raise bad_request(f"Query option '{name}' was specified more than once, but it must be specified at most once.")
        if lowered not in allowed:
            message = f"The query option '{name}' is not supported by the Graph simulator here."
            raise bad_request(message, "Request_UnsupportedQuery")
        options[lowered] = value
    return options


def parse_select(options: Mapping[str, str], *types: type[User | Group]) -> list[str] | None:
    if "$select" not in options:
        return None
    known = {name.lower(): name for kind in types for name in kind.PROPERTIES}
    selected: list[str] = []
    for raw in options["$select"].split(","):
        name = known.get(raw.strip().lower())
        if name is None:
            type_name = types[0].ODATA_TYPE.lstrip("#")
            raise bad_request(f"Could not find a property named '{raw.strip()}' on type '{type_name}'.")
        if name not in selected:
            selected.append(name)
    return selected


def parse_page(options: Mapping[str, str]) -> tuple[int, str]:
    """($top, id after which the page starts)."""
    raw_top = options.get("$top", "100")
    if not raw_top.isdigit() or not 1 <= int(raw_top) <= 999:
        raise bad_request(f"Invalid page size specified: '{raw_top}'. Must be between 1 and 999 inclusive.")
    after = ""
    if "$skiptoken" in options:
        after = decode_skiptoken(options["$skiptoken"])
    return int(raw_top), after


def encode_skiptoken(last_id: str) -> str:
    return base64.urlsafe_b64encode(f"graphsim:{last_id}".encode()).decode().rstrip("=")


def decode_skiptoken(token: str) -> str:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except ValueError:
        text = ""
    if not text.startswith("graphsim:"):
        message = "The specified page token value has expired and can no longer be included in your request."
        raise bad_request(message, "Directory_ExpiredPageToken")
    return text.removeprefix("graphsim:")


def next_link(call: Call, last_id: str) -> str:
    params = [(k, v) for k, v in call.request.query.items() if k.lower() != "$skiptoken"]
    params.append(("$skiptoken", encode_skiptoken(last_id)))
    query = urlencode(params, safe="$,", quote_via=quote)
    return f"{call.request.scheme}://{call.request.host}{call.path}?{query}"


def context(entity_set: str, select: list[str] | None, single: bool = False) -> str:
    projection = f"({','.join(select)})" if select else ""
    return f"{GRAPH_ROOT}/$metadata#{entity_set}{projection}{'/$entity' if single else ''}"


def project(obj: DirectoryObject, select: list[str] | None, typed: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"@odata.type": obj.ODATA_TYPE} if typed else {}
    body.update({name: obj.prop(name) for name in select or obj.DEFAULT_SELECT if name in obj.PROPERTIES})
    return body


def paged(
    call: Call, entity_set: str, select: list[str] | None, page: list[DirectoryObject], top: int, typed: bool = False
) -> dict[str, Any]:
    """One page of a collection; `page` holds up to top + 1 objects, the extra one only signalling more."""
    body: dict[str, Any] = {"@odata.context": context(entity_set, select)}
    if len(page) > top:
        page = page[:top]
        body["@odata.nextLink"] = next_link(call, page[-1].id)
    body["value"] = [project(obj, select, typed) for obj in page]
    return body


def get_user(sim: Simulator, call: Call, key: str | None) -> dict[str, Any]:
    select = parse_select(query_options(call, {"$select"}), User)
    user = sim.directory.require_user(key or "")
    return {"@odata.context": context("users", select, single=True), **project(user, select)}


def list_users(sim: Simulator, call: Call, _: str | None) -> dict[str, Any]:
    options = query_options(call, {"$select", "$top", "$skiptoken"})
    select = parse_select(options, User)
    top, after = parse_page(options)
    return paged(call, "users", select, list(sim.directory.users_after(after, top + 1)), top)


def revoke_sessions(sim: Simulator, call: Call, key: str | None) -> dict[str, Any]:
    query_options(call, set())
    user = sim.directory.require_user(key or "")
    user.validFrom = int(time.time())
    user.revokeCount += 1
    sim.directory.save(user)
    sim.stats["revocations"] += 1
    return {"@odata.context": f"{GRAPH_ROOT}/$metadata#Edm.Boolean", "value": True}


def group_members(users_only: bool) -> Handler:
    def handler(sim: Simulator, call: Call, key: str | None) -> dict[str, Any]:
        options = query_options(call, {"$select", "$top", "$skiptoken"})
        select = parse_select(options, User) if users_only else parse_select(options, User, Group)
        top, after = parse_page(options)
        members = sim.directory.transitive_members(sim.directory.require_group(key or ""))
        page = [m for m in members if m.id > after and (isinstance(m, User) or not users_only)][: top + 1]
        return paged(call, "users" if users_only else "directoryObjects", select, page, top, typed=not users_only)

    return handler


_COUNT_BY_TYPE = re.compile(r"userType eq '([^']*)'", re.IGNORECASE)
_COUNT_BY_IDS = re.compile(r"id in \(\s*('[^']*'(?:\s*,\s*'[^']*')*)\s*\)", re.IGNORECASE)


def count_filter(call: Call) -> Callable[[User], bool] | None:
    """$count is an advanced query: without `ConsistencyLevel: eventual` Graph answers 400 (its
    documented error). The $filter forms the service uses are supported; any other is refused."""
    if call.request.headers.get("ConsistencyLevel", "").strip().lower() != "eventual":
        raise bad_request("$count is not currently supported.")
    raw = query_options(call, {"$filter"}).get("$filter")
    if raw is None:
        return None
    if match := _COUNT_BY_TYPE.fullmatch(raw.strip()):
        wanted = match[1].lower()
        return lambda user: user.userType.lower() == wanted
    if match := _COUNT_BY_IDS.fullmatch(raw.strip()):
        ids = {value.lower() for value in re.findall(r"'([^']*)'", match[1])}
        return lambda user: user.id in ids
    raise GraphError(400, "Request_UnsupportedQuery", "Unsupported Query.")


def count_response(count: int) -> web.Response:
    return web.Response(text=str(count), content_type="text/plain", charset="utf-8")


def count_users(sim: Simulator, call: Call, _: str | None) -> web.Response:
    keep = count_filter(call)
    if keep is None:  # generated users are virtual: counted without making them
        return count_response(sim.directory.user_count())
    return count_response(sum(1 for user in sim.directory.all_users() if keep(user)))


def count_group_users(sim: Simulator, call: Call, key: str | None) -> web.Response:
    keep = count_filter(call)
    members = sim.directory.transitive_members(sim.directory.require_group(key or ""))
    return count_response(sum(1 for member in members if isinstance(member, User) and (keep is None or keep(member))))


ROUTES = (
    Route(("users",), "GET", READ_USERS, list_users),
    Route(("users", "$count"), "GET", READ_USERS, count_users),  # before users/{id}: "$count" is no user
    Route(("users", "{id}"), "GET", READ_USERS, get_user),
    Route(("users", "{id}", "revokeSignInSessions|microsoft.graph.revokeSignInSessions|graph.revokeSignInSessions"),
          "POST", REVOKE_SESSIONS, revoke_sessions, write=True),
    Route(("groups", "{id}", "transitiveMembers"), "GET", READ_MEMBERS, group_members(users_only=False)),
    # msgraph-sdk spells the cast with Graph's short namespace alias: .../transitiveMembers/graph.user
    Route(("groups", "{id}", "transitiveMembers", "microsoft.graph.user|graph.user"),
          "GET", READ_MEMBERS, group_members(users_only=True)),
    Route(("groups", "{id}", "transitiveMembers", "microsoft.graph.user|graph.user", "$count"),
          "GET", READ_MEMBERS, count_group_users),
)  # fmt: skip


# ---------------------------------------------------------------- control API (/_sim/...)

SIM = web.AppKey("simulator", Simulator)
USER_FIELDS: dict[str, type] = {
    "id": str, "userPrincipalName": str, "displayName": str, "givenName": str, "surname": str, "mail": str,
    "jobTitle": str, "userType": str, "accountEnabled": bool, "signInSessionsValidFromDateTime": str,
}  # fmt: skip


def user_from_json(raw: Any) -> User:
    """Build a user from control-API JSON; unspecified properties get plausible defaults."""
    _check_fields(raw, USER_FIELDS, "user")
    upn = raw.get("userPrincipalName")
    if not upn or "@" not in upn or "/" in upn:
        raise ValueError(f"invalid userPrincipalName {upn!r}")
    guest = "#EXT#" in upn.upper()
    user_id = raw.get("id") or str(uuid.uuid5(uuid.NAMESPACE_URL, f"graphsim:{upn.lower()}"))
    if not GUID.match(user_id):
        raise ValueError(f"id must be a GUID, got {user_id!r}")
    user_type = raw.get("userType") or ("Guest" if guest else "Member")
    if user_type not in {"Member", "Guest"}:
        raise ValueError("userType must be Member or Guest")
    # A guest's mail is the external address encoded in its UPN: alex_fabrikam.com#EXT#@... -> alex@fabrikam.com
    default_mail = "@".join(upn.split("#")[0].rsplit("_", 1)) if guest else upn
    user = User(
        user_id, upn, raw.get("displayName", upn.split("@")[0]), raw.get("givenName"), raw.get("surname"),
        raw.get("mail", default_mail), raw.get("jobTitle"), user_type, raw.get("accountEnabled", True),
    )  # fmt: skip
    if raw.get("signInSessionsValidFromDateTime"):
        user.validFrom = parse_iso_z(raw["signInSessionsValidFromDateTime"])
    return user


def _check_fields(raw: Any, schema: Mapping[str, type], what: str) -> None:
    if not isinstance(raw, dict):
        raise ValueError(f"a {what} must be a JSON object")
    if unknown := set(raw) - set(schema):
        raise ValueError(f"unknown {what} field(s): {', '.join(sorted(unknown))}")
    for name, value in raw.items():
        if value is not None and not isinstance(value, schema[name]):
            raise ValueError(f"{what} field {name} must be a {schema[name].__name__}")


def _as_list(body: Any) -> list[Any]:
    return body if isinstance(body, list) else [body]


ControlHandler = Callable[[Simulator, web.Request], Any]


def control(handler: ControlHandler) -> Callable[[web.Request], Any]:
    """Adapt a control handler: JSON in/out, bad input -> 400 with a plain message."""

    async def endpoint(request: web.Request) -> web.Response:
        try:
            result = handler(request.app[SIM], request)
            if asyncio.iscoroutine(result):
                result = await result
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return result if isinstance(result, web.Response) else web.json_response(result)

    return endpoint


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except json.JSONDecodeError as exc:
        raise ValueError(f"request body is not JSON: {exc}") from None


async def put_users(sim: Simulator, request: web.Request) -> dict[str, Any]:
    users = [user_from_json(raw) for raw in _as_list(await _body(request))]
    for user in users:
        sim.directory.put_user(user)
    return {"users": [user.state() for user in users]}


def get_user_state(sim: Simulator, request: web.Request) -> Any:
    user = sim.directory.find_user(request.match_info["key"])
    if user is None:
        return web.json_response({"error": f"no user {request.match_info['key']!r}"}, status=404)
    return user.state()


async def put_groups(sim: Simulator, request: web.Request) -> dict[str, Any]:
    groups = []
    for raw in _as_list(await _body(request)):
        _check_fields(raw, {"id": str, "displayName": str, "description": str, "members": list}, "group")
        group_id = raw.get("id") or str(uuid.uuid4())
        if not GUID.match(group_id):
            raise ValueError(f"group id must be a GUID, got {group_id!r}")
        group = sim.directory.put_group(group_id, raw.get("displayName") or "Group", raw.get("members") or [])
        group.description = raw.get("description")
        groups.append(_group_state(sim, group))
    return {"groups": groups}


def get_group_state(sim: Simulator, request: web.Request) -> Any:
    group = sim.directory.groups.get(request.match_info["key"].lower())
    if group is None:
        return web.json_response({"error": f"no group {request.match_info['key']!r}"}, status=404)
    return _group_state(sim, group)


def _group_state(sim: Simulator, group: Group) -> dict[str, Any]:
    members = [obj.id for obj in sim.directory.transitive_members(group)]
    return {"id": group.id, "displayName": group.displayName, "members": group.members, "transitiveMembers": members}


def config_state(sim: Simulator, _: web.Request | None = None) -> dict[str, Any]:
    quota = sim.write_quota
    return {
        "latency_ms": sim.latency_ms,
        "write_quota": str(quota) if quota else None,
        "audience": sim.settings.audience,
        "generated_users": sim.settings.generated_users,
    }


async def set_config(sim: Simulator, request: web.Request) -> dict[str, Any]:
    body = await _body(request)
    _check_fields(body, {"latency_ms": int, "write_quota": str}, "config")
    if "latency_ms" in body:
        if not isinstance(body["latency_ms"], int) or body["latency_ms"] < 0:
            raise ValueError("latency_ms must be a non-negative integer")
        sim.latency_ms = body["latency_ms"]
    if "write_quota" in body:
        sim.write_quota = WriteQuota.parse(body["write_quota"])
        sim.buckets.clear()  # a new quota starts with full buckets
    return config_state(sim)


async def add_faults(sim: Simulator, request: web.Request) -> dict[str, Any]:
    sim.faults.extend(FaultRule.parse(raw) for raw in _as_list(await _body(request)))
    return list_faults(sim, request)


def list_faults(sim: Simulator, _: web.Request) -> dict[str, Any]:
    return {"faults": [asdict(rule) for rule in sim.faults]}


def clear_faults(sim: Simulator, _: web.Request) -> dict[str, Any]:
    sim.faults.clear()
    sim.release_held()
    return {"faults": []}


def get_requests(sim: Simulator, request: web.Request) -> dict[str, Any]:
    since = int(request.query.get("since", "0"))
    return {"requests": [entry.to_json() for entry in sim.log if entry.seq > since]}


def clear_requests(sim: Simulator, _: web.Request) -> dict[str, Any]:
    sim.log.clear()
    return {"requests": []}


def get_stats(sim: Simulator, _: web.Request) -> dict[str, Any]:
    counters = ("requests", "writes", "throttled", "revocations", "faults")
    return {**{name: sim.stats[name] for name in counters}, "status": dict(sim.status_counts)}


def reset(sim: Simulator, _: web.Request) -> dict[str, Any]:
    sim.reset()
    return config_state(sim)


async def graph_endpoint(request: web.Request) -> web.StreamResponse:
    """Everything outside /_sim/ is a Graph request (and wrong paths get Graph's errors)."""
    return await request.app[SIM].handle(request)


async def unknown_control(request: web.Request) -> web.Response:
    return web.json_response({"error": f"no control endpoint {request.method} {request.path}"}, status=404)


# ---------------------------------------------------------------- app & command line


def build_app(settings: SimSettings | None = None) -> web.Application:
    """The simulator as an aiohttp app; settings default to the environment."""
    sim = Simulator(settings or SimSettings.from_env())
    app = web.Application()
    app[SIM] = sim

    async def release_held(_: web.Application) -> None:
        sim.release_held()  # so shutdown doesn't wait for requests held by timeout faults

    app.on_shutdown.append(release_held)
    add = app.router.add_route
    add("GET", "/_sim/users/{key}", control(get_user_state))
    add("POST", "/_sim/users", control(put_users))
    add("GET", "/_sim/groups/{key}", control(get_group_state))
    add("POST", "/_sim/groups", control(put_groups))
    add("GET", "/_sim/config", control(config_state))
    add("POST", "/_sim/config", control(set_config))
    add("GET", "/_sim/faults", control(list_faults))
    add("POST", "/_sim/faults", control(add_faults))
    add("DELETE", "/_sim/faults", control(clear_faults))
    add("GET", "/_sim/requests", control(get_requests))
    add("DELETE", "/_sim/requests", control(clear_requests))
    add("GET", "/_sim/stats", control(get_stats))
    add("POST", "/_sim/reset", control(reset))
    add("*", "/_sim/{tail:.*}", unknown_control)
    add("*", "/{tail:.*}", graph_endpoint)
    return app


def main(argv: list[str] | None = None) -> None:
    loopback.run("graph_sim", __doc__ or "", SimSettings.from_env, build_app, argv, "graph simulator")


if __name__ == "__main__":
    sys.exit(main())
