"""Logic Apps HTTP Webhook callbacks: POST the finished task to the caller's callback URL.

The URL is checked when the request arrives (https, an allowed host, no credentials in it) so
the service cannot be used to reach other hosts (server-side request forgery). Redirects are
not followed. A failed callback is recorded on the task and never changes its status.
"""

from __future__ import annotations

import fnmatch
import re
from urllib.parse import urlsplit

import httpx

MAX_URL_LENGTH = 2048
TIMEOUT = httpx.Timeout(10.0, connect=5.0)  # one callback POST


class InvalidCallbackError(ValueError):
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
        raise InvalidCallbackError((host and _host_problem(host)) or "is not a URL") from exc


def check_callback_url(url: str, allowed: tuple[str, ...]) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise InvalidCallbackError(f"must be at most {MAX_URL_LENGTH} characters")
    parsed = _parse(url)
    if parsed.scheme != "https" or not parsed.raw_host:
        raise InvalidCallbackError("must be an https URL")
    if parsed.userinfo:
        raise InvalidCallbackError("must not carry credentials")
    # raw_host is what goes on the wire: httpx IDNA-encodes non-ASCII names to xn-- labels.
    host = parsed.raw_host.decode("ascii", "replace").lower()
    problem = _host_problem(host)
    if problem:
        raise InvalidCallbackError(problem)
    port = 443 if parsed.port is None else parsed.port
    if not 0 < port < 65536:
        raise InvalidCallbackError("is not a URL")
    if not _host_allowed(host, port, allowed):
        raise InvalidCallbackError(f"host {host} is not allowed (CALLBACK_ALLOWED_HOSTS: {', '.join(allowed)})")
    return url
