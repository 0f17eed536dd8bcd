"""Preferences, contact requests and address blocks: their SQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, insert, or_, select, update

from openmessenger.core.contact_requests import ContactRequest, RequestState
from openmessenger.core.envelope import SendRequest
from openmessenger.core.groups import MemberState
from openmessenger.core.ids import AccountId, Address, ConversationId
from openmessenger.core.preferences import Level, Name
from openmessenger.storage._base import Repository, SqlConnection
from openmessenger.storage.tables import (
    address_blocks,
    connections,
    contact_requests,
    conversation_members,
    preferences,
)


class SqlPreferences(Repository):
    async def stored(
        self, account_id: AccountId, scopes: Iterable[tuple[Level, str]]
    ) -> dict[Name, dict[Level, str]]:
        """The raw (JSON) values set at each of ``scopes`` (level, scope key)."""
        wanted = list(scopes)
        if not wanted:
            return {}
        query = select(preferences).where(
            preferences.c.account_id == account_id,
            or_(
                *(
                    and_(preferences.c.level == level.value, preferences.c.scope == scope)
                    for level, scope in wanted
                )
            ),
        )
        found: dict[Name, dict[Level, str]] = {}
        known = {n.value for n in Name}
        for row in await self._conn.execute(query):
            if row.name in known:
                found.setdefault(Name(row.name), {})[Level(row.level)] = row.value
        return found

    async def put(
        self, account_id: AccountId, level: Level, scope: str, name: Name, value: str, now: datetime
    ) -> None:
        await self.clear(account_id, level, scope, name)
        await self._conn.execute(
            insert(preferences).values(
                account_id=account_id,
                level=level.value,
                scope=scope,
                name=name.value,
                value=value,
                updated_at=now,
            )
        )

    async def clear(self, account_id: AccountId, level: Level, scope: str, name: Name) -> bool:
        result = await self._conn.execute(
            delete(preferences).where(
                preferences.c.account_id == account_id,
                preferences.c.level == level.value,
                preferences.c.scope == scope,
                preferences.c.name == name.value,
            )
        )
        return bool(result.rowcount)

    async def conversation_peer(
        self, account_id: AccountId, conversation_id: ConversationId
    ) -> tuple[bool, Address | None]:
        """(the account takes part in the conversation, its 1:1 peer if it is one)."""
        direct = select(connections.c.peer_address).where(
            connections.c.owner_account_id == account_id,
            connections.c.conversation_id == conversation_id,
        )
        peer = (await self._conn.execute(direct)).scalar()
        if peer is not None:
            return True, Address(peer)
        member = select(
            exists().where(
                conversation_members.c.conversation_id == conversation_id,
                conversation_members.c.account_id == account_id,
                conversation_members.c.state.in_(
                    [MemberState.INVITED.value, MemberState.JOINED.value]
                ),
            )
        )
        return bool((await self._conn.execute(member)).scalar()), None


def _request(row: Any) -> ContactRequest:
    return ContactRequest(
        id=row.id,
        target_account_id=AccountId(row.target_account_id),
        sender_account_id=AccountId(row.sender_account_id),
        sender_address=Address(row.sender_address),
        note=row.note,
        state=RequestState(row.state),
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


class SqlContactRequests(Repository):
    async def between(self, target: AccountId, sender: AccountId) -> ContactRequest | None:
        query = select(contact_requests).where(
            contact_requests.c.target_account_id == target,
            contact_requests.c.sender_account_id == sender,
        )
        row = (await self._conn.execute(query)).first()
        return _request(row) if row else None

    async def add(self, request: ContactRequest) -> bool:
        """False when the pair has a row already (a request raced this one)."""
        return await self._insert_unique(
            insert(contact_requests).values(
                id=request.id,
                target_account_id=request.target_account_id,
                sender_account_id=request.sender_account_id,
                sender_address=request.sender_address,
                note=request.note,
                state=request.state.value,
                created_at=request.created_at,
            )
        )

    async def pending_for(self, target: AccountId) -> list[ContactRequest]:
        query = (
            select(contact_requests)
            .where(
                contact_requests.c.target_account_id == target,
                contact_requests.c.state == RequestState.PENDING.value,
            )
            .order_by(contact_requests.c.created_at, contact_requests.c.id)
        )
        return [_request(r) for r in await self._conn.execute(query)]

    async def get(self, target: AccountId, request_id: str) -> ContactRequest | None:
        query = select(contact_requests).where(
            contact_requests.c.target_account_id == target, contact_requests.c.id == request_id
        )
        row = (await self._conn.execute(query)).first()
        return _request(row) if row else None

    async def decide(self, request_id: str, state: RequestState, now: datetime) -> bool:
        """Settle a pending request; False if it was not pending any more. The row
        stays (a declined sender's later requests are dropped), its note does not."""
        result = await self._conn.execute(
            update(contact_requests)
            .where(
                contact_requests.c.id == request_id,
                contact_requests.c.state == RequestState.PENDING.value,
            )
            .values(state=state.value, decided_at=now, note=None)
        )
        return result.rowcount == 1

    async def drop_pending_from(self, target: AccountId, sender: Address) -> None:
        await self._conn.execute(
            delete(contact_requests).where(
                contact_requests.c.target_account_id == target,
                contact_requests.c.sender_address == sender,
                contact_requests.c.state == RequestState.PENDING.value,
            )
        )


class SqlBlocks(Repository):
    async def add(self, account_id: AccountId, address: Address, now: datetime) -> bool:
        """False when the address was blocked already."""
        return await self._insert_unique(
            insert(address_blocks).values(account_id=account_id, address=address, blocked_at=now)
        )

    async def remove(self, account_id: AccountId, address: Address) -> bool:
        result = await self._conn.execute(
            delete(address_blocks).where(
                address_blocks.c.account_id == account_id, address_blocks.c.address == address
            )
        )
        return bool(result.rowcount)

    async def list_for(self, account_id: AccountId) -> list[tuple[Address, datetime]]:
        query = (
            select(address_blocks.c.address, address_blocks.c.blocked_at)
            .where(address_blocks.c.account_id == account_id)
            .order_by(address_blocks.c.blocked_at, address_blocks.c.address)
        )
        return [(Address(r.address), r.blocked_at) for r in await self._conn.execute(query)]

    async def is_blocked(self, account_id: AccountId, address: Address) -> bool:
        query = select(
            exists().where(
                address_blocks.c.account_id == account_id, address_blocks.c.address == address
            )
        )
        return bool((await self._conn.execute(query)).scalar())

    async def blockers(
        self, account_ids: Iterable[AccountId], address: Address
    ) -> set[AccountId]:
        wanted = sorted(set(account_ids))
        if not wanted:
            return set()
        query = select(address_blocks.c.account_id).where(
            address_blocks.c.account_id.in_(wanted), address_blocks.c.address == address
        )
        return {AccountId(r.account_id) for r in await self._conn.execute(query)}


async def drop_blocked(
    conn: SqlConnection,
    requests: Sequence[SendRequest],
    contacts: dict[tuple[AccountId, Address], Any],
) -> None:
    """Forget the connections of sends whose local recipient blocked the sender, so
    that they are refused exactly like sends to an address one is not connected
    with (one statement per batch; ``contacts`` as ``SqlMessages._contacts_of``)."""
    pairs: Mapping[tuple[AccountId, Address], tuple[AccountId, Address]] = {
        (r.sender_account, r.recipient): (contact.recipient_account, r.sender)
        for r in requests
        if (contact := contacts.get((r.sender_account, r.recipient))) is not None
        and contact.recipient_account is not None
    }
    if not pairs:
        return
    query = select(address_blocks.c.account_id, address_blocks.c.address).where(
        address_blocks.c.account_id.in_(sorted({a for a, _ in pairs.values()})),
        address_blocks.c.address.in_(sorted({s for _, s in pairs.values()})),
    )
    blocked = {(r.account_id, r.address) for r in await conn.execute(query)}
    for key, pair in pairs.items():
        if pair in blocked:
            del contacts[key]
