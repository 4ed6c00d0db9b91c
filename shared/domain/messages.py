"""The queue message schema (versioned, published in shared/schemas/) and its tolerant decoding.

Plain-text JSON (host.json `messageEncoding: none`); producers that base64 the text (the
Functions default, `QueueClient` with TextBase64EncodePolicy) are accepted too:
- a task message `{"version": 1, "taskId", "user", "token"?, "traceparent"?}`, written by this
  service (`traceparent`: the W3C trace context of the request that queued it, used only as the
  parent of the worker's spans: it selects nothing and changes nothing a task does);
- a callback message `{"version": 1, "callbackFor", "token"}`, written by this service;
- a job page message `{"version": 1, "jobId", "page", "token"?}`, written by this service;
- a direct request `{"user", "description"?, "correlationId"?}`, written by anyone allowed to
  put messages on the queue, e.g. Logic Apps' Azure Queues connector ("Put a message"). Its task
  id is derived from the queue message id, so a redelivery never creates a second task.

Anyone who may put messages on a queue can write any of these shapes, so a service message
carries its task's (or job's) `token`, a secret that is never shown by the API: a message whose
token does not match its record is dropped, and so can neither run, fail nor widen anything.
Each queue trigger accepts only its own kinds (see `shared/triggers/queues.py`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from shared.domain.identifiers import InvalidIdentifierError, UserRef, parse_user
from shared.domain.text import printable

SCHEMA_VERSION = 1
MAX_MESSAGE_CHARS = 64 * 1024  # the service's own limit
DIRECT_FIELDS = frozenset({"version", "user", "description", "correlationId"})
TASK_FIELDS = frozenset({"version", "taskId", "user", "token", "traceparent"})
PAGE_FIELDS = frozenset({"version", "jobId", "page", "link", "token"})  # `link`: read by older versions only
CALLBACK_FIELDS = frozenset({"version", "callbackFor", "token"})
MAX_DESCRIPTION = 1024
MAX_CORRELATION_ID = 128
_DIRECT_NAMESPACE = uuid.UUID("6c4f5d2e-4f0a-4b8e-9a53-1f2d3c4b5a69")
_TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
# W3C trace context, version 00 (all-zero ids are invalid, as the spec says).
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


def new_token() -> str:
    """The secret a record's own messages carry (128 bits)."""
    return secrets.token_urlsafe(16)


def token_matches(expected: str | None, given: str | None) -> bool:
    """A record made before tokens existed (None) accepts messages without one."""
    if expected is None:
        return given is None
    return given is not None and hmac.compare_digest(expected, given)


class InvalidMessageError(ValueError):
    """A message that no retry can fix; `task_id` is set when the message named one."""

    def __init__(self, reason: str, task_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id


@dataclass(frozen=True)
class TaskMessage:
    task_id: str
    user: UserRef
    token: str | None = None
    traceparent: str | None = field(default=None, compare=False)  # tracing only: not part of what the task is

    def to_text(self) -> str:
        body = {
            "version": SCHEMA_VERSION,
            "taskId": self.task_id,
            "user": self.user.value,
            "token": self.token,
            "traceparent": self.traceparent,
        }
        return _compact(body)


@dataclass(frozen=True)
class CallbackMessage:
    """Deliver the finished task's Logic Apps callbacks (its own and those of requests that joined it)."""

    task_id: str
    token: str | None = None

    def to_text(self) -> str:
        return _compact({"version": SCHEMA_VERSION, "callbackFor": self.task_id, "token": self.token})


@dataclass(frozen=True)
class DirectRequest:
    user: UserRef
    description: str = ""
    correlation_id: str | None = None

    @staticmethod
    def task_id(message_id: str) -> str:
        """Stable across redeliveries of the same queue message."""
        return str(uuid.uuid5(_DIRECT_NAMESPACE, f"queue-message:{message_id}"))


@dataclass(frozen=True)
class JobPageMessage:
    """Bulk fan-out: process page `page` (1-based) of a job's users, then queue the next page.
    The page's Graph link is never carried here: the job row holds it."""

    job_id: str
    page: int
    token: str | None = None

    def to_text(self) -> str:
        return _compact({"version": SCHEMA_VERSION, "jobId": self.job_id, "page": self.page, "token": self.token})


Message = TaskMessage | DirectRequest | JobPageMessage | CallbackMessage


def _compact(body: dict[str, Any]) -> str:
    return json.dumps({key: value for key, value in body.items() if value is not None}, separators=(",", ":"))


def is_task_id(text: object) -> TypeGuard[str]:
    return isinstance(text, str) and _TASK_ID.fullmatch(text) is not None


def _json_text(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InvalidMessageError("message is not UTF-8 text") from exc
    if text.startswith("{"):
        return text
    try:  # a base64-encoded message
        decoded = base64.b64decode(text, validate=True).decode("utf-8").strip()
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text is not base64 either
        raise InvalidMessageError("message is neither JSON nor base64-encoded JSON") from exc
    if not decoded.startswith("{"):
        raise InvalidMessageError("message is not a JSON object")
    return decoded


def decode_message(raw: bytes) -> Message:
    if len(raw) > MAX_MESSAGE_CHARS * 4:
        raise InvalidMessageError("message is larger than a queue message can be")
    try:
        body: Any = json.loads(_json_text(raw))
    except (ValueError, RecursionError) as exc:  # ValueError also: integers over 4,300 digits
        raise InvalidMessageError(f"message is not valid JSON: {str(exc)[:200]}") from exc
    if not isinstance(body, dict):
        raise InvalidMessageError("message is not a JSON object")
    if "taskId" in body:
        return _task_message(body)
    if "jobId" in body:
        return _job_page(body)
    if "callbackFor" in body:
        return _callback(body)
    return _direct_request(body)


def _job_page(body: dict[str, Any]) -> JobPageMessage:
    job_id, page = body.get("jobId"), body.get("page")
    if not _is_version(body.get("version")) or not {"version", "jobId", "page"} <= set(body) <= PAGE_FIELDS:
        raise InvalidMessageError("a job page message is {version: 1, jobId, page, token?}")
    if not is_task_id(job_id) or not isinstance(page, int) or isinstance(page, bool) or page < 1:
        raise InvalidMessageError("jobId must be a lowercase GUID and page a positive integer")
    return JobPageMessage(job_id, page, _token(body))


def _task_message(body: dict[str, Any]) -> TaskMessage:
    task_id = body.get("taskId")
    named = task_id if is_task_id(task_id) else None
    if not _is_version(body.get("version")):
        raise InvalidMessageError(f"unsupported message version {body.get('version')!r} (expected {SCHEMA_VERSION})", named)
    if not named:
        raise InvalidMessageError("taskId must be a lowercase GUID")
    if not set(body) <= TASK_FIELDS:
        raise InvalidMessageError("a task message is {version: 1, taskId, user, token?, traceparent?}", named)
    return TaskMessage(named, _user(body, named), _token(body, named), _traceparent(body, named))


def _traceparent(body: dict[str, Any], named: str) -> str | None:
    value = body.get("traceparent")
    if value is not None and not (isinstance(value, str) and _TRACEPARENT.fullmatch(value)):
        raise InvalidMessageError("traceparent must be a W3C trace context (00-<trace id>-<span id>-<flags>)", named)
    return value


def _callback(body: dict[str, Any]) -> CallbackMessage:
    task_id = body.get("callbackFor")
    if not _is_version(body.get("version")) or not set(body) <= CALLBACK_FIELDS or not is_task_id(task_id):
        raise InvalidMessageError("a callback message is {version: 1, callbackFor: <task id>, token?}")
    return CallbackMessage(task_id, _token(body, task_id))


def _token(body: dict[str, Any], named: str | None = None) -> str | None:
    token = body.get("token")
    if token is not None and not (isinstance(token, str) and _TOKEN.fullmatch(token)):
        raise InvalidMessageError("token must be 16-64 URL-safe characters", named)
    return token


def _direct_request(body: dict[str, Any]) -> DirectRequest:
    unknown = sorted(set(body) - DIRECT_FIELDS)
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])  # repr: field names come from the message
        raise InvalidMessageError(f"unknown field(s) {names}; a direct request has user, description, correlationId")
    if not _is_version(body.get("version", SCHEMA_VERSION)):
        raise InvalidMessageError(f"unsupported message version {body.get('version')!r} (expected {SCHEMA_VERSION})")
    return DirectRequest(
        _user(body, None),
        _text(body, "description", MAX_DESCRIPTION) or "",
        _text(body, "correlationId", MAX_CORRELATION_ID),
    )


def _is_version(value: object) -> bool:
    return type(value) is int and value == SCHEMA_VERSION  # not True, not 1.0


def _user(body: dict[str, Any], task_id: str | None) -> UserRef:
    try:
        return parse_user(body.get("user"))
    except InvalidIdentifierError as exc:
        raise InvalidMessageError(f"user {exc}", task_id) from exc


def _text(body: dict[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidMessageError(f"{name} must be a string of at most {limit} characters")
    if not printable(value, multiline=name == "description"):
        raise InvalidMessageError(f"{name} must not contain control characters")
    return value
