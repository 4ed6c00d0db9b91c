"""The logging policy: with the root logger at DEBUG, as the Functions Python worker sets it, no
record of an outbound call holds the URL's query (a Logic Apps callback's `sig`).

tests/integration/test_secrets_in_logs.py proves the same on the running app, every path.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.adapters.callback_http import CallbackHttp
from shared.runtime import QUIET_LOGGERS, apply_logging_policy

ROOT = Path(__file__).parents[2]
SIG = "SECRETsig0123456789"
URL = f"https://prod-01.westus.logic.azure.com/workflows/1/triggers/manual/paths/invoke?api-version=2016-10-01&sv=1.0&sig={SIG}"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name} {record.getMessage()}")


@pytest.fixture
def root_at_debug() -> Iterator[Collect]:
    """Every record of every logger, as the worker's root handler gets them; levels restored after."""
    root, handler = logging.getLogger(), Collect()
    saved = {name: logging.getLogger(name).level for name in ("", *QUIET_LOGGERS)}
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)  # as before any policy
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


async def send_callback() -> bool:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200))) as client:
        delivered, *_ = await CallbackHttp(client).post(URL, {"status": "succeeded"})
        return delivered


def test_without_the_policy_httpx_logs_the_callback_url(root_at_debug: Collect) -> None:
    """The premise: httpx writes the full URL, `sig` and all, at INFO."""
    asyncio.run(send_callback())
    assert any(SIG in message for message in root_at_debug.messages)


def test_the_policy_keeps_the_callback_url_out_of_every_record(root_at_debug: Collect) -> None:
    apply_logging_policy()
    assert asyncio.run(send_callback())
    assert not [message for message in root_at_debug.messages if SIG in message or "sig=" in message]


@pytest.mark.parametrize(
    "name",
    [
        "httpx",
        "httpcore.http11",
        "azure.core.pipeline.policies.http_logging_policy",
        "azure.identity.aio._credentials.managed_identity",
        "azure.storage.queue",
        "aiohttp.access",
        "aiohttp.client",
        "urllib3.connectionpool",
        "msal.managed_identity",
    ],
)
def test_the_policy_quiets_every_logger_that_prints_urls_or_tokens(root_at_debug: Collect, name: str) -> None:
    apply_logging_policy()
    assert not logging.getLogger(name).isEnabledFor(logging.INFO)


def test_importing_the_app_applies_the_policy() -> None:
    """As the worker loads it: root at DEBUG first, then `import function_app`; nothing else."""
    script = f"""
import asyncio, logging
records = []
class Collect(logging.Handler):
    def emit(self, record): records.append(record.getMessage())
logging.getLogger().setLevel(logging.DEBUG)
logging.getLogger().addHandler(Collect())
import function_app
import httpx
from shared.adapters.callback_http import CallbackHttp
async def main():
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200))) as client:
        return await CallbackHttp(client).post({URL!r}, {{}})
assert asyncio.run(main())[0]
print("LEAKED" if any({SIG!r} in message for message in records) else "CLEAN")
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "CLEAN"
