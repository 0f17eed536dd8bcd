"""In-process bus: live stream events go to the subscribers of each device.

A subscriber that falls too far behind is not allowed to grow without bound:
its subscription ends with :class:`SubscriptionLagged` and the stream reads
what it missed from the store instead.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from openmessenger.core.envelope import StreamEvent
from openmessenger.core.ids import DeviceId
from openmessenger.services.ports import SubscriptionLagged


class _MemorySubscription:
    def __init__(self, limit: int) -> None:
        self._queue: asyncio.Queue[StreamEvent] = asyncio.Queue(maxsize=limit)
        self.lagged = False

    def offer(self, event: StreamEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True
            # Wake the reader so it notices; what it missed is in the store.
            self._queue.get_nowait()
            self._queue.put_nowait(event)

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        while True:
            event = await self._queue.get()
            if self.lagged:
                raise SubscriptionLagged()
            yield event


class MemoryBus:
    def __init__(self, *, per_subscriber_limit: int = 1024) -> None:
        self._limit = per_subscriber_limit
        self._subscribers: defaultdict[DeviceId, set[_MemorySubscription]] = defaultdict(set)

    async def publish(self, events: Sequence[StreamEvent]) -> None:
        for event in events:
            for subscription in self._subscribers.get(event.device_id, ()):
                subscription.offer(event)

    @asynccontextmanager
    async def subscribe(self, device_id: DeviceId) -> AsyncIterator[_MemorySubscription]:
        subscription = _MemorySubscription(self._limit)
        self._subscribers[device_id].add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers[device_id]
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[device_id]
