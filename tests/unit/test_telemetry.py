"""Telemetry: nothing exported by default, OTLP when asked, and each state-change record's fields
arrive as OpenTelemetry log attributes (customDimensions in Application Insights), with no secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from shared.adapters import telemetry
from shared.domain.principal import Principal
from shared.domain.tasks import ErrorCategory, TaskError, TaskRecord, TaskStatus, utcnow
from shared.usecases import audit_log

TASK = "0f8fad5b-d9cb-469f-a165-70867728950e"
SIG = "SECRETsig0123456789"
TOKEN = "SECRETtoken0123456789"  # a made-up value the test looks for


def task(**changes: object) -> TaskRecord:
    now = utcnow()
    base = TaskRecord(
        id=TASK,
        user="adele@contoso.com",
        status=TaskStatus.SUCCEEDED,
        created_at=now,
        updated_at=now,
        source="alert",
        requested_by=Principal("11111111-2222-3333-4444-555555555555", None, "SOC"),
        correlation_id="INC-1",
        alert_id="alert-7",
        job_id="job-3",
        attempts=1,
        graph_request_id="graph-req-42",
        token=TOKEN,
        callback_url=f"https://prod-01.westus.logic.azure.com/workflows/1/invoke?sig={SIG}",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def exported() -> Iterator[InMemoryLogRecordExporter]:
    """The project's log records as an OpenTelemetry exporter receives them."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger(telemetry.LOGGER_NAME)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield exporter
    logger.removeHandler(handler)
    logger.setLevel(level)
    provider.shutdown()


def attributes(exporter: InMemoryLogRecordExporter) -> dict[str, object]:
    [entry] = [entry for entry in exporter.get_finished_logs() if isinstance(entry, ReadableLogRecord)]
    return dict(entry.log_record.attributes or {})


def test_nothing_is_exported_by_default() -> None:
    assert telemetry.configure_telemetry({}) == ()
    assert telemetry.otlp_pipelines({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}) == telemetry.Pipelines()


def test_otlp_endpoint_exports_traces_metrics_and_logs_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    pipelines = telemetry.otlp_pipelines({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    try:
        assert (len(pipelines.spans), len(pipelines.logs), len(pipelines.metrics)) == (1, 1, 1)
        assert pipelines.spans[0].span_exporter._endpoint == "http://127.0.0.1:4318/v1/traces"  # type: ignore[attr-defined]
    finally:
        for processor in [*pipelines.spans, *pipelines.logs]:
            processor.shutdown()
        for reader in pipelines.metrics:
            reader.shutdown()


def test_service_name_defaults_to_force_signout() -> None:
    assert telemetry.resource({}).attributes["service.name"] == "force-signout"
    assert telemetry.resource({"OTEL_SERVICE_NAME": "signout-eu"}).attributes["service.name"] == "signout-eu"


def test_a_state_change_carries_its_fields_as_log_attributes(exported: InMemoryLogRecordExporter) -> None:
    audit_log.state_change(task())
    found = attributes(exported)
    assert {key: found.get(key) for key in ("taskId", "status", "user", "correlationId", "jobId", "source")} == {
        "taskId": TASK,
        "status": "succeeded",
        "user": "adele@contoso.com",
        "correlationId": "INC-1",
        "jobId": "job-3",
        "source": "alert",
    }
    assert (found["requestedBy"], found["alertId"], found["attempts"]) == ("11111111-2222-3333-4444-555555555555", "alert-7", 1)
    assert set(audit_log.STATE_CHANGE_ATTRIBUTES) >= {key for key in found if "." not in key and key != "custom_dimensions"}


def test_the_revoke_graph_request_id_is_logged_on_success(exported: InMemoryLogRecordExporter) -> None:
    """README promised it: the revoke's request-id is what Microsoft support asks for."""
    audit_log.state_change(task())
    assert attributes(exported)["graphRequestId"] == "graph-req-42"


def test_a_failure_logs_its_category_and_the_failed_call_request_id(exported: InMemoryLogRecordExporter) -> None:
    error = TaskError(
        ErrorCategory.PERMISSION_DENIED, "Insufficient privileges", "Authorization_RequestDenied", "graph-req-9", 403
    )
    audit_log.state_change(task(status=TaskStatus.FAILED, graph_request_id=None, error=error))
    found = attributes(exported)
    assert (found["errorCategory"], found["graphRequestId"]) == ("permission_denied", "graph-req-9")


def test_hashed_user_identifiers_keep_the_upn_out(exported: InMemoryLogRecordExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_USER_IDENTIFIERS", "hash")
    audit_log.state_change(task())
    found = attributes(exported)
    assert "user" not in found
    assert len(str(found["userHash"])) == 16
    assert "adele" not in repr(found)
    assert "adele" not in str(exported.get_finished_logs()[0].log_record.body)


def test_a_mistyped_setting_fails_closed_to_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_USER_IDENTIFIERS", "UPNs please")
    assert "user" not in audit_log.user_fields("adele@contoso.com")


def test_no_secret_in_any_attribute(exported: InMemoryLogRecordExporter) -> None:
    audit_log.state_change(task(), "a note")
    text = repr(attributes(exported)) + str(exported.get_finished_logs()[0].log_record.body)
    for secret in (TOKEN, SIG, "sig=", "code=", "logic.azure.com"):
        assert secret not in text


def test_a_success_logs_its_time_to_revoke(exported: InMemoryLogRecordExporter) -> None:
    done = task()
    audit_log.state_change(replace(done, completed_at=done.created_at + timedelta(seconds=4.5)))
    assert attributes(exported)["timeToRevokeSeconds"] == 4.5


def test_kiota_middleware_spans_are_not_recorded_but_ours_are() -> None:
    provider = telemetry.QuietTracerProvider()
    for name in ("com.microsoft.com:microsoft-kiota-http-httpx", "microsoft-python-kiota-abstractions"):
        assert not provider.get_tracer(name).start_span("RetryHandler_send").is_recording()
    assert provider.get_tracer("signout.graph").start_span("graph POST /users/{id}/revokeSignInSessions").is_recording()
