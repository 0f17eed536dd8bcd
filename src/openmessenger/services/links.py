"""Openmsg connections as the hot paths need them: found by ``ident_code`` for
every received message, by (owner, peer) for every sent one, and unsealed.

Each is read from the store at most every few seconds; this process forgets one
as soon as it changes it (a new handshake, allow-replies). Another process of
the node sees a change within those seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from openmessenger.core.ids import AccountId, Address
from openmessenger.core.records import OpenmsgLink
from openmessenger.protocol import openmsg
from openmessenger.services.ports import Clock, Secrets, UnitOfWork

LINK_PURPOSE = "openmsg-link"
_IDENT_PURPOSE = "openmsg-ident"
_KEEP = timedelta(seconds=5)
_MAX_KEPT = 100_000


@dataclass(frozen=True, slots=True)
class LinkCodes:
    """The codes and key of one Openmsg connection (both sides hold the same)."""

    auth_code: str
    ident_code: str
    crypt_key: str

    def seal(self, secrets: Secrets) -> str:
        text = json.dumps([self.auth_code, self.ident_code, self.crypt_key])
        return secrets.seal(LINK_PURPOSE, text)

    @classmethod
    def unseal(cls, secrets: Secrets, sealed: str) -> LinkCodes:
        auth_code, ident_code, crypt_key = json.loads(secrets.unseal(LINK_PURPOSE, sealed))
        return cls(auth_code, ident_code, crypt_key)

    @property
    def key(self) -> bytes:
        return openmsg.parse_crypt_key(self.crypt_key)


def ident_hmac(secrets: Secrets, ident_code: str) -> str:
    return secrets.hmac(_IDENT_PURPOSE, ident_code)


@dataclass(frozen=True, slots=True)
class KnownLink:
    link: OpenmsgLink
    codes: LinkCodes


class Links:
    def __init__(self, uow: UnitOfWork, clock: Clock, secrets: Secrets) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._by_ident: dict[str, tuple[KnownLink, datetime]] = {}
        self._by_pair: dict[tuple[AccountId, Address], tuple[KnownLink, datetime]] = {}

    async def by_ident(self, ident_code: str) -> KnownLink | None:
        key = ident_hmac(self._secrets, ident_code)
        cached = self._fresh(self._by_ident.get(key))
        if cached is not None:
            return cached
        async with self._uow() as tx:
            link = await tx.federation.link_by_ident(key)
        return self._keep(link)

    async def of(self, owner: AccountId, peer: Address) -> KnownLink | None:
        cached = self._fresh(self._by_pair.get((owner, peer)))
        if cached is not None:
            return cached
        async with self._uow() as tx:
            link = await tx.federation.link(owner, peer)
        return self._keep(link)

    def forget(self, owner: AccountId, peer: Address) -> None:
        known = self._by_pair.pop((owner, peer), None)
        if known is not None:
            self._by_ident.pop(ident_hmac(self._secrets, known[0].codes.ident_code), None)

    def _fresh(self, entry: tuple[KnownLink, datetime] | None) -> KnownLink | None:
        if entry is None or self._clock.now() >= entry[1]:
            return None
        return entry[0]

    def _keep(self, link: OpenmsgLink | None) -> KnownLink | None:
        if link is None:
            return None  # not kept: a handshake may make it any moment
        if len(self._by_pair) >= _MAX_KEPT:  # stale entries are never read; drop them all
            self._by_ident.clear()
            self._by_pair.clear()
        known = KnownLink(link, LinkCodes.unseal(self._secrets, link.sealed))
        until = self._clock.now() + _KEEP
        self._by_ident[ident_hmac(self._secrets, known.codes.ident_code)] = (known, until)
        self._by_pair[(link.owner_account_id, link.peer_address)] = (known, until)
        return known
