"""The queue message schema (versioned) and its tolerant decoding.

A message is plain-text JSON (host.json `messageEncoding: none`). Producers that base64 the
text (the Functions default, `QueueClient` with TextBase64EncodePolicy) are accepted too.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from shared.identifiers import InvalidIdentifier, UserRef, parse_user

SCHEMA_VERSION = 1
MAX_MESSAGE_CHARS = 64 * 1024  # the service's own limit
_TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class InvalidMessage(ValueError):
    """A message that no retry can fix; `task_id` is set when the message named one."""

    def __init__(self, reason: str, task_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id


@dataclass(frozen=True)
class TaskMessage:
    task_id: str
    user: UserRef

    def to_text(self) -> str:
        return json.dumps({"version": SCHEMA_VERSION, "taskId": self.task_id, "user": self.user.value}, separators=(",", ":"))


def is_task_id(text: object) -> bool:
    return isinstance(text, str) and _TASK_ID.fullmatch(text) is not None


def _json_text(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InvalidMessage("message is not UTF-8 text") from exc
    if text.startswith("{"):
        return text
    try:  # a base64-encoded message
        decoded = base64.b64decode(text, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidMessage("message is neither JSON nor base64-encoded JSON") from exc
    if not decoded.startswith("{"):
        raise InvalidMessage("message is not a JSON object")
    return decoded


def decode_message(raw: bytes) -> TaskMessage:
    if len(raw) > MAX_MESSAGE_CHARS * 4:
        raise InvalidMessage("message is larger than a queue message can be")
    try:
        body: Any = json.loads(_json_text(raw))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidMessage(f"message is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidMessage("message is not a JSON object")
    task_id = body.get("taskId")
    named = task_id if is_task_id(task_id) else None
    if body.get("version") != SCHEMA_VERSION:
        raise InvalidMessage(f"unsupported message version {body.get('version')!r} (expected {SCHEMA_VERSION})", named)
    if not named:
        raise InvalidMessage("taskId must be a lowercase GUID")
    try:
        user = parse_user(body.get("user"))
    except InvalidIdentifier as exc:
        raise InvalidMessage(f"user {exc}", named) from exc
    return TaskMessage(named, user)
