"""One trace per sign-out (the W3C trace context a task message carries from the request that
queued it to the worker's attempt) and the service's metrics. OpenTelemetry API only (a no-op
until shared/adapters/telemetry.py installs a provider); the carried context is only ever a parent."""

from __future__ import annotations

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

tracer = trace.get_tracer("signout")
_W3C = TraceContextTextMapPropagator()
meter = metrics.get_meter("signout")

TASKS = meter.create_counter("signout.tasks", "{task}", "Tasks that ended, by outcome, category, source and lane")
TIME_TO_REVOKE = meter.create_histogram("signout.time_to_revoke", "s", "From accepted to Graph's answer to the revoke")
THROTTLED = meter.create_counter("signout.graph.throttled", "{response}", "Graph 429 answers, by scope (the permission)")
PACER_RATE = meter.create_gauge("signout.pacer.rate", "{request}/s", "The bulk lane's Graph write rate")
POISON_MESSAGES = meter.create_counter("signout.poison.messages", "{message}", "Messages moved to a poison queue, by queue")
# What the workbook and alert queries may name (tests/infra checks them against these).
METRICS = ("signout.tasks", "signout.time_to_revoke", "signout.graph.throttled", "signout.pacer.rate", "signout.poison.messages")
METRIC_DIMENSIONS = ("outcome", "category", "source", "lane", "scope", "queue")


def lane_name(job_id: str | None) -> str:
    return "bulk" if job_id else "single"


def current_traceparent() -> str | None:
    """The current span's context as a `traceparent` value; None when nothing is traced."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def parent_from(traceparent: str | None) -> Context | None:
    """The context to start a span under (None: the current one)."""
    return _W3C.extract({"traceparent": traceparent}) if traceparent else None


def links_to_current() -> list[trace.Link]:
    """A link to the span that is current now (the Functions host's invocation), when there is one."""
    current = trace.get_current_span().get_span_context()
    return [trace.Link(current)] if current.is_valid else []
