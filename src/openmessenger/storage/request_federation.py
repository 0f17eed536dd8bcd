"""Contact requests across nodes: their SQL (services/request_ports.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, insert, select, update

from openmessenger.core.contact_requests import RemoteContactRequest, RequestState
from openmessenger.core.ids import AccountId, Address
from openmessenger.storage._base import Repository
from openmessenger.storage.tables import outgoing_contact_requests, remote_contact_requests

_incoming = remote_contact_requests
_outgoing = outgoing_contact_requests


def _request(row: Any) -> RemoteContactRequest:
    return RemoteContactRequest(
        id=row.id,
        target_account_id=AccountId(row.target_account_id),
        sender_address=Address(row.sender_address),
        sender_name=row.sender_name,
        sender_verified=bool(row.sender_verified),
        note=row.note,
        state=RequestState(row.state),
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


class SqlRemoteRequests(Repository):
    async def between(self, target: AccountId, sender: Address) -> RemoteContactRequest | None:
        query = select(_incoming).where(
            _incoming.c.target_account_id == target, _incoming.c.sender_address == sender
        )
        row = (await self._conn.execute(query)).first()
        return _request(row) if row else None

    async def add(self, request: RemoteContactRequest) -> bool:
        return await self._insert_unique(
            insert(_incoming).values(
                id=request.id,
                target_account_id=request.target_account_id,
                sender_address=request.sender_address,
                sender_name=request.sender_name,
                sender_verified=request.sender_verified,
                note=request.note,
                state=request.state.value,
                created_at=request.created_at,
            )
        )

    async def pending_for(self, target: AccountId) -> list[RemoteContactRequest]:
        query = (
            select(_incoming)
            .where(
                _incoming.c.target_account_id == target,
                _incoming.c.state == RequestState.PENDING.value,
            )
            .order_by(_incoming.c.created_at, _incoming.c.id)
        )
        return [_request(r) for r in await self._conn.execute(query)]

    async def get(self, target: AccountId, request_id: str) -> RemoteContactRequest | None:
        query = select(_incoming).where(
            _incoming.c.target_account_id == target, _incoming.c.id == request_id
        )
        row = (await self._conn.execute(query)).first()
        return _request(row) if row else None

    async def decide(self, request_id: str, state: RequestState, now: datetime) -> bool:
        result = await self._conn.execute(
            update(_incoming)
            .where(_incoming.c.id == request_id, _incoming.c.state == RequestState.PENDING.value)
            .values(state=state.value, decided_at=now)
        )
        return result.rowcount == 1

    async def settle(self, request_id: str) -> None:
        """The accept went through: the note goes, the row stays (as locally)."""
        await self._conn.execute(
            update(_incoming).where(_incoming.c.id == request_id).values(note=None)
        )

    async def reopen(self, request_id: str) -> None:
        await self._conn.execute(
            update(_incoming)
            .where(_incoming.c.id == request_id)
            .values(state=RequestState.PENDING.value, decided_at=None)
        )

    async def forget(self, request_id: str) -> None:
        await self._conn.execute(delete(_incoming).where(_incoming.c.id == request_id))

    async def drop_pending_from(self, target: AccountId, sender: Address) -> None:
        await self._conn.execute(
            delete(_incoming).where(
                _incoming.c.target_account_id == target,
                _incoming.c.sender_address == sender,
                _incoming.c.state == RequestState.PENDING.value,
            )
        )

    async def put_outgoing(self, sender: AccountId, target: Address, now: datetime) -> None:
        added = await self._insert_unique(
            insert(_outgoing).values(sender_account_id=sender, target_address=target, sent_at=now)
        )
        if not added:
            await self._conn.execute(
                update(_outgoing)
                .where(
                    _outgoing.c.sender_account_id == sender, _outgoing.c.target_address == target
                )
                .values(sent_at=now)
            )

    async def has_outgoing(self, sender: AccountId, target: Address) -> bool:
        query = select(
            exists().where(
                _outgoing.c.sender_account_id == sender, _outgoing.c.target_address == target
            )
        )
        return bool((await self._conn.execute(query)).scalar())

    async def drop_outgoing(self, sender: AccountId, target: Address) -> None:
        await self._conn.execute(
            delete(_outgoing).where(
                _outgoing.c.sender_account_id == sender, _outgoing.c.target_address == target
            )
        )
