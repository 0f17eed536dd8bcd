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

import math
import time
from functools import lru_cache

import limits
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string


@lru_cache(maxsize=64)
def _parsed(rate: str) -> limits.RateLimitItem:
    return limits.parse(rate)


class SlidingWindowLimiter:
    def __init__(self, storage: Storage | None = None) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage or MemoryStorage())

    @classmethod
    def from_uri(cls, uri: str) -> SlidingWindowLimiter:
        """``memory://`` (this process), or ``redis://host:port/db`` to share the counts
        between the processes and hosts of a node."""
        if uri.startswith("memory://"):
            return cls()
        # redis-py's asyncio client (the ``redis`` extra) rather than the default coredis.
        storage = storage_from_string(
            uri if uri.startswith("async+") else f"async+{uri}", implementation="redispy"
        )
        assert isinstance(storage, Storage)
        return cls(storage)

    async def hit(self, rate: str, *key: str) -> bool:
        return await self._limiter.hit(_parsed(rate), *key)

    async def retry_after(self, rate: str, *key: str) -> int:
        """Whole seconds until ``rate`` allows ``key`` one more request (at least 1)."""
        stats = await self._limiter.get_window_stats(_parsed(rate), *key)
        return max(1, math.ceil(stats.reset_time - time.time()))
