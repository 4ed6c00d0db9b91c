"""Queue messages come from anyone allowed to write to the queue: any bytes decode into a message
the worker can act on, or into InvalidMessageError (logged and dropped); nothing else escapes.

Another exception would go back to the Functions host, which retries the message and finally
poisons it: a message that no retry can fix must never take that path.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from shared.domain import messages
from shared.domain.identifiers import parse_user
from shared.domain.messages import MAX_MESSAGE_CHARS, DirectRequest, InvalidMessageError, TaskMessage, decode_message, is_task_id
from tests.fuzz.strategies import encoded, fuzz_settings, identifier_text, json_values, nested

# Every message type the decoder can return (a job page message, where bulk jobs exist, too).
MESSAGE_TYPES = tuple(
    kind for kind in (TaskMessage, DirectRequest, getattr(messages, "JobPageMessage", None)) if kind is not None
)
task_ids = st.uuids().map(str) | st.sampled_from(["nope", str(uuid.UUID(int=0)).upper(), "", " " + str(uuid.UUID(int=1))])
versions = st.sampled_from([1, 2, 0, "1", 1.0, True, None, -1]) | json_values
fields = st.fixed_dictionaries(
    {},
    optional={
        "version": versions,
        "taskId": task_ids | json_values,
        "jobId": task_ids | json_values,
        "page": st.integers(-2, 5) | json_values,
        "user": identifier_text | json_values,
        "description": st.text(max_size=30) | st.sampled_from(["x" * 1025, "a\r\nb", "\x1b[2J"]) | json_values,
        "correlationId": st.text(max_size=30)
        | st.sampled_from(["x" * 129, "a\r\nb", "a\tb", "a\x85b", "a\u2028b"])
        | json_values,
    },
)
objects = fields | st.dictionaries(st.text(max_size=10), json_values, max_size=5)


def plain(value: Any) -> bytes:
    return encoded(value)


def base64_text(value: Any) -> bytes:
    return base64.b64encode(encoded(value))


raw_messages = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=60).map(str.encode),  # plain text, often non-ASCII
    st.builds(lambda value, wrap: wrap(value), objects, st.sampled_from([plain, base64_text])),
    json_values.map(plain),
    json_values.map(base64_text),
    st.builds(lambda value, pad: pad + encoded(value) + pad, objects, st.sampled_from([b" ", b"\n", b"\xef\xbb\xbf", b"\t\r\n"])),
)


@fuzz_settings(300)
@given(raw=raw_messages)
@example(raw=b"")
@example(raw=b"{")
@example(raw=b"\xff\xfe{}")
@example(raw=b"e30=")  # base64 of {}
@example(raw=b"[" * 100_000)
@example(raw=nested(100_000).encode())
@example(raw=base64.b64encode(nested(50_000).encode()))
@example(raw=b"{" + b" " * (MAX_MESSAGE_CHARS * 4) + b"}")
@example(raw=b'{"user": "\\ud800@contoso.com"}')
@example(
    raw=b'{"version": 1, "taskId": "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10", "user": "adele@contoso.com", "extra": {"a": [1]}}'
)
@example(raw=b'{"user": "adele@contoso.com", "description": "a\\r\\n2026-01-01 INFO forged"}')
@example(raw=b'{"user": "adele@contoso.com", "correlationId": "a\\r\\n2026-01-01 INFO forged"}')  # defect 2
@example(raw="Zo\u00eb@contoso.com".encode())  # defect 3: non-ASCII text that is not JSON
@example(raw=b'{"user": "adele@contoso.com", "x": ' + b"1" * 5000 + b"}")  # defect 3: over 4,300 digits
@example(raw=base64.b64encode(b'{"version": ' + b"9" * 5000 + b"}"))
@example(raw=b'{"version": true, "user": "adele@contoso.com"}')  # defect 8
@example(raw=b'{"version": 1.0, "taskId": "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10", "user": "adele@contoso.com"}')
def test_any_bytes_are_a_message_or_invalid_message(raw: bytes) -> None:
    try:
        message = decode_message(raw)
    except InvalidMessageError as invalid:
        assert isinstance(invalid.reason, str) and invalid.reason
        assert invalid.task_id is None or is_task_id(invalid.task_id)  # only a well-formed id is ever failed
        return
    assert isinstance(message, MESSAGE_TYPES)
    if isinstance(message, TaskMessage):
        assert is_task_id(message.task_id)
        assert parse_user(message.user.value) == message.user
        assert decode_message(message.to_text().encode()) == message  # what the service writes, it reads back
    elif isinstance(message, DirectRequest):
        assert parse_user(message.user.value) == message.user
        assert isinstance(message.description, str) and len(message.description) <= messages.MAX_DESCRIPTION
        assert message.correlation_id is None or len(message.correlation_id) <= messages.MAX_CORRELATION_ID
        assert message.correlation_id is None or message.correlation_id.isprintable()  # it is logged
        assert is_task_id(DirectRequest.task_id("any-message-id"))
    else:  # a bulk job page
        assert is_task_id(message.job_id) and isinstance(message.page, int) and message.page >= 1
        assert decode_message(message.to_text().encode()) == message


@fuzz_settings(150)
@given(
    version=versions,
    fields=st.sampled_from(
        [
            {"user": "adele@contoso.com"},
            {"taskId": "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10", "user": "adele@contoso.com"},
            {"jobId": "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10", "page": 2},
        ]
    ),
    wrap=st.sampled_from([plain, base64_text]),
)
@example(version=True, fields={"user": "adele@contoso.com"}, wrap=plain)
@example(version=1.0, fields={"jobId": "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10", "page": 2}, wrap=plain)
def test_only_the_integer_1_is_version_1(version: Any, fields: dict[str, Any], wrap: Any) -> None:
    """`version` is the integer 1: not true (Python's True == 1), not 1.0, not "1". (Stricter than the
    published schema: a JSON Schema validator matches `const: 1` with 1.0 too.)"""
    try:
        decode_message(wrap({"version": version, **fields}))
    except InvalidMessageError:
        assert not (type(version) is int and version == 1)
    else:
        assert type(version) is int and version == 1


@fuzz_settings(150)
@given(task_id=st.uuids().map(str), raw_user=identifier_text, wrap=st.sampled_from([plain, base64_text]))
def test_a_task_message_names_the_task_only_when_its_id_is_well_formed(task_id: str, raw_user: str, wrap: Any) -> None:
    """A message that names a task but is otherwise invalid fails that task (invalid_request);
    one whose task id is malformed names no task, so a writer cannot fail tasks by near-miss ids."""
    for candidate, named in ((task_id, task_id), (task_id.upper(), None), (" " + task_id, None), (task_id[:-1], None)):
        raw = wrap({"version": 1, "taskId": candidate, "user": raw_user})
        try:
            message = decode_message(raw)
        except InvalidMessageError as invalid:
            assert invalid.task_id == named
        else:
            assert isinstance(message, TaskMessage) and message.task_id == candidate == named
            assert message.user == parse_user(raw_user)


def test_the_decoder_returns_only_the_documented_message_types() -> None:
    payloads = [{"user": "adele@contoso.com"}, {"version": 1, "taskId": str(uuid.uuid4()), "user": "adele@contoso.com"}]
    assert {type(decode_message(json.dumps(p).encode())) for p in payloads} == {DirectRequest, TaskMessage}
