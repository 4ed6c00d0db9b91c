"""Parsing and validation of `POST /api/signouts` bodies into a typed request."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.domain.callback_urls import MAX_URL_LENGTH, InvalidCallbackError, check_callback_url
from shared.domain.identifiers import InvalidIdentifierError, UserRef, is_object_id, parse_user
from shared.domain.problems import ProblemError, field_error, pointer_to
from shared.domain.text import printable
from shared.settings import DEFAULT_CALLBACK_HOSTS

MAX_BODY_BYTES = 512 * 1024  # 1,000 users of 256 characters each, and room to spare
MAX_USERS = 1000
MAX_DESCRIPTION = 1024
MAX_CORRELATION_ID = 128
KNOWN_FIELDS = frozenset({"users", "user", "description", "correlationId", "callbackUrl"})


@dataclass(frozen=True)
class SignoutRequest:
    users: tuple[UserRef, ...]
    description: str = ""
    correlation_id: str | None = None
    callback_url: str | None = None
    source: str = "api"
    alert_id: str | None = None

    def fingerprint(self) -> str:
        """What an Idempotency-Key is bound to: the same key with another body is refused."""
        canonical = {
            "users": [user.key for user in self.users],
            "description": self.description,
            "correlationId": self.correlation_id,
            "callbackUrl": self.callback_url,
        }
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def require_json(content_type: str | None) -> None:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ProblemError(415, "Unsupported media type", f"send the body as application/json, not {media_type or 'nothing'}")


def load_json_object(body: bytes, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    if len(body) > limit:
        raise ProblemError(413, "Request body too large", f"the body is {len(body)} bytes; the limit is {limit}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON, bad UTF-8, integers over 4,300 digits
        raise ProblemError(400, "Malformed JSON", f"the body is not valid JSON: {str(exc)[:200]}") from exc
    if not isinstance(data, dict):
        raise ProblemError(400, "Invalid request", "the body must be a JSON object")
    return data


def _text(data: dict[str, Any], name: str, limit: int, errors: list[dict[str, Any]], multiline: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(field_error(f"/{name}", "must be a string"))
        return None
    if len(value) > limit:
        errors.append(field_error(f"/{name}", f"must be at most {limit} characters (got {len(value)})"))
        return None
    if not printable(value, multiline):
        errors.append(field_error(f"/{name}", "must not contain control characters"))
        return None
    return value


def _user_list(data: dict[str, Any], errors: list[dict[str, Any]]) -> tuple[list[Any], str]:
    if "users" in data and "user" in data:
        errors.append(field_error("/user", "give either `user` or `users`, not both"))
        return [], "/users"
    if "user" in data:
        return [data["user"]], "/user"
    raw = data.get("users")
    if raw is None:
        errors.append(field_error("/users", "is required: a list of user principal names or object ids"))
        return [], "/users"
    if not isinstance(raw, list):
        errors.append(field_error("/users", "must be a list"))
        return [], "/users"
    if not raw:
        errors.append(field_error("/users", "must name at least one user"))
    return raw, "/users"


def _callback(data: dict[str, Any], allowed_hosts: tuple[str, ...], errors: list[dict[str, Any]]) -> str | None:
    url = _text(data, "callbackUrl", MAX_URL_LENGTH, errors)
    if url is None:
        return None
    try:
        return check_callback_url(url, allowed_hosts)
    except InvalidCallbackError as exc:
        errors.append(field_error("/callbackUrl", str(exc)))
        return None


def parse_signout_request(data: dict[str, Any], callback_hosts: tuple[str, ...] = DEFAULT_CALLBACK_HOSTS) -> SignoutRequest:
    errors = [field_error(pointer_to(name), "is not a known field") for name in sorted(set(data) - KNOWN_FIELDS)]
    raw_users, pointer = _user_list(data, errors)
    if len(raw_users) > MAX_USERS:
        raise ProblemError(413, "Too many users", f"{len(raw_users)} users in one request; the limit is {MAX_USERS}")
    users: dict[str, UserRef] = {}  # duplicates in one request become one task
    for index, raw in enumerate(raw_users):
        try:
            user = parse_user(raw)
        except InvalidIdentifierError as exc:
            errors.append(field_error(pointer if pointer == "/user" else f"{pointer}/{index}", str(exc)))
            continue
        users.setdefault(user.key, user)
    description = _text(data, "description", MAX_DESCRIPTION, errors, multiline=True)
    correlation_id = _text(data, "correlationId", MAX_CORRELATION_ID, errors)
    callback_url = _callback(data, callback_hosts, errors)
    if errors:
        raise ProblemError(400, "Invalid request", f"{len(errors)} problem(s) in the request body", errors)
    return SignoutRequest(tuple(users.values()), description or "", correlation_id, callback_url)


ALL_USERS_CONFIRMATION = "sign out all users"  # exactly this: a deliberate phrase, not a flag
BULK_FIELDS = frozenset({"group", "allUsers", "confirm", "preview", "description", "correlationId"})


def parse_bulk_target(data: dict[str, Any], allow_all_users: bool, preview: bool = False) -> str | None:
    """The group id, or None for every user; raises a ProblemError for a target that is not allowed.
    A preview signs nobody out, so it needs no confirmation."""
    if "group" in data:
        group = data["group"]
        if not isinstance(group, str) or not is_object_id(group.strip()):
            raise ProblemError(
                400, "Invalid request", "group must be a group object id", [field_error("/group", "is not a GUID")]
            )
        return group.strip().lower()
    if data.get("allUsers") is not True:
        raise ProblemError(400, "Invalid request", "allUsers must be true", [field_error("/allUsers", "must be true")])
    if not allow_all_users:
        raise ProblemError(
            403, "Forbidden", "signing out every user is disabled: set the app setting ALLOW_ALL_USERS=true to allow it"
        )
    if not preview and data.get("confirm") != ALL_USERS_CONFIRMATION:
        raise ProblemError(
            400,
            "Confirmation required",
            f'add "confirm": "{ALL_USERS_CONFIRMATION}" (exactly) to sign out every user of the tenant',
            [field_error("/confirm", f"must be {ALL_USERS_CONFIRMATION!r}")],
        )
    return None


@dataclass(frozen=True)
class BulkRequest:
    group_id: str | None  # None: every user of the tenant
    description: str = ""
    correlation_id: str | None = None
    preview: bool = False  # only say what the job would do; create nothing

    def fingerprint(self) -> str:
        canonical = {
            "group": self.group_id,
            "allUsers": self.group_id is None,
            "description": self.description,
            "correlationId": self.correlation_id,
        }
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def parse_bulk_request(data: dict[str, Any], allow_all_users: bool) -> BulkRequest:
    """`{"group": "<group object id>"}` or `{"allUsers": true, "confirm": "sign out all users"}`,
    either with `"preview": true` (no confirmation needed)."""
    errors = [
        field_error(pointer_to(name), "is not a known field for a bulk sign-out") for name in sorted(set(data) - BULK_FIELDS)
    ]
    if "group" in data and "allUsers" in data:
        errors.append(field_error("/allUsers", "give either `group` or `allUsers`, not both"))
    preview = data.get("preview", False)
    if not isinstance(preview, bool):
        errors.append(field_error("/preview", "must be true or false"))
    description = _text(data, "description", MAX_DESCRIPTION, errors, multiline=True)
    correlation_id = _text(data, "correlationId", MAX_CORRELATION_ID, errors)
    if errors:
        raise ProblemError(400, "Invalid request", f"{len(errors)} problem(s) in the request body", errors)
    target = parse_bulk_target(data, allow_all_users, preview is True)
    return BulkRequest(target, description or "", correlation_id, preview is True)


DECISION_FIELDS = frozenset({"comment"})
MAX_DECISION_BYTES = 8 * 1024


def parse_decision(data: dict[str, Any]) -> str | None:
    """`POST /api/jobs/{id}/approve|reject` bodies: `{"comment": "..."}` (optional), recorded on the job."""
    errors = [field_error(pointer_to(name), "is not a known field") for name in sorted(set(data) - DECISION_FIELDS)]
    comment = _text(data, "comment", MAX_DESCRIPTION, errors, multiline=True)
    if errors:
        raise ProblemError(400, "Invalid request", f"{len(errors)} problem(s) in the request body", errors)
    return comment
