"""What the service knows of the directory (Microsoft Graph), independent of how it is called:
users, pages of users, a call's result, and a failed call. The Graph adapter produces these; use
cases consume them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")

TOKEN_TIMEOUT_SECONDS = 20.0  # a Graph call's token is got within this (azure-identity retries ~5 s itself)
PAGE_FIELDS = ("id", "userPrincipalName", "userType")  # what a bulk job reads of each user


@dataclass(frozen=True)
class GraphUser:
    id: str
    user_principal_name: str | None
    user_type: str | None
    sessions_valid_from: datetime | None


@dataclass(frozen=True)
class GraphResult(Generic[T]):
    value: T
    request_id: str | None
    limit_percentage: float | None = None  # x-ms-throttle-limit-percentage, sent from 0.8


@dataclass(frozen=True)
class PageUser:
    id: str
    user_principal_name: str | None
    user_type: str | None


@dataclass(frozen=True)
class UserPage:
    users: list[PageUser]
    next_link: str | None


class GraphError(Exception):
    """A Graph call failed; `transient` says whether trying again later can help."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        transient: bool = False,
        permission: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        self.transient = transient
        self.permission = permission  # the application permission the failed call needs
