"""The federation repository: Openmsg links, pending handshakes, the outbox,
domain blocks and node flags. SQL only; the rules live in the services."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update

from openmessenger.core.apps import provenance_from_json
from openmessenger.core.envelope import DeliveryStatus, Encryption
from openmessenger.core.ids import AccountId, Address, ConversationId, Domain, MessageId
from openmessenger.core.records import OpenmsgLink, OutboxItem, OutboxOutcome, OutboxVerdict
from openmessenger.storage._base import Repository, SqlConnection
from openmessenger.storage.grant_keys import GrantKeys
from openmessenger.storage.tables import (
    accounts,
    connections,
    federation_blocks,
    messages,
    node_flags,
    openmsg_handshakes,
    openmsg_links,
    openmsg_outbox,
    signed_request_nonces,
)

_LINK_COLUMNS = (
    openmsg_links.c.owner_account_id,
    accounts.c.address.label("owner_address"),
    openmsg_links.c.peer_address,
    connections.c.conversation_id,
    connections.c.accepts_messages,
    openmsg_links.c.sealed,
)


def _link_query() -> Any:
    return (
        select(*_LINK_COLUMNS)
        .join(accounts, accounts.c.id == openmsg_links.c.owner_account_id)
        .join(
            connections,
            and_(
                connections.c.owner_account_id == openmsg_links.c.owner_account_id,
                connections.c.peer_address == openmsg_links.c.peer_address,
            ),
        )
    )


def _link(row: Any) -> OpenmsgLink:
    return OpenmsgLink(
        owner_account_id=AccountId(row.owner_account_id),
        owner_address=Address(row.owner_address),
        peer_address=Address(row.peer_address),
        conversation_id=ConversationId(row.conversation_id),
        accepts_messages=bool(row.accepts_messages),
        sealed=row.sealed,
    )


_OUTBOX_COLUMNS = (
    openmsg_outbox.c.message_id,
    openmsg_outbox.c.owner_account_id,
    messages.c.sender,
    openmsg_outbox.c.peer_address,
    messages.c.body,
    openmsg_outbox.c.nonce,
    openmsg_outbox.c.salt,
    openmsg_outbox.c.attempt_ts,
    openmsg_outbox.c.attempts,
    openmsg_outbox.c.give_up_at,
    openmsg_outbox.c.sealed_plaintext,
    messages.c.encryption,
    messages.c.sender_device,
    messages.c.sent_at,
    messages.c.media_type,
    messages.c.media_metadata,
    messages.c.provenance,
    openmsg_links.c.sealed,
)


def _outbox_query() -> Any:
    return (
        select(*_OUTBOX_COLUMNS)
        .join(messages, messages.c.id == openmsg_outbox.c.message_id)
        .outerjoin(
            openmsg_links,
            and_(
                openmsg_links.c.owner_account_id == openmsg_outbox.c.owner_account_id,
                openmsg_links.c.peer_address == openmsg_outbox.c.peer_address,
            ),
        )
    )


def _outbox_item(row: Any, keys: GrantKeys | None) -> OutboxItem:
    body, metadata, sealed_plaintext = row.body, row.media_metadata, row.sealed_plaintext
    if keys is not None:
        body = keys.unwrap(body) or ""
        metadata = keys.unwrap(metadata) if metadata else None
        sealed_plaintext = keys.unwrap(sealed_plaintext) if sealed_plaintext else None
    return OutboxItem(
        message_id=MessageId(row.message_id),
        owner_account_id=AccountId(row.owner_account_id),
        sender=Address(row.sender),
        peer_address=Address(row.peer_address),
        body=body,
        nonce=row.nonce,
        salt=row.salt,
        attempt_ts=int(row.attempt_ts),
        attempts=int(row.attempts),
        give_up_at=row.give_up_at,
        sealed_link=row.sealed,
        sealed_plaintext=sealed_plaintext,
        encryption=Encryption(row.encryption),
        sender_device=row.sender_device,
        sent_at=row.sent_at,
        media_type=row.media_type,
        metadata=metadata,
        provenance=provenance_from_json(row.provenance) if row.provenance else None,
    )


class SqlFederation(Repository):
    def __init__(self, conn: SqlConnection, keys: GrantKeys | None = None) -> None:
        super().__init__(conn)
        self._keys = keys

    # --- links ---------------------------------------------------------------

    async def put_link(
        self, owner: AccountId, peer: Address, ident_hmac: str, sealed: str, now: datetime
    ) -> None:
        """Set the codes of the owner's connection with ``peer`` (a new handshake replaces them)."""
        await self._conn.execute(
            delete(openmsg_links).where(
                openmsg_links.c.owner_account_id == owner, openmsg_links.c.peer_address == peer
            )
        )
        await self._conn.execute(
            insert(openmsg_links).values(
                owner_account_id=owner,
                peer_address=peer,
                ident_hmac=ident_hmac,
                sealed=sealed,
                updated_at=now,
            )
        )

    async def link(self, owner: AccountId, peer: Address) -> OpenmsgLink | None:
        query = _link_query().where(
            openmsg_links.c.owner_account_id == owner, openmsg_links.c.peer_address == peer
        )
        row = (await self._conn.execute(query)).first()
        return _link(row) if row else None

    async def link_by_ident(self, ident_hmac: str) -> OpenmsgLink | None:
        query = _link_query().where(openmsg_links.c.ident_hmac == ident_hmac)
        row = (await self._conn.execute(query)).first()
        return _link(row) if row else None

    # --- handshakes we started ----------------------------------------------------

    async def add_handshake(self, hash_hmac: str, receiver: Address, expires_at: datetime) -> None:
        await self._conn.execute(
            insert(openmsg_handshakes).values(
                hash_hmac=hash_hmac, receiver=receiver, expires_at=expires_at
            )
        )

    async def handshake_pending(self, hash_hmac: str, receiver: Address, now: datetime) -> bool:
        query = select(openmsg_handshakes.c.hash_hmac).where(
            openmsg_handshakes.c.hash_hmac == hash_hmac,
            openmsg_handshakes.c.receiver == receiver,
            openmsg_handshakes.c.expires_at > now,
        )
        return (await self._conn.execute(query)).first() is not None

    async def end_handshake(self, hash_hmac: str, now: datetime) -> None:
        """Forget this handshake, and any that expired."""
        await self._conn.execute(
            delete(openmsg_handshakes).where(
                or_(
                    openmsg_handshakes.c.hash_hmac == hash_hmac,
                    openmsg_handshakes.c.expires_at <= now,
                )
            )
        )

    # --- signed requests from our other nodes ---------------------------------------

    async def take_request_nonce(
        self, origin: Domain, nonce: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Remember ``nonce`` from ``origin`` until ``expires_at``; False if it was
        taken before (a replay). Forgets nonces whose window has closed."""
        await self._conn.execute(
            delete(signed_request_nonces).where(signed_request_nonces.c.expires_at <= now)
        )
        return await self._insert_unique(
            insert(signed_request_nonces).values(
                origin=origin, nonce=nonce, expires_at=expires_at
            )
        )

    # --- outbox -------------------------------------------------------------------

    async def claim_due(
        self,
        now: datetime,
        lease_until: datetime,
        limit: int,
        message_ids: Sequence[MessageId] | None = None,
    ) -> list[OutboxItem]:
        """Lease up to ``limit`` messages that are due (or exactly ``message_ids``,
        if not leased by someone else) and return them."""
        free = or_(openmsg_outbox.c.lease_until.is_(None), openmsg_outbox.c.lease_until <= now)
        query = select(openmsg_outbox.c.message_id).where(free)
        if message_ids is not None:
            query = query.where(openmsg_outbox.c.message_id.in_(list(message_ids)))
        else:
            query = query.where(openmsg_outbox.c.next_attempt_at <= now).order_by(
                openmsg_outbox.c.next_attempt_at
            )
        query = query.limit(limit).with_for_update(skip_locked=True)
        ids = [row.message_id for row in await self._conn.execute(query)]
        if not ids:
            return []
        await self._conn.execute(
            update(openmsg_outbox)
            .where(openmsg_outbox.c.message_id.in_(ids))
            .values(lease_until=lease_until, attempts=openmsg_outbox.c.attempts + 1)
        )
        rows = await self._conn.execute(_outbox_query().where(openmsg_outbox.c.message_id.in_(ids)))
        return [_outbox_item(r, self._keys) for r in rows]

    async def outbox_by_nonce(self, nonce: str) -> OutboxItem | None:
        row = (
            await self._conn.execute(_outbox_query().where(openmsg_outbox.c.nonce == nonce))
        ).first()
        return _outbox_item(row, self._keys) if row else None

    async def refresh_attempt(self, message_id: MessageId, salt: str, attempt_ts: int) -> None:
        await self._conn.execute(
            update(openmsg_outbox)
            .where(openmsg_outbox.c.message_id == message_id)
            .values(salt=salt, attempt_ts=attempt_ts)
        )

    async def settle(self, outcomes: Sequence[OutboxOutcome]) -> None:
        """Delivered and failed messages leave the outbox with their status set;
        the others wait for their next attempt."""
        for verdict, status in (
            (OutboxVerdict.DELIVERED, DeliveryStatus.DELIVERED),
            (OutboxVerdict.FAILED, DeliveryStatus.FAILED),
        ):
            ids = sorted(o.message_id for o in outcomes if o.verdict is verdict)
            if ids:
                await self._conn.execute(
                    delete(openmsg_outbox).where(openmsg_outbox.c.message_id.in_(ids))
                )
                await self._conn.execute(
                    update(messages).where(messages.c.id.in_(ids)).values(status=status.value)
                )
        for outcome in outcomes:
            if outcome.verdict is OutboxVerdict.RETRY:
                await self._conn.execute(
                    update(openmsg_outbox)
                    .where(openmsg_outbox.c.message_id == outcome.message_id)
                    .values(next_attempt_at=outcome.next_attempt_at, lease_until=None)
                )

    # --- blocks and flags -----------------------------------------------------------

    async def block(self, domain: Domain, now: datetime) -> bool:
        """False when it was blocked already."""
        return await self._insert_unique(
            insert(federation_blocks).values(domain=domain, blocked_at=now)
        )

    async def unblock(self, domain: Domain) -> bool:
        result = await self._conn.execute(
            delete(federation_blocks).where(federation_blocks.c.domain == domain)
        )
        return bool(result.rowcount)

    async def blocked_domains(self) -> list[Domain]:
        query = select(federation_blocks.c.domain).order_by(federation_blocks.c.domain)
        return [Domain(r.domain) for r in await self._conn.execute(query)]

    async def flag(self, name: str) -> str | None:
        query = select(node_flags.c.value).where(node_flags.c.name == name)
        value: str | None = (await self._conn.execute(query)).scalar()
        return value

    async def set_flag(self, name: str, value: str, now: datetime) -> None:
        await self._conn.execute(delete(node_flags).where(node_flags.c.name == name))
        await self._conn.execute(insert(node_flags).values(name=name, value=value, updated_at=now))
