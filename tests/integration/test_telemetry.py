"""Telemetry of a sign-out driven through HTTP on the dev host, as an OTLP collector receives it:
the dev host runs the app in its own process with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a
collector this test serves on loopback (the same OTLP/HTTP path anyone can watch locally).

One trace from intake across the queue to the Graph revoke; the state-change records carry their
fields as log attributes; no secret (function key, callback `sig`, bearer token) in any attribute.
"""

from __future__ import annotations

import gzip
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.integration.helpers import CallbackReceiver, Sim, new_user, wait_for_terminal, wait_until
from tools.local_stack import LocalStack

pytestmark = pytest.mark.integration

FUNCTION_KEY = "fkey" + secrets.token_urlsafe(24)
SIG = "SECRET" + secrets.token_urlsafe(24)
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")
REVOKE_SPAN = "graph POST /users/{id}/revokeSignInSessions"
RAN: list[str] = []  # the tasks this module's stack ran, each signed out once


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


class Collector:
    """An OTLP/HTTP (protobuf) collector on loopback that keeps what it receives."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.metrics: dict[str, float] = {}  # the latest exported total of each metric (cumulative)
        self.raw: list[bytes] = []  # every request body, to search for secrets
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.receive(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def receive(self, path: str, body: bytes) -> None:
        with self.lock:
            self.raw.append(body)
            if path == "/v1/traces":
                self._spans(ExportTraceServiceRequest.FromString(body))
            elif path == "/v1/logs":
                self._logs(ExportLogsServiceRequest.FromString(body))
            elif path == "/v1/metrics":
                self._metrics(ExportMetricsServiceRequest.FromString(body))

    def _spans(self, request: ExportTraceServiceRequest) -> None:
        for resource in request.resource_spans:
            service = attributes(resource.resource.attributes).get("service.name")
            for scope in resource.scope_spans:
                self.spans.extend(
                    {
                        "name": span.name,
                        "trace": span.trace_id.hex(),
                        "id": span.span_id.hex(),
                        "parent": span.parent_span_id.hex(),
                        "attributes": attributes(span.attributes),
                        "service": service,
                    }
                    for span in scope.spans
                )

    def _metrics(self, request: ExportMetricsServiceRequest) -> None:
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.HasField("sum"):
                        self.metrics[metric.name] = sum(point.as_int or point.as_double for point in metric.sum.data_points)
                    elif metric.HasField("histogram"):
                        self.metrics[metric.name] = sum(point.count for point in metric.histogram.data_points)

    def _logs(self, request: ExportLogsServiceRequest) -> None:
        for resource in request.resource_logs:
            for scope in resource.scope_logs:
                self.logs.extend(
                    {"body": value(record.body), "attributes": attributes(record.attributes), "trace": record.trace_id.hex()}
                    for record in scope.log_records
                )

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


@pytest.fixture(scope="module")
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced_stack(collector: Collector, receiver: CallbackReceiver) -> Iterator[LocalStack]:
    settings = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export soon after each span, not every 5 s
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "DEVHOST_FUNCTION_KEY": FUNCTION_KEY,
        **receiver.stack_settings(),
    }
    with LocalStack(settings=settings) as stack:
        yield stack


def signed_out(stack: LocalStack, receiver: CallbackReceiver, name: str) -> dict[str, Any]:
    """A sign-out through HTTP with a function key and a Logic Apps-shaped callback URL."""
    user = new_user(Sim(stack.sim_url), name)["id"]
    callback = receiver.url(f"/workflows/{uuid.uuid4().hex}/triggers/manual/paths/invoke?sv=1.0&sig={SIG}")
    with httpx.Client(base_url=stack.base_url, timeout=30, params={"code": FUNCTION_KEY}) as api:
        response = api.post("/api/signouts", json={"user": user, "callbackUrl": callback})
        assert response.status_code == 202, response.text
        task = response.json()["tasks"][0]
        done = wait_for_terminal(api, f"/api/signouts/{task['id']}")
    assert done["status"] == "succeeded", done
    RAN.append(done["id"])
    return done


def spans_of(collector: Collector, task_id: str) -> dict[str, dict[str, Any]]:
    """The task's accept, attempt and revoke spans, once all three have been exported."""
    with collector.lock:
        ours = [span for span in collector.spans if span["attributes"].get("signout.task_id") == task_id]
        found = {span["name"]: span for span in ours}
        traces = {span["trace"] for span in ours}
        revokes = [span for span in collector.spans if span["name"] == REVOKE_SPAN and span["trace"] in traces]
    return {**found, "revoke": revokes[0]} if revokes and {"signout.accept", "signout.attempt"} <= set(found) else {}


def test_one_trace_from_the_http_request_to_the_graph_revoke(
    traced_stack: LocalStack, collector: Collector, receiver: CallbackReceiver
) -> None:
    done = signed_out(traced_stack, receiver, "otel-trace")
    spans = wait_until(lambda: spans_of(collector, done["id"]), "accept, attempt and revoke spans exported")
    accept, attempt, revoke = spans["signout.accept"], spans["signout.attempt"], spans["revoke"]
    assert accept["trace"] == attempt["trace"] == revoke["trace"]
    assert attempt["parent"] == accept["id"], "the attempt continues the request's trace across the queue"
    assert revoke["attributes"]["graph.request_id"] == done["graphRequestId"]
    assert (revoke["attributes"]["http.request.method"], revoke["attributes"]["http.response.status_code"]) == ("POST", 200)
    assert accept["service"] == "force-signout"


def test_state_change_records_carry_their_fields_as_attributes(
    traced_stack: LocalStack, collector: Collector, receiver: CallbackReceiver
) -> None:
    done = signed_out(traced_stack, receiver, "otel-logs")

    def succeeded() -> dict[str, Any] | None:
        with collector.lock:
            return next(
                (
                    entry["attributes"]
                    for entry in collector.logs
                    if entry["attributes"].get("taskId") == done["id"] and entry["attributes"].get("status") == "succeeded"
                ),
                None,
            )

    found = wait_until(succeeded, "the succeeded state-change record exported")
    assert found["graphRequestId"] == done["graphRequestId"]
    assert (found["user"], found["source"], found["attempts"]) == (done["user"], "api", 1)


def test_no_secret_reaches_the_collector(traced_stack: LocalStack, collector: Collector, receiver: CallbackReceiver) -> None:
    done = signed_out(traced_stack, receiver, "otel-secrets")
    wait_until(lambda: spans_of(collector, done["id"]), "the run's spans exported")
    with collector.lock:
        everything = b"".join(collector.raw)
    assert everything, "the collector received telemetry"
    for secret in (FUNCTION_KEY, SIG, "code=", "sig="):
        assert secret.encode() not in everything, secret
    assert not JWT.search(everything.decode("utf-8", "replace")), "a bearer token was exported"


def test_metrics_count_each_task_and_time_each_revocation(
    traced_stack: LocalStack, collector: Collector, receiver: CallbackReceiver
) -> None:
    signed_out(traced_stack, receiver, "otel-metrics")

    def exported() -> bool:
        with collector.lock:
            totals = (collector.metrics.get("signout.tasks"), collector.metrics.get("signout.time_to_revoke"))
        return totals == (len(RAN), len(RAN))

    wait_until(exported, lambda: f"signout.tasks and signout.time_to_revoke at {len(RAN)}: {collector.metrics}")
