"""Fixtures: one Azurite per test session (per xdist worker) and devhost subprocesses running
tests/devhost/sample_app.py, each with its own queues so tests stay independent."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # so `tools` imports however pytest was started
    sys.path.insert(0, str(ROOT))

from tests.integration.helpers import PIPELINE_TIMEOUT  # noqa: E402 - after the sys.path fix above
from tools.azurite import Azurite, start_azurite  # noqa: E402

FAST_QUEUES = {"maxPollingInterval": "00:00:00.200", "visibilityTimeout": "00:00:01", "maxDequeueCount": 3}


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with start_azurite() as emulator:
        yield emulator


class DevHost:
    """`python -m tools.devhost` running the sample app, output in a log file."""

    def __init__(self, env: dict[str, str], host_json: Path, log: Path) -> None:
        self.env, self.host_json, self.log_path = env, host_json, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tools.devhost",
            "--app",
            "tests.devhost.sample_app:app",
            "--port",
            "0",
            "--host-json",
            str(self.host_json),
        ]

    def start(self, timeout: float = PIPELINE_TIMEOUT) -> DevHost:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0  # restarts append
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.log_path.read_bytes()[offset:].decode(errors="replace")
            ready = re.search(r"devhost ready on (http://127\.0\.0\.1:\d+)", output)
            if ready:
                self.url = ready[1]
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"devhost exited with {self.proc.returncode}:\n{self.log}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"devhost not ready within {timeout} s:\n{self.log}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


class Results:
    """The sample app's results queue: every invocation it reports, in arrival order."""

    def __init__(self, client: QueueClient) -> None:
        self.client = client
        self.seen: list[dict[str, Any]] = []

    def wait(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = PIPELINE_TIMEOUT) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.client.receive_messages(messages_per_page=32, max_messages=32):
                self.seen.append(json.loads(message.content))
                self.client.delete_message(message)
            if predicate(self.seen):
                return self.seen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; results so far: {self.seen}")
            time.sleep(0.05)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.seen if r["kind"] == kind]


class Sample:
    """A devhost on the sample app with its own trigger queue and results queue."""

    def __init__(self, azurite: Azurite, tmp: Path, queues: dict[str, Any], env: dict[str, str]) -> None:
        self.queue_name = f"work-{uuid.uuid4().hex[:12]}"
        results_name = f"results-{uuid.uuid4().hex[:12]}"
        conn = azurite.connection_string
        self.env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_DEV_CREDENTIAL", "DEVHOST_FUNCTION_KEY")}
        self.env.update(
            {
                "AzureWebJobsStorage": conn,
                "IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token",
                "IDENTITY_HEADER": "test",
                "DEVHOST_MESSAGE_LEASE_SECONDS": "2",
                "SAMPLE_QUEUE": self.queue_name,
                "SAMPLE_RESULTS": results_name,
                "SAMPLE_SCHEDULE": "0 0 0 1 1 *",
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        self.encoding = queues.get("messageEncoding", "base64")
        host_json = tmp / f"host-{self.queue_name}.json"
        host_json.write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))
        self.host = DevHost(self.env, host_json, tmp / f"devhost-{self.queue_name}.log")
        self.queue = QueueClient.from_connection_string(conn, self.queue_name)
        self.poison = QueueClient.from_connection_string(conn, f"{self.queue_name}-poison")
        results = QueueClient.from_connection_string(conn, results_name)
        results.create_queue()
        self.results = Results(results)

    def send(self, text: str, raw: bool = False) -> None:
        """Enqueue `text` as a producer would for the configured messageEncoding."""
        encoded = text if raw or self.encoding == "none" else base64.b64encode(text.encode()).decode()
        self.queue.send_message(encoded)


@pytest.fixture
def sample(azurite: Azurite, tmp_path: Path) -> Iterator[Callable[..., Sample]]:
    """Factory: sample(queues={host.json extensions.queues}, env={...}) -> started Sample."""
    started: list[Sample] = []

    def make(queues: dict[str, Any] | None = None, env: dict[str, str] | None = None, start: bool = True) -> Sample:
        s = Sample(azurite, tmp_path, {**FAST_QUEUES, **(queues or {})}, env or {})
        started.append(s)
        if start:
            s.host.start()
        return s

    yield make
    for s in started:
        if s.host.proc is not None:
            s.host.stop()
