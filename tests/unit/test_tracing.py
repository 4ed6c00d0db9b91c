"""One trace per sign-out across the queue: the task message carries the W3C trace context of the
request that queued it, validated, and used only as the parent of the worker's attempt span."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.domain.identifiers import UserRef, parse_user
from shared.domain.messages import InvalidMessageError, TaskMessage, decode_message
from shared.domain.requests import SignoutRequest
from shared.domain.tasks import TaskStatus
from shared.usecases.intake import accept_user
from tests.fakes import FakeRuntime, FakeUser

SCHEMA = json.loads((Path(__file__).parents[2] / "shared/schemas/queue-message.v1.schema.json").read_text())
TASK = "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10"
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The process's tracer provider (set once: OpenTelemetry allows one) with an in-memory exporter."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    return _EXPORTER


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [span for span in exporter.get_finished_spans() if span.name == name]
    return span


def test_a_task_message_carries_its_traceparent_and_version_1_stays_valid() -> None:
    message = {"version": 1, "taskId": TASK, "user": "adele@contoso.com", "traceparent": PARENT}
    assert not list(Draft202012Validator(SCHEMA).iter_errors(message))
    decoded = decode_message(json.dumps(message).encode())
    assert isinstance(decoded, TaskMessage)
    assert decoded.traceparent == PARENT
    assert decode_message(decoded.to_text().encode()) == decoded
    assert decoded == TaskMessage(TASK, parse_user("adele@contoso.com")), "tracing is not part of what the task is"


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        PARENT.upper(),
        PARENT + "\n",
        PARENT + "-extra",
        1,
        {"traceparent": PARENT},
    ],
)
def test_an_invalid_traceparent_fails_schema_and_decoder(traceparent: object) -> None:
    message = {"version": 1, "taskId": TASK, "user": "adele@contoso.com", "traceparent": traceparent}
    assert list(Draft202012Validator(SCHEMA).iter_errors(message))
    with pytest.raises(InvalidMessageError) as raised:
        decode_message(json.dumps(message).encode())
    assert raised.value.task_id == TASK


def test_only_task_messages_carry_it() -> None:
    with pytest.raises(InvalidMessageError):
        decode_message(json.dumps({"user": "adele@contoso.com", "traceparent": PARENT}).encode())


async def test_the_attempt_continues_the_trace_of_the_request_that_queued_it(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef, spans: InMemorySpanExporter
) -> None:
    task = await accept_user(rt, alice_ref, SignoutRequest((alice_ref,)), None)
    await rt.deliver(rt.settings.signout_queue)
    assert rt.tasks.records[task.id].status is TaskStatus.SUCCEEDED
    accept, attempt = named(spans, "signout.accept"), named(spans, "signout.attempt")
    assert accept.context is not None and attempt.parent is not None
    assert attempt.context is not None and attempt.context.trace_id == accept.context.trace_id
    assert attempt.parent.span_id == accept.context.span_id
    assert attempt.attributes is not None and attempt.attributes["signout.task_id"] == task.id
    assert rt.graph.revoke_count(alice) == 1


async def test_a_message_traceparent_is_only_a_parent(
    rt: FakeRuntime, alice: FakeUser, alice_ref: UserRef, spans: InMemorySpanExporter
) -> None:
    """A message someone else wrote with a traceparent of their choosing: it names the trace, and the
    task still runs exactly as its record says (the token decides, not the trace)."""
    task = await accept_user(rt, alice_ref, SignoutRequest((alice_ref,)), None)
    queued = rt.queue.pop(rt.settings.signout_queue)
    assert queued is not None
    forged = TaskMessage(task.id, alice_ref, "x" * 22, PARENT).to_text()
    rt.queue.sent.clear()
    await rt.queue.put(rt.settings.signout_queue, forged)
    await rt.deliver(rt.settings.signout_queue)
    assert rt.tasks.records[task.id].status is TaskStatus.QUEUED, "a message without the task's token changes nothing"
    assert rt.graph.revoke_count(alice) == 0
    attempt = named(spans, "signout.attempt")
    assert attempt.context is not None and format(attempt.context.trace_id, "032x") == PARENT.split("-")[1]
