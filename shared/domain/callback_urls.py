"""Logic Apps HTTP Webhook callbacks: POST the finished task to the caller's callback URL.

The URL is checked when the request arrives (https, an allowed host, no credentials in it) so
the service cannot be used to reach other hosts (server-side request forgery). Redirects are
not followed. A failed callback is recorded on the task and never changes its status.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from typing import Any
from urllib.parse import urlsplit

import httpx

MAX_URL_LENGTH = 2048
ATTEMPTS = 4
BACKOFF_SECONDS = (1.0, 2.0, 4.0)
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class InvalidCallback(ValueError):
    pass


# Hostnames as the sender sends them: ASCII letters, digits and hyphens in dot-separated labels.
_ASCII_HOST = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")


def _host_allowed(host: str, port: int, allowed: tuple[str, ...]) -> bool:
    for pattern in allowed:
        name, _, wanted_port = pattern.lower().partition(":")
        if fnmatch.fnmatchcase(host, name) and port == int(wanted_port or 443):
            return True
    return False


def _host_problem(host: str) -> str | None:
    if not _ASCII_HOST.fullmatch(host):
        return "host must be an ASCII name (letters, digits, hyphens and dots)"
    if any(label.startswith("xn--") for label in host.split(".")):
        return "host must not be an internationalised (xn--) name"
    return None


def _parse(url: str) -> httpx.URL:
    """Parse with httpx, the client that sends the callback, so that what passes here can be sent."""
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:  # idna.IDNAError and UnicodeError are ValueErrors
        try:  # only to say why: httpx's errors do not name the part at fault
            host = (urlsplit(url).hostname or "").lower()
        except ValueError:
            host = ""
        raise InvalidCallback((host and _host_problem(host)) or "is not a URL") from exc


def check_callback_url(url: str, allowed: tuple[str, ...]) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise InvalidCallback(f"must be at most {MAX_URL_LENGTH} characters")
    parsed = _parse(url)
    if parsed.scheme != "https" or not parsed.raw_host:
        raise InvalidCallback("must be an https URL")
    if parsed.userinfo:
        raise InvalidCallback("must not carry credentials")
    # raw_host is what goes on the wire: httpx IDNA-encodes non-ASCII names to xn-- labels.
    host = parsed.raw_host.decode("ascii", "replace").lower()
    problem = _host_problem(host)
    if problem:
        raise InvalidCallback(problem)
    port = 443 if parsed.port is None else parsed.port
    if not 0 < port < 65536:
        raise InvalidCallback("is not a URL")
    if not _host_allowed(host, port, allowed):
        raise InvalidCallback(f"host {host} is not allowed (CALLBACK_ALLOWED_HOSTS: {', '.join(allowed)})")
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
