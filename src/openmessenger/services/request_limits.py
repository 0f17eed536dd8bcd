"""Rate limits on the client and app API: per API key, per account, per device.

Each authenticated request counts once against each that applies; past a
limit the caller gets 429 with ``Retry-After``. The counts live in the
``limits`` storage the node is configured with (memory, or Redis to share them
between processes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from openmessenger.core.apps import AppCaller
from openmessenger.core.errors import RateLimited
from openmessenger.core.records import AuthenticatedDevice


class WindowLimiter(Protocol):
    async def hit(self, rate: str, *key: str) -> bool:
        """Count one request against ``rate`` for ``key``; False once over it."""
        ...

    async def retry_after(self, rate: str, *key: str) -> int:
        """Whole seconds until ``key`` may make another request."""
        ...


@dataclass(frozen=True, slots=True)
class RequestRates:
    """Rates in the ``limits`` notation ("100/second")."""

    per_app_key: str
    per_account: str
    per_device: str


class RequestLimits:
    def __init__(self, limiter: WindowLimiter, rates: RequestRates) -> None:
        self._limiter = limiter
        self._rates = rates

    async def check(self, caller: AuthenticatedDevice) -> None:
        if caller.api_key_id is not None:
            await self._hit("API key", self._rates.per_app_key, "app-key", caller.api_key_id)
        await self._hit("account", self._rates.per_account, "account", caller.account.id)
        await self._hit("device", self._rates.per_device, "device", caller.device.id)

    async def check_app(self, caller: AppCaller) -> None:
        await self._hit("API key", self._rates.per_app_key, "app-key", caller.key.id)

    async def _hit(self, what: str, rate: str, *key: str) -> None:
        if not await self._limiter.hit(rate, *key):
            raise RateLimited(what, await self._limiter.retry_after(rate, *key))
