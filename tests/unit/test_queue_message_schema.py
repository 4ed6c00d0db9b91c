"""The published queue-message JSON Schema and the decoder agree on what a message is."""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from shared.domain.messages import DirectRequest, InvalidMessageError, TaskMessage, decode_message

SCHEMA = json.loads((Path(__file__).parents[2] / "shared/schemas/queue-message.v1.schema.json").read_text())
TASK = "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10"

VALID = [
    {"user": "adele.vance@contoso.com"},
    {"user": "adele.vance@contoso.com", "description": "Sentinel incident 42", "correlationId": "42"},
    {"version": 1, "user": "6f3e2b1a-0c4d-4e5f-8a9b-1c2d3e4f5a6b"},
    {"user": "alex_fabrikam.com#EXT#@contoso.onmicrosoft.com"},
    {"version": 1, "taskId": TASK, "user": "adele@contoso.com"},
]
INVALID = [
    {},
    {"user": ""},
    {"user": "../x"},
    {"user": "a@contoso.com", "extra": 1},
    {"user": "a@contoso.com", "description": "x" * 1025},
    {"user": "a@contoso.com", "version": 2},
    {"taskId": TASK, "user": "a@contoso.com"},
    {"version": 1, "taskId": "nope", "user": "a@contoso.com"},
    {"user": ["a@contoso.com"]},
]


def test_schema_is_valid_json_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("message", VALID)
def test_valid_messages_pass_both(message: dict) -> None:
    assert not list(Draft202012Validator(SCHEMA).iter_errors(message))
    assert isinstance(decode_message(json.dumps(message).encode()), (TaskMessage, DirectRequest))


@pytest.mark.parametrize("message", INVALID)
def test_invalid_messages_fail_both(message: dict) -> None:
    assert list(Draft202012Validator(SCHEMA).iter_errors(message))
    with pytest.raises(InvalidMessageError):
        decode_message(json.dumps(message).encode())


def test_direct_request_task_id_is_stable_per_queue_message() -> None:
    assert DirectRequest.task_id("m-1") == DirectRequest.task_id("m-1") != DirectRequest.task_id("m-2")
