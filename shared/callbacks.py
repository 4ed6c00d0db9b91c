"""Logic Apps HTTP Webhook callbacks: POST the finished task to the caller's callback URL.

The URL is checked when the request arrives (https, an allowed host, no credentials in it) so
the service cannot be used to reach other hosts (server-side request forgery). Redirects are
not followed. A failed callback is recorded on the task and never changes its status.
"""

from __future__ import annotations

import asyncio
import fnmatch
from typing import Any
from urllib.parse import urlsplit

import httpx

MAX_URL_LENGTH = 2048
ATTEMPTS = 4
BACKOFF_SECONDS = (1.0, 2.0, 4.0)
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class InvalidCallback(ValueError):
    pass


def _host_allowed(host: str, port: int, allowed: tuple[str, ...]) -> bool:
    for pattern in allowed:
        name, _, wanted_port = pattern.lower().partition(":")
        if fnmatch.fnmatchcase(host, name) and port == int(wanted_port or 443):
            return True
    return False


def check_callback_url(url: str, allowed: tuple[str, ...]) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise InvalidCallback(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        raise InvalidCallback("is not a URL") from exc
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidCallback("must be an https URL")
    if parts.username or parts.password:
        raise InvalidCallback("must not carry credentials")
    if not _host_allowed(parts.hostname.lower(), port, allowed):
        raise InvalidCallback(f"host {parts.hostname} is not allowed (CALLBACK_ALLOWED_HOSTS: {', '.join(allowed)})")
    return url


async def deliver(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body`, retrying transport errors and 408/429/5xx with backoff; report the outcome."""
    last_error = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = await client.post(url, json=body, timeout=TIMEOUT, follow_redirects=False)
            if response.is_success:
                return {"status": "delivered", "attempts": attempt, "httpStatus": response.status_code}
            last_error = f"HTTP {response.status_code}"
            if response.status_code not in (408, 429) and response.status_code < 500:
                break
        except httpx.HTTPError as exc:
            last_error = type(exc).__name__
        if attempt < ATTEMPTS:
            await asyncio.sleep(BACKOFF_SECONDS[attempt - 1])
    return {"status": "failed", "attempts": attempt, "lastError": last_error}
