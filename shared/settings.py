"""App settings: one frozen dataclass, read lazily from the environment (Azure app settings).

Every name the code reads is listed in SETTING_NAMES so infra tests can check the
deployment sets each one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from shared.domain.identifiers import InvalidIdentifierError, parse_user

DEFAULT_GRAPH_ENDPOINT = "https://graph.microsoft.com"
STORAGE_CONNECTION = "AzureWebJobsStorage"  # the Functions connection the triggers and clients use
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# App settings the code reads (storage connection settings are read by prefix).
SETTING_NAMES = (
    "AzureWebJobsStorage",
    "AZURE_CLIENT_ID",
    "GRAPH_ENDPOINT",
    "SIGNOUT_QUEUE_NAME",
    "STATUS_TABLE_NAME",
    "PROTECTED_USERS",
    "RETRY_BUDGET_MINUTES",
    "RETRY_BASE_SECONDS",
    "GRAPH_TIMEOUT_SECONDS",
    "ALERT_USER_DIMENSIONS",
    "CALLBACK_ALLOWED_HOSTS",
    "REQUIRE_APP_ROLES",
    "RETENTION_DAYS",
    "BULK_QUEUE_NAME",
    "BULK_PAGE_QUEUE_NAME",
    "ALLOW_ALL_USERS",
    "GRAPH_WRITES_PER_SECOND",
    "GRAPH_PAGE_SIZE",
    "BULK_BACKLOG_PAGES",
    "BULK_APPROVAL_THRESHOLD",
    "BULK_APPROVAL_TTL_SECONDS",
)
# Logic Apps' callback hosts (prod-NN.<region>.logic.azure.com and the sovereign clouds).
DEFAULT_CALLBACK_HOSTS = ("*.logic.azure.com", "*.logic.azure.us", "*.logic.azure.cn")


class SettingsError(ValueError):
    """An app setting is missing or malformed; the message names it and the fix.

    `setting` names the app setting; `public` is a fixed description that echoes no setting
    value, for places anyone may read (the anonymous health endpoint)."""

    def __init__(self, message: str, *, setting: str | None = None, public: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting
        self.public = public or (f"app setting {setting} is invalid" if setting else "the configuration is invalid")


@dataclass(frozen=True)
class Settings:
    graph_endpoint: str = DEFAULT_GRAPH_ENDPOINT
    signout_queue: str = "signout-requests"
    status_table: str = "signouttasks"
    protected_users: frozenset[str] = field(default_factory=frozenset)
    # How long a failing task (or bulk page) keeps being retried before it gives up: a remediation
    # tool must outlast a Graph or identity-endpoint incident, not a number of deliveries.
    retry_budget_minutes: float = 60.0
    retry_base_seconds: float = 2.0
    graph_timeout_seconds: float = 15.0
    managed_identity_client_id: str | None = None
    alert_user_dimensions: frozenset[str] | None = None  # None: the parsers' defaults
    callback_allowed_hosts: tuple[str, ...] = DEFAULT_CALLBACK_HOSTS
    retention_days: int = 365
    bulk_queue: str = "signout-bulk"
    bulk_page_queue: str = "signout-bulk-pages"  # enumeration never waits behind a job's tasks
    allow_all_users: bool = False
    # 97 % of Graph's identity write quota for one app+tenant (3,000 per 150 s); per instance.
    graph_writes_per_second: float = 19.4
    graph_page_size: int = 999  # users per enumeration page: Graph's maximum $top
    # Bulk queue backlog, in pages, under which a job reads its next page (0: no limit): half a
    # page is ~25 s of work at the write pace, time enough to read and queue the next page.
    bulk_backlog_pages: float = 0.5
    # A bulk job of this many users or more waits for a second person's approval (0: never, unsafe).
    bulk_approval_threshold: int = 1000
    bulk_approval_ttl_seconds: int = 3600  # an approval request not decided by then expires

    @property
    def poison_queue(self) -> str:
        return f"{self.signout_queue}-poison"

    @property
    def retry_budget(self) -> timedelta:
        return timedelta(minutes=self.retry_budget_minutes)

    @property
    def graph_base_url(self) -> str:
        """Graph v1.0 root without a trailing slash (the SDK's default yields `/v1.0//users`)."""
        return f"{self.graph_endpoint}/v1.0"

    @property
    def graph_scope(self) -> str:
        return f"{self.graph_endpoint}/.default"


def _number(env: dict[str, str], name: str, default: float, minimum: float, maximum: float, kind: type = float) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from exc
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _int(env: dict[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    return int(_number(env, name, default, minimum, maximum, int))


def _float(env: dict[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    return float(_number(env, name, default, minimum, maximum, float))


def parse_graph_endpoint(raw: str) -> str:
    """Accept https Graph roots (public or sovereign); plain http only on loopback (the simulator)."""
    endpoint = (raw.strip() or DEFAULT_GRAPH_ENDPOINT).rstrip("/")
    parts = urlsplit(endpoint)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError(f"GRAPH_ENDPOINT must be a bare origin such as {DEFAULT_GRAPH_ENDPOINT}, got {raw!r}")
    if parts.scheme == "https" and parts.hostname:
        return endpoint
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return endpoint
    raise SettingsError(f"GRAPH_ENDPOINT must use https (plain http only on loopback), got {raw!r}")


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_USER_SEPARATORS = re.compile(r"[,;\s]+")


def _protected_users(env: dict[str, str]) -> frozenset[str]:
    """Break-glass accounts. Fails closed: an entry that is not a user identifier would protect
    nobody, so it makes the configuration invalid; a developer credential (a real tenant) needs at
    least one."""
    entries = [entry for entry in _USER_SEPARATORS.split(env.get("PROTECTED_USERS", "")) if entry]
    users = frozenset(_protected_user(position, entry) for position, entry in enumerate(entries, start=1))
    if not users and env.get("LOCAL_DEV_CREDENTIAL", "").strip():
        raise SettingsError(
            "LOCAL_DEV_CREDENTIAL is set, so this run signs out users of a real tenant: real-tenant mode needs "
            "break-glass accounts in PROTECTED_USERS (object ids or UPNs, separated by commas)",
            setting="PROTECTED_USERS",
            public="PROTECTED_USERS must name the break-glass accounts when LOCAL_DEV_CREDENTIAL is set (real-tenant mode)",
        )
    return users


def _protected_user(position: int, entry: str) -> str:
    try:
        return parse_user(entry).key
    except InvalidIdentifierError as invalid:
        # The public text names the entry by position only: health is anonymous, and the value
        # is a break-glass account's name.
        raise SettingsError(
            f"PROTECTED_USERS entry {position} ({entry!r}) {invalid}; list object ids or UPNs without "
            "quotes or brackets, separated by commas, semicolons or spaces",
            setting="PROTECTED_USERS",
            public=f"PROTECTED_USERS entry {position} is neither a user principal name nor an object id",
        ) from None


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    return Settings(
        graph_endpoint=parse_graph_endpoint(env.get("GRAPH_ENDPOINT", "")),
        signout_queue=env.get("SIGNOUT_QUEUE_NAME", "").strip() or "signout-requests",
        status_table=env.get("STATUS_TABLE_NAME", "").strip() or "signouttasks",
        protected_users=_protected_users(env),
        retry_budget_minutes=_float(env, "RETRY_BUDGET_MINUTES", 60.0, 0.05, 7 * 24 * 60.0),
        retry_base_seconds=_float(env, "RETRY_BASE_SECONDS", 2.0, 0.0, 3600.0),
        graph_timeout_seconds=_float(env, "GRAPH_TIMEOUT_SECONDS", 15.0, 1.0, 60.0),
        managed_identity_client_id=env.get("AZURE_CLIENT_ID", "").strip() or None,
        alert_user_dimensions=frozenset(_list(env.get("ALERT_USER_DIMENSIONS", ""))) or None,
        callback_allowed_hosts=_list(env.get("CALLBACK_ALLOWED_HOSTS", "")) or DEFAULT_CALLBACK_HOSTS,
        retention_days=_int(env, "RETENTION_DAYS", 365, 1, 36500),
        bulk_queue=env.get("BULK_QUEUE_NAME", "").strip() or "signout-bulk",
        bulk_page_queue=env.get("BULK_PAGE_QUEUE_NAME", "").strip() or "signout-bulk-pages",
        allow_all_users=env.get("ALLOW_ALL_USERS", "").strip().lower() == "true",
        graph_writes_per_second=_float(env, "GRAPH_WRITES_PER_SECOND", 19.4, 0.1, 1000.0),
        graph_page_size=_int(env, "GRAPH_PAGE_SIZE", 999, 1, 999),
        bulk_backlog_pages=_float(env, "BULK_BACKLOG_PAGES", 0.5, 0.0, 1000.0),
        bulk_approval_threshold=_int(env, "BULK_APPROVAL_THRESHOLD", 1000, 0, 100_000_000),
        bulk_approval_ttl_seconds=_int(env, "BULK_APPROVAL_TTL_SECONDS", 3600, 1, 7 * 24 * 3600),
    )


@cache
def get_settings() -> Settings:
    """Settings of this worker process, read once on first use (never at import)."""
    return load_settings()
