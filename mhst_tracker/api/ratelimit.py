"""A token bucket per source system: requests per second with a burst.

Each source's bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second;
a request takes one. A request that finds the bucket empty is refused with the seconds
until the next token (the ``Retry-After`` of a 429). Requests are limited, not events: the
limit applies before the body is read, and the batch length has its own limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """Token buckets by source name; ``clock`` is monotonic seconds."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, source: str) -> float:
        """Take a token for ``source``: 0 if it had one, else the seconds to wait."""
        now = self.clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
