"""OpenTelemetry exporters, chosen by the standard environment: nothing is exported by default.

- APPLICATIONINSIGHTS_CONNECTION_STRING: Azure Monitor (the distro), authenticated with the
  managed identity (Entra ID; local authentication is disabled on the Application Insights
  resource), with azure-core's tracing plugin for every storage call.
- OTEL_EXPORTER_OTLP_ENDPOINT: traces, metrics and logs (also) over OTLP/HTTP (protobuf), to any
  collector; this works on the dev host too.

Only the project's own loggers (`signout.*`) are exported as log records: the SDKs' loggers can
hold request URLs. Must not read or export message bodies, tokens or keys.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

DEFAULT_SERVICE_NAME = "force-signout"
# msgraph-sdk's HTTP stack (kiota) opens ~14 spans per Graph call, one per middleware step, with
# the full URL; the app's own client span per call (shared/adapters/graph.py) says what matters.
QUIET_TRACERS = ("com.microsoft.com:microsoft-kiota", "microsoft-kiota", "microsoft-python-kiota")
LOGGER_NAME = "signout"  # every logger of the project is a child of it


@dataclass
class Pipelines:
    """What one process exports to, besides Azure Monitor (which the distro wires itself)."""

    spans: list[SpanProcessor] = field(default_factory=list)
    logs: list[LogRecordProcessor] = field(default_factory=list)
    metrics: list[MetricReader] = field(default_factory=list)


class QuietTracerProvider(TracerProvider):
    """A provider whose tracers for QUIET_TRACERS record nothing (and cost next to nothing)."""

    def get_tracer(self, instrumenting_module_name: str, *args: Any, **kwargs: Any) -> trace.Tracer:
        if instrumenting_module_name.startswith(QUIET_TRACERS):
            return trace.NoOpTracer()
        return super().get_tracer(instrumenting_module_name, *args, **kwargs)


def otlp_pipelines(environ: Mapping[str, str]) -> Pipelines:
    """OTLP/HTTP exporters when OTEL_EXPORTER_OTLP_ENDPOINT is set (they read the OTEL_* variables
    themselves: endpoint, headers, timeout); none otherwise."""
    if not environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return Pipelines()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return Pipelines(
        [BatchSpanProcessor(OTLPSpanExporter())],
        [BatchLogRecordProcessor(OTLPLogExporter())],
        [PeriodicExportingMetricReader(OTLPMetricExporter())],
    )


def resource(environ: Mapping[str, str]) -> Resource:
    return Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_SERVICE_NAME})


def install(pipelines: Pipelines, service: Resource) -> None:
    """Set the global providers (once per process) and export the project's log records; azure-core
    traces each storage call through its OpenTelemetry plugin (the distro does so itself)."""
    from azure.core.settings import settings

    settings.tracing_implementation = "opentelemetry"
    tracer_provider = QuietTracerProvider(resource=service)
    for processor in pipelines.spans:
        tracer_provider.add_span_processor(processor)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=service, metric_readers=pipelines.metrics))
    logger_provider = LoggerProvider(resource=service)
    for log_processor in pipelines.logs:
        logger_provider.add_log_record_processor(log_processor)
    set_logger_provider(logger_provider)
    logging.getLogger(LOGGER_NAME).addHandler(LoggingHandler(logger_provider=logger_provider))


def configure_telemetry(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """Wire the exporters the environment asks for; returns their names (empty: nothing exported)."""
    pipelines = otlp_pipelines(environ)
    connection_string = environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    enabled = (("azure_monitor",) if connection_string else ()) + (("otlp",) if pipelines.spans else ())
    if connection_string:
        _configure_azure_monitor(connection_string, pipelines, resource(environ), environ)
    elif pipelines.spans:
        install(pipelines, resource(environ))
    return enabled


def _configure_azure_monitor(connection_string: str, pipelines: Pipelines, service: Resource, environ: Mapping[str, str]) -> None:
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(
        connection_string=connection_string,
        credential=ManagedIdentityCredential(client_id=environ.get("AZURE_CLIENT_ID", "").strip() or None),
        logger_name=LOGGER_NAME,
        resource=service,
        span_processors=pipelines.spans,
        log_record_processors=pipelines.logs,
        metric_readers=pipelines.metrics,
    )


# What the Azure Monitor exporter writes to Application Insights (the component's classic table
# names, as queries scoped to it read them): the workbook's and alerts' queries may name only these
# tables and columns (tests/infra checks), and customDimensions only the project's attributes.
APPLICATION_INSIGHTS_TABLES: dict[str, frozenset[str]] = {
    "traces": frozenset({"timestamp", "message", "severityLevel", "customDimensions", "operation_Id", "cloud_RoleName"}),
    "customMetrics": frozenset(
        {"timestamp", "name", "value", "valueSum", "valueCount", "valueMin", "valueMax", "customDimensions", "cloud_RoleName"}
    ),
    "dependencies": frozenset(
        {"timestamp", "name", "target", "type", "resultCode", "success", "duration", "customDimensions", "operation_Id"}
    ),
    "requests": frozenset({"timestamp", "name", "resultCode", "success", "duration", "customDimensions", "operation_Id"}),
    "availabilityResults": frozenset({"timestamp", "name", "location", "success", "duration", "message"}),
}
