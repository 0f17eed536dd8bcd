"""Who may talk to this node over Openmsg right now: maintenance mode, blocked
domains and rate limits per remote domain and per remote address.

The switches live in the database (``openmessenger admin`` sets them while the
node runs); each process reads them at most once a second.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from openmessenger.core.ids import Address, Domain
from openmessenger.protocol.openmsg import ResponseCode
from openmessenger.services.ports import Clock, UnitOfWork

MAINTENANCE_FLAG = "maintenance"
_REFRESH = timedelta(seconds=1)


class RateLimiter(Protocol):
    async def hit(self, rate: str, *key: str) -> bool:
        """Count one request against ``rate`` for ``key``; False once over it."""
        ...


@dataclass(frozen=True, slots=True)
class FederationRates:
    """Rates in the ``limits`` notation ("100/second")."""

    per_domain: str
    per_address: str
    auth_per_domain: str


@dataclass(frozen=True, slots=True)
class _Switches:
    maintenance: bool
    blocked: frozenset[Domain]
    read_at: datetime


class FederationGate:
    def __init__(
        self, uow: UnitOfWork, clock: Clock, limiter: RateLimiter, rates: FederationRates
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._limiter = limiter
        self._rates = rates
        self._switches: _Switches | None = None
        self._reading: asyncio.Task[_Switches] | None = None

    async def refusal(
        self, domain: Domain, address: Address | None = None, *, handshake: bool = False
    ) -> ResponseCode | None:
        """The code to refuse a request from ``domain`` (and ``address``) with,
        or None to let it through. Counts the request against the rate limits."""
        switches = await self._current()
        if switches.maintenance:
            return ResponseCode.MESSAGE_REJECTED_TEMP
        if domain in switches.blocked:
            return ResponseCode.MESSAGE_REJECTED_PERM
        rates = self._rates
        # Every limit counts the request, even once another has refused it.
        allowed = await self._limiter.hit(rates.per_domain, "domain", domain)
        if handshake:
            allowed = await self._limiter.hit(rates.auth_per_domain, "auth", domain) and allowed
        if address is not None:
            allowed = await self._limiter.hit(rates.per_address, "address", address) and allowed
        return None if allowed else ResponseCode.MESSAGE_REJECTED_TEMP

    async def is_blocked(self, domain: Domain) -> bool:
        return domain in (await self._current()).blocked

    async def _current(self) -> _Switches:
        cached = self._switches
        if cached is not None and abs(self._clock.now() - cached.read_at) < _REFRESH:
            return cached
        # One read for everyone who finds the switches stale at the same moment.
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._reading)

    async def _read(self) -> _Switches:
        now = self._clock.now()
        async with self._uow() as tx:
            maintenance = await tx.federation.flag(MAINTENANCE_FLAG) == "on"
            blocked = frozenset(await tx.federation.blocked_domains())
        self._switches = _Switches(maintenance, blocked, now)
        return self._switches


class NodeAdmin:
    """What ``openmessenger admin`` changes: maintenance mode and domain blocks."""

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def set_maintenance(self, on: bool) -> None:
        async with self._uow() as tx:
            await tx.federation.set_flag(MAINTENANCE_FLAG, "on" if on else "off", self._clock.now())
            await tx.commit()

    async def maintenance(self) -> bool:
        async with self._uow() as tx:
            return await tx.federation.flag(MAINTENANCE_FLAG) == "on"

    async def block(self, domain: Domain) -> bool:
        async with self._uow() as tx:
            added = await tx.federation.block(domain, self._clock.now())
            await tx.commit()
        return added

    async def unblock(self, domain: Domain) -> bool:
        async with self._uow() as tx:
            removed = await tx.federation.unblock(domain)
            await tx.commit()
        return removed

    async def blocked(self) -> list[Domain]:
        async with self._uow() as tx:
            return await tx.federation.blocked_domains()
