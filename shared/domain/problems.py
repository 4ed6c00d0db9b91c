"""RFC 9457 problem details: the one error shape every HTTP endpoint answers with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass
class ProblemError(Exception):
    """Raise anywhere in request handling; the API layer renders it as problem+json."""

    status: int
    title: str
    detail: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # extension members (RFC 9457 section 3.2)

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "about:blank", "title": self.title, "status": self.status, **self.extra}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        return body


def field_error(pointer: str, detail: str) -> dict[str, Any]:
    """One offending field or entry, located by a JSON Pointer into the request body."""
    return {"pointer": pointer, "detail": detail}


def pointer_to(name: str) -> str:
    """The JSON Pointer (RFC 6901) of a top-level member: `~` and `/` in names are escaped."""
    return "/" + name.replace("~", "~0").replace("/", "~1")
