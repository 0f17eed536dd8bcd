"""The ``RateLimiter`` port over the ``limits`` library (moving windows, in
this process's memory; a Redis storage shares them between processes)."""

from __future__ import annotations

from functools import lru_cache

import limits
from limits.storage import MemoryStorage, Storage
from limits.strategies import MovingWindowRateLimiter


@lru_cache(maxsize=64)
def _parsed(rate: str) -> limits.RateLimitItem:
    return limits.parse(rate)


class MovingWindowLimiter:
    def __init__(self, storage: Storage | None = None) -> None:
        self._limiter = MovingWindowRateLimiter(storage or MemoryStorage())

    def hit(self, rate: str, *key: str) -> bool:
        return self._limiter.hit(_parsed(rate), *key)
