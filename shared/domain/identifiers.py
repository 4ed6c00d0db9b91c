"""User identifiers: validated once at the edge, carried as a typed value afterwards.

Graph accepts `/users/{object id | userPrincipalName}`. Anything else a caller sends
(paths, query strings, OData) is rejected here, and the value is still URL-encoded by
the SDK when it builds the request, so no input can reach another Graph path.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Entra UPN characters: A-Z a-z 0-9 ' . - _ ! # ^ ~ (+ appears in guest UPNs made from mail
# addresses). `#` is what guest UPNs use: alice_fabrikam.com#EXT#@contoso.onmicrosoft.com
_UPN_LOCAL = re.compile(r"[A-Za-z0-9'._!#^~+\-]{1,113}")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")
MAX_UPN_LENGTH = 256


class InvalidIdentifierError(ValueError):
    """The text is neither an Entra object id nor a user principal name."""


@dataclass(frozen=True)
class UserRef:
    """A validated user identifier, as the caller gave it (trimmed)."""

    value: str
    kind: Literal["objectId", "upn"]

    @property
    def key(self) -> str:
        """Case-insensitive identity used for matching (Entra ids and UPNs ignore case)."""
        return self.value.lower()

    @property
    def is_guest_upn(self) -> bool:
        return "#ext#@" in self.key

    @property
    def partition(self) -> str:
        """Table partition for this user's index (hashed: UPNs may hold `#`, banned in keys)."""
        return "user-" + hashlib.sha256(self.key.encode()).hexdigest()[:40]


def is_object_id(text: str) -> bool:
    return _GUID.fullmatch(text) is not None


def _upn_problem(text: str) -> str | None:
    if len(text) > MAX_UPN_LENGTH:
        return f"is longer than {MAX_UPN_LENGTH} characters"
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return "is neither an object id (GUID) nor a user principal name (name@domain)"
    if not _UPN_LOCAL.fullmatch(local):
        return "has characters a user principal name cannot contain"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "has a misplaced '.' in the user principal name"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        return "has an invalid domain"
    return None


def parse_user(raw: object) -> UserRef:
    """Validate one identifier; raise InvalidIdentifierError with a reason a caller can act on."""
    if not isinstance(raw, str):
        raise InvalidIdentifierError("must be a string")
    text = raw.strip()
    if not text:
        raise InvalidIdentifierError("is empty")
    if is_object_id(text):
        return UserRef(text.lower(), "objectId")
    problem = _upn_problem(text)
    if problem:
        raise InvalidIdentifierError(problem)
    return UserRef(text, "upn")
