"""Pacing Graph writes to the identity-and-access write quota (3,000 per 150 s per app+tenant).

A token bucket per worker process whose rate starts at GRAPH_WRITES_PER_SECOND (default 19.4,
97 % of 20/s) and adapts: a 429 halves it and pauses writes for Retry-After; a response whose
`x-ms-throttle-limit-percentage` shows the window nearly used (≥ 0.95) trims it by 10 %; every
second without throttling gives back 0.5/s, up to the configured ceiling (AIMD). Bulk writes wait
for a token; high-priority (alert-driven and single) writes never wait but still spend one, so
bulk traffic yields to them. Each instance paces itself: cap instances or divide the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

HEADROOM_PERCENTAGE = 0.95
DECREASE_ON_THROTTLE = 0.5
DECREASE_ON_WARNING = 0.9
INCREASE_PER_SECOND = 0.5
MIN_RATE = 0.5


@dataclass
class WritePacer:
    ceiling: float  # writes per second, never exceeded
    rate: float = 0.0
    burst: float = 1.0  # tokens a quiet bucket may hold: no bursts above the rate
    clock: Callable[[], float] = time.monotonic  # injectable: tests drive time instead of sleeping
    _tokens: float = 0.0
    _updated: float = field(init=False, default=0.0)
    _paused_until: float = 0.0
    _last_decrease: float = 0.0

    def __post_init__(self) -> None:
        self.rate = self.rate or self.ceiling
        self._tokens = self.burst
        self._updated = self.clock()

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        self._updated = now
        if now - self._last_decrease > 1.0:  # additive recovery while nothing throttles
            self.rate = min(self.ceiling, self.rate + INCREASE_PER_SECOND * elapsed)
        if now >= self._paused_until:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)

    def reserve(self, high_priority: bool) -> float:
        """Take a write token; return how long to wait before writing (0: write now)."""
        now = self.clock()
        self._refill(now)
        self._tokens -= 1.0
        if high_priority:
            return 0.0  # debt is paid by the bulk writes that come after
        pause = max(0.0, self._paused_until - now)
        return pause + (max(0.0, -self._tokens) / self.rate if self._tokens < 0 else 0.0)

    def refund(self) -> None:
        """A reserved write that will not happen now (its task was rescheduled instead)."""
        self._tokens += 1.0

    def throttled(self, retry_after: float | None) -> None:
        now = self.clock()
        self._refill(now)
        self.rate = max(MIN_RATE, self.rate * DECREASE_ON_THROTTLE)
        self._last_decrease = now
        self._paused_until = max(self._paused_until, now + (retry_after or 1.0))
        self._tokens = min(self._tokens, 0.0)

    def observed(self, limit_percentage: float | None) -> None:
        if limit_percentage is None or limit_percentage < HEADROOM_PERCENTAGE:
            return
        now = self.clock()
        if now - self._last_decrease > 1.0:  # once per second at most
            self._refill(now)
            self.rate = max(MIN_RATE, self.rate * DECREASE_ON_WARNING)
            self._last_decrease = now
