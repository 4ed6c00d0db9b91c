"""Queue messages, task transitions and error classification."""

import base64
from datetime import timedelta

import pytest

from shared.adapters.graph import parse_retry_after
from shared.adapters.tables.tasks import task_from_entity, task_to_entity
from shared.domain.directory import GraphError
from shared.domain.identifiers import parse_user
from shared.domain.messages import InvalidMessageError, TaskMessage, decode_message
from shared.domain.tasks import ErrorCategory, InvalidTransitionError, TaskRecord, TaskStatus, utcnow
from shared.usecases.process_task import classify, retry_delay

TASK = "0b7c3f52-8f0e-4c7e-9d53-2f1c9a7e6b10"


def message() -> TaskMessage:
    return TaskMessage(TASK, parse_user("adele@contoso.com"))


def test_plain_text_message_round_trips() -> None:
    assert decode_message(message().to_text().encode()) == message()


def test_base64_message_is_accepted_too() -> None:
    encoded = base64.b64encode(message().to_text().encode())
    assert decode_message(encoded) == message()


@pytest.mark.parametrize(
    ("raw", "task_id"),
    [
        (b"not json at all", None),
        (b"{broken", None),
        (b"[]", None),
        (b'{"version": 1}', None),
        (b'{"version": 2, "taskId": "%s", "user": "a@contoso.com"}' % TASK.encode(), TASK),
        (b'{"version": 1, "taskId": "%s", "user": "../x"}' % TASK.encode(), TASK),
        (b'{"version": 1, "taskId": "../../etc", "user": "a@contoso.com"}', None),
        (b"\xff\xfe\xfd", None),
    ],
)
def test_invalid_messages_say_why_and_keep_the_task_id(raw: bytes, task_id: str | None) -> None:
    with pytest.raises(InvalidMessageError) as caught:
        decode_message(raw)
    assert caught.value.task_id == task_id
    assert caught.value.reason


def record(status: TaskStatus) -> TaskRecord:
    now = utcnow()
    return TaskRecord(id=TASK, user="adele@contoso.com", status=status, created_at=now, updated_at=now)


@pytest.mark.parametrize("terminal", [TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED])
@pytest.mark.parametrize("wanted", list(TaskStatus))
def test_terminal_tasks_never_move(terminal: TaskStatus, wanted: TaskStatus) -> None:
    with pytest.raises(InvalidTransitionError):
        record(terminal).moved_to(wanted)


def test_queued_cannot_skip_straight_to_succeeded() -> None:
    with pytest.raises(InvalidTransitionError):
        record(TaskStatus.QUEUED).moved_to(TaskStatus.SUCCEEDED)


def test_completion_time_is_set_only_for_terminal_statuses() -> None:
    running = record(TaskStatus.QUEUED).moved_to(TaskStatus.IN_PROGRESS, attempts=1)
    assert running.completed_at is None and running.attempts == 1
    assert running.moved_to(TaskStatus.SUCCEEDED).completed_at is not None


def test_record_survives_the_table_round_trip() -> None:
    original = record(TaskStatus.IN_PROGRESS).moved_to(
        TaskStatus.FAILED, error=classify(GraphError("denied", status=403, code="Authorization_RequestDenied", request_id="r-1"))
    )
    assert task_from_entity(task_to_entity(original)) == original


@pytest.mark.parametrize(
    ("failure", "category"),
    [
        (GraphError("x", status=403, permission="User.RevokeSessions.All"), ErrorCategory.PERMISSION_DENIED),
        (GraphError("x", status=404), ErrorCategory.USER_NOT_FOUND),
        (GraphError("x", status=400), ErrorCategory.INVALID_REQUEST),
        (GraphError("x", status=429, transient=True), ErrorCategory.TRANSIENT),
        (GraphError("x", code="Timeout", transient=True), ErrorCategory.TRANSIENT),
    ],
)
def test_classification(failure: GraphError, category: ErrorCategory) -> None:
    assert classify(failure).category is category


def test_permission_denied_names_the_missing_permission() -> None:
    error = classify(GraphError("x", status=403, permission="User.RevokeSessions.All"))
    assert "User.RevokeSessions.All" in (error.hint or "")


def test_retry_after_is_honoured_and_backoff_grows_without_busy_looping() -> None:
    assert retry_delay(7, attempt=1, base_seconds=2) == 7
    assert retry_delay(0.1, attempt=1, base_seconds=2) == 1.0
    assert retry_delay(None, attempt=1, base_seconds=0) == 1.0
    assert all(4 <= retry_delay(None, attempt=3, base_seconds=2) <= 8 for _ in range(50))
    assert retry_delay(None, attempt=30, base_seconds=2) <= 300


def test_retry_after_parses_seconds_and_http_dates() -> None:
    from email.utils import format_datetime

    assert parse_retry_after("12") == 12
    later = format_datetime(utcnow() + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 31
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
