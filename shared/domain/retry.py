"""When to try a failed call again: Retry-After when the service gives one, else exponential
backoff with jitter, capped at a few minutes (pure arithmetic)."""

from __future__ import annotations

import random

MAX_RETRY_DELAY_SECONDS = 180.0


def retry_delay(retry_after: float | None, attempt: int, base_seconds: float) -> float:
    """Retry-After when Graph gives one; else exponential backoff with jitter, capped at a few
    minutes. Never below 1 s."""
    if retry_after is not None and retry_after > 0:
        return min(max(retry_after, 1.0), MAX_RETRY_DELAY_SECONDS)
    backoff = min(base_seconds * 2 ** max(attempt - 1, 0), MAX_RETRY_DELAY_SECONDS)
    return max(1.0, random.uniform(backoff / 2, backoff))  # noqa: S311 - jitter spreads retries; not a secret
