"""What other nodes say about themselves (``/.well-known/openmessenger``), cached.

A v1 peer has no descriptor: it is asked once in a while, never sent anything
beyond v1. A descriptor counts only if it names the domain it was fetched from.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pydantic import ValidationError

from openmessenger.core.ids import Domain
from openmessenger.protocol import openmsg
from openmessenger.services.ports import Clock, FederationTransport, PeerUnreachable

log = logging.getLogger(__name__)

_KEEP = timedelta(hours=1)
_KEEP_MISS = timedelta(minutes=5)
_NOT_DESCRIBED = frozenset({404, 405, 410})
"""What a web server without our descriptor answers: the node speaks v1 only."""


class PeerDirectory:
    def __init__(self, transport: FederationTransport, clock: Clock) -> None:
        self._transport = transport
        self._clock = clock
        self._cache: dict[Domain, tuple[openmsg.NodeDescriptor | None, datetime]] = {}

    async def descriptor(self, domain: Domain) -> openmsg.NodeDescriptor | None:
        now = self._clock.now()
        cached = self._cache.get(domain)
        if cached is not None and now < cached[1]:
            return cached[0]
        try:
            found = await self._fetch(domain)
        except PeerUnreachable:
            return None  # says nothing about what it speaks: ask again next time
        self._cache[domain] = (found, now + (_KEEP if found else _KEEP_MISS))
        return found

    async def supports(self, domain: Domain, capability: str) -> bool:
        found = await self.descriptor(domain)
        return found is not None and found.supports(capability)

    async def capability(self, domain: Domain, capability: str) -> bool | None:
        """Like :meth:`supports`, but never a guess: None when the node could not be
        asked and nothing is known of it. An unreachable node keeps the
        capabilities it last described (taking it for a v1 peer would downgrade it)."""
        found = await self.descriptor(domain)
        if found is not None:
            return found.supports(capability)
        cached = self._cache.get(domain)
        if cached is None:
            return None  # never reached
        if cached[1] > self._clock.now():
            return False  # it answered lately, as a v1 peer
        stale = cached[0]
        return stale.supports(capability) if stale is not None else None

    def known_capability(self, domain: Domain, capability: str) -> bool | None:
        """What this node last learned of ``domain``'s capability, without asking
        it (for use inside a transaction); None when nothing is known."""
        cached = self._cache.get(domain)
        if cached is None:
            return None
        return cached[0] is not None and cached[0].supports(capability)

    async def _fetch(self, domain: Domain) -> openmsg.NodeDescriptor | None:
        reply = await self._transport.get_json(openmsg.descriptor_url(domain))
        if reply.status in _NOT_DESCRIBED:
            return None  # a v1 peer
        if reply.status != 200:
            # A node in trouble (5xx, ...) is not a v1 peer: ask again next time.
            raise PeerUnreachable(f"{domain} answered {reply.status} for its descriptor")
        try:
            found = openmsg.NodeDescriptor.model_validate(reply.body)
        except ValidationError:
            log.info("%s serves an invalid node descriptor", domain)
            return None
        return found if found.domain == domain else None
