"""Blocking an address: its messages are refused like a stranger's (the one
generic refusal; storage/preferences.py ``drop_blocked`` on the local send path,
``FederationService`` for messages from other nodes) and its contact requests
are dropped silently. A block keeps the connection: unblocking restores it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import AccountId, Address, parse_address
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.services.ports import Clock, UnitOfWork


@dataclass(frozen=True, slots=True)
class Block:
    address: Address
    blocked_at: datetime


class BlockService:
    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def block(self, caller: AuthenticatedDevice, address: str) -> tuple[Block, bool]:
        """Block any address (a contact, a request's sender, anyone); its pending
        request to the caller goes. (the block, whether it is new)"""
        blocked = parse_address(address).address
        if blocked == caller.account.address:
            raise InvalidInput("address", "is your own address")
        now = self._clock.now()
        async with self._uow() as tx:
            created = await tx.blocks.add(caller.account.id, blocked, now)
            if not created:
                now = dict(await tx.blocks.list_for(caller.account.id)).get(blocked, now)
            await tx.contact_requests.drop_pending_from(caller.account.id, blocked)
            await tx.remote_requests.drop_pending_from(caller.account.id, blocked)
            await tx.commit()
        return Block(blocked, now), created

    async def unblock(self, caller: AuthenticatedDevice, address: str) -> None:
        """Messages from the address are taken again (nothing refused meanwhile comes back)."""
        unblocked = parse_address(address).address
        async with self._uow() as tx:
            await tx.blocks.remove(caller.account.id, unblocked)
            await tx.commit()

    async def blocks(self, caller: AuthenticatedDevice) -> list[Block]:
        async with self._uow() as tx:
            found = await tx.blocks.list_for(caller.account.id)
        return [Block(address, at) for address, at in found]

    async def is_blocked(self, account: AccountId, address: Address) -> bool:
        async with self._uow() as tx:
            return await tx.blocks.is_blocked(account, address)
