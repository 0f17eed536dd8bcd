"""The ``RateLimiter`` port over the ``limits`` library, in this process's
memory (a Redis storage shares the counts between processes). The asyncio
flavour of the library: its in-memory storage expires keys in a task on the
event loop, where the threaded one starts a timer thread a hundred times a
second that competes with the loop for the GIL.

A sliding window counter: it weighs the previous window's count by how much
of it still overlaps, so it behaves like a moving window in constant time and
memory per key (a true moving window keeps a timestamp per hit: at the rates a
busy peer reaches, that list is what costs)."""

from __future__ import annotations

from functools import lru_cache

import limits
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter


@lru_cache(maxsize=64)
def _parsed(rate: str) -> limits.RateLimitItem:
    return limits.parse(rate)


class SlidingWindowLimiter:
    def __init__(self, storage: Storage | None = None) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage or MemoryStorage())

    async def hit(self, rate: str, *key: str) -> bool:
        return await self._limiter.hit(_parsed(rate), *key)
