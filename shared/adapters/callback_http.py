"""POSTs to Logic Apps callback URLs (outbound calls other than Graph and storage)."""

from __future__ import annotations

from typing import Any

import httpx

from shared.domain.callback_urls import TIMEOUT

_RETRIABLE = (408, 429)


class CallbackHttp:
    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(follow_redirects=False)

    async def post(self, url: str, body: dict[str, Any]) -> tuple[bool, bool, str, int | None]:
        """One POST: (delivered, worth retrying, what went wrong, the HTTP status)."""
        try:
            response = await self._client.post(url, json=body, timeout=TIMEOUT, follow_redirects=False)
        except httpx.HTTPError as exc:
            return False, True, type(exc).__name__, None
        except (httpx.InvalidURL, ValueError) as exc:  # stored before intake checked URLs with httpx's parser
            return False, False, type(exc).__name__, None
        if response.is_success:
            return True, False, "", response.status_code
        status = response.status_code
        return False, status in _RETRIABLE or status >= httpx.codes.INTERNAL_SERVER_ERROR, f"HTTP {status}", status

    async def aclose(self) -> None:
        await self._client.aclose()
