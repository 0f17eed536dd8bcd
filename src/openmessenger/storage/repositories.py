"""SQLAlchemy implementations of the service ports: the only place SQL lives."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, delete, func, insert, select, tuple_, update

from openmessenger.core.apps import provenance_from_json, provenance_to_json
from openmessenger.core.envelope import (
    AppendResult,
    DeliveryStatus,
    Encryption,
    Message,
    OutboundSeal,
    ReceivedMessage,
    SendRequest,
    StreamEvent,
    stream_receivers,
)
from openmessenger.core.groups import GroupAppend
from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    DeviceId,
    MessageId,
    PassCodeId,
)
from openmessenger.core.passcodes import CodeState
from openmessenger.core.records import (
    Account,
    AccountKind,
    Contact,
    Device,
    OwnerKind,
    PassCode,
)
from openmessenger.storage._base import Repository, SqlConnection
from openmessenger.storage.apps import SqlApps
from openmessenger.storage.erasure import SqlErasure, SqlExport
from openmessenger.storage.federation import SqlFederation
from openmessenger.storage.grant_keys import WRAP_PREFIX, GrantKeys
from openmessenger.storage.groups import SqlGroups
from openmessenger.storage.keys import (
    DEVICE_COLUMNS,
    SqlBackups,
    SqlKeys,
    SqlLinkRequests,
    SqlToDevice,
    device_from_row,
)
from openmessenger.storage.policies import SqlPolicies
from openmessenger.storage.preferences import (
    SqlBlocks,
    SqlContactRequests,
    SqlPreferences,
    drop_blocked,
)
from openmessenger.storage.registration import SqlIdentities, SqlTotp, SqlVerifications
from openmessenger.storage.request_federation import SqlRemoteRequests
from openmessenger.storage.revisions import SqlRevisions
from openmessenger.storage.tables import (
    accounts,
    auth_challenges,
    connections,
    conversations,
    device_streams,
    device_tokens,
    devices,
    messages,
    openmsg_outbox,
    openmsg_received,
    openmsg_sent,
    pass_code_budgets,
    pass_codes,
)
from openmessenger.storage.webhooks import SqlWebhooks


def _account(row: Any) -> Account:
    return Account(
        id=AccountId(row.id),
        address=Address(row.address),
        kind=AccountKind(row.kind),
        display_name=row.display_name,
        created_at=row.created_at,
        owner_kind=OwnerKind(row.owner_kind) if row.owner_kind else None,
        registered_at=row.registered_at,
    )


class SqlAccounts(Repository):
    async def create(
        self, *, account_id: AccountId, address: Address, kind: AccountKind, now: datetime
    ) -> Account | None:
        values = {"id": account_id, "address": address, "kind": kind.value, "created_at": now}
        if not await self._insert_unique(insert(accounts).values(**values)):
            return None
        return Account(account_id, address, kind, None, now)

    async def get(self, account_id: AccountId) -> Account | None:
        row = (
            await self._conn.execute(select(accounts).where(accounts.c.id == account_id))
        ).first()
        return _account(row) if row else None

    async def by_address(self, address: Address) -> Account | None:
        query = select(accounts).where(accounts.c.address == address)
        row = (await self._conn.execute(query)).first()
        return _account(row) if row else None

    async def set_display_name(self, account_id: AccountId, name: str) -> None:
        await self._conn.execute(
            update(accounts).where(accounts.c.id == account_id).values(display_name=name)
        )

    async def register(self, account_id: AccountId, owner_kind: OwnerKind, now: datetime) -> None:
        """The account is registered now (from anonymous or managed), owned by ``owner_kind``."""
        await self._conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(
                kind=AccountKind.REGISTERED.value, owner_kind=owner_kind.value, registered_at=now
            )
        )


class SqlDevices(Repository):
    async def create(self, device: Device) -> None:
        await self._conn.execute(
            insert(devices).values(
                id=device.id,
                account_id=device.account_id,
                ed25519_key=device.ed25519_key,
                curve25519_key=device.curve25519_key,
                created_at=device.created_at,
                stream_head=0,
                app_id=device.app_id,
                node_held=device.node_held,
            )
        )

    async def by_ed25519_key(self, key: str) -> Device | None:
        """A device that is not revoked (a revoked one cannot log in)."""
        query = select(*DEVICE_COLUMNS).where(
            devices.c.ed25519_key == key, devices.c.revoked_at.is_(None)
        )
        row = (await self._conn.execute(query)).first()
        return device_from_row(row) if row else None

    async def ids_of_account(self, account_id: AccountId) -> list[DeviceId]:
        query = (
            select(devices.c.id)
            .where(devices.c.account_id == account_id, devices.c.revoked_at.is_(None))
            .order_by(devices.c.id)
        )
        return [DeviceId(r.id) for r in await self._conn.execute(query)]

    async def add_token(self, device_id: DeviceId, token_hmac: str, now: datetime) -> None:
        await self._conn.execute(
            insert(device_tokens).values(token_hmac=token_hmac, device_id=device_id, created_at=now)
        )

    async def by_token(self, token_hmac: str) -> Device | None:
        query = (
            select(*DEVICE_COLUMNS)
            .join(device_tokens, device_tokens.c.device_id == devices.c.id)
            .where(device_tokens.c.token_hmac == token_hmac, devices.c.revoked_at.is_(None))
        )
        row = (await self._conn.execute(query)).first()
        return device_from_row(row) if row else None


class SqlChallenges(Repository):
    async def add(self, challenge_hmac: str, expires_at: datetime) -> None:
        await self._conn.execute(
            insert(auth_challenges).values(challenge_hmac=challenge_hmac, expires_at=expires_at)
        )

    async def consume(self, challenge_hmac: str, now: datetime) -> bool:
        # Expired challenges are swept here too, so the table stays small.
        await self._conn.execute(delete(auth_challenges).where(auth_challenges.c.expires_at <= now))
        result = await self._conn.execute(
            delete(auth_challenges).where(auth_challenges.c.challenge_hmac == challenge_hmac)
        )
        return result.rowcount == 1


def _pass_code(row: Any) -> PassCode:
    return PassCode(
        id=PassCodeId(row.id),
        owner_account_id=AccountId(row.owner_account_id),
        code_hmac=row.code_hmac,
        bound_to=Address(row.bound_to) if row.bound_to else None,
        state=CodeState(row.state),
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_by=Address(row.used_by) if row.used_by else None,
        used_at=row.used_at,
    )


class SqlPassCodes(Repository):
    async def add(self, code: PassCode) -> None:
        await self._conn.execute(
            insert(pass_codes).values(
                id=code.id,
                owner_account_id=code.owner_account_id,
                code_hmac=code.code_hmac,
                bound_to=code.bound_to,
                state=code.state.value,
                created_at=code.created_at,
                expires_at=code.expires_at,
            )
        )

    async def list_for(self, owner: AccountId) -> list[PassCode]:
        query = (
            select(pass_codes)
            .where(pass_codes.c.owner_account_id == owner)
            .order_by(pass_codes.c.created_at.desc(), pass_codes.c.id)
        )
        return [_pass_code(r) for r in await self._conn.execute(query)]

    async def live(self, owner: AccountId, now: datetime) -> list[PassCode]:
        query = select(pass_codes).where(
            pass_codes.c.owner_account_id == owner,
            pass_codes.c.state == CodeState.LIVE.value,
            pass_codes.c.expires_at > now,
        )
        return [_pass_code(r) for r in await self._conn.execute(query)]

    async def set_state(
        self,
        ids: Sequence[PassCodeId],
        state: CodeState,
        *,
        used_by: Address | None = None,
        at: datetime | None = None,
    ) -> None:
        if not ids:
            return
        values: dict[str, Any] = {"state": state.value}
        if state is CodeState.LIVE:  # given back: nobody used it
            values.update(used_by=None, used_at=None)
        if used_by is not None:
            values.update(used_by=used_by, used_at=at)
        await self._conn.execute(
            update(pass_codes).where(pass_codes.c.id.in_(ids)).values(**values)
        )

    async def budget_spent(self, owner: AccountId, pool: str) -> int:
        query = select(pass_code_budgets.c.spent).where(
            pass_code_budgets.c.owner_account_id == owner, pass_code_budgets.c.pool == pool
        )
        spent = (await self._conn.execute(query)).scalar()
        return int(spent or 0)

    async def set_budget_spent(self, owner: AccountId, pool: str, spent: int) -> None:
        where = and_(
            pass_code_budgets.c.owner_account_id == owner, pass_code_budgets.c.pool == pool
        )
        if spent == 0:
            await self._conn.execute(delete(pass_code_budgets).where(where))
            return
        result = await self._conn.execute(
            update(pass_code_budgets).where(where).values(spent=spent)
        )
        if result.rowcount == 0:
            await self._conn.execute(
                insert(pass_code_budgets).values(owner_account_id=owner, pool=pool, spent=spent)
            )

    async def lock_owner(self, owner: AccountId) -> None:
        # A no-op UPDATE takes the row lock on PostgreSQL (SQLite already has
        # one writer), so two redemptions against one owner run one after another.
        await self._conn.execute(
            update(accounts).where(accounts.c.id == owner).values(kind=accounts.c.kind)
        )


def _contact(row: Any) -> Contact:
    return Contact(
        owner_account_id=AccountId(row.owner_account_id),
        address=Address(row.peer_address),
        display_name=row.display_name,
        conversation_id=ConversationId(row.conversation_id),
        connected_at=row.connected_at,
        accepts_messages=bool(row.accepts_messages),
        peer_accepts_messages=bool(row.peer_accepts_messages),
    )


def _contacts_query() -> Any:
    # A local peer's name is read live from its account; a remote peer's is
    # the one its node last told us.
    return select(
        connections.c.owner_account_id,
        connections.c.peer_address,
        func.coalesce(accounts.c.display_name, connections.c.peer_display_name).label(
            "display_name"
        ),
        connections.c.conversation_id,
        connections.c.connected_at,
        connections.c.accepts_messages,
        connections.c.peer_accepts_messages,
    ).outerjoin(accounts, accounts.c.address == connections.c.peer_address)


class SqlConnections(Repository):
    async def add(self, contact: Contact) -> bool:
        return await self._insert_unique(
            insert(connections).values(
                owner_account_id=contact.owner_account_id,
                peer_address=contact.address,
                peer_display_name=contact.display_name,
                conversation_id=contact.conversation_id,
                connected_at=contact.connected_at,
                accepts_messages=contact.accepts_messages,
                peer_accepts_messages=contact.peer_accepts_messages,
            )
        )

    async def update_remote(
        self,
        owner: AccountId,
        address: Address,
        *,
        display_name: str | None = None,
        accepts_messages: bool | None = None,
        peer_accepts_messages: bool | None = None,
    ) -> None:
        """What a remote peer's node told us about it since (name, allow replies),
        and whether the owner now takes its messages."""
        values: dict[str, Any] = {}
        if accepts_messages is not None:
            values["accepts_messages"] = accepts_messages
        if display_name is not None:
            values["peer_display_name"] = display_name
        if peer_accepts_messages is not None:
            values["peer_accepts_messages"] = peer_accepts_messages
        if values:
            await self._conn.execute(
                update(connections)
                .where(
                    connections.c.owner_account_id == owner,
                    connections.c.peer_address == address,
                )
                .values(**values)
            )

    async def get(self, owner: AccountId, address: Address) -> Contact | None:
        query = _contacts_query().where(
            connections.c.owner_account_id == owner, connections.c.peer_address == address
        )
        row = (await self._conn.execute(query)).first()
        return _contact(row) if row else None

    async def list_for(self, owner: AccountId) -> list[Contact]:
        query = (
            _contacts_query()
            .where(connections.c.owner_account_id == owner)
            .order_by(connections.c.connected_at, connections.c.peer_address)
        )
        return [_contact(r) for r in await self._conn.execute(query)]

    async def by_conversation(
        self, owner: AccountId, conversation_id: ConversationId
    ) -> Contact | None:
        query = _contacts_query().where(
            connections.c.owner_account_id == owner,
            connections.c.conversation_id == conversation_id,
        )
        row = (await self._conn.execute(query)).first()
        return _contact(row) if row else None

    async def create_conversation(self, conversation_id: ConversationId, now: datetime) -> None:
        await self._conn.execute(
            insert(conversations).values(
                id=conversation_id, kind="direct", created_at=now, last_seq=0
            )
        )


_MESSAGE_COLUMNS = (
    messages.c.id,
    messages.c.conversation_id,
    messages.c.seq,
    messages.c.sender,
    messages.c.sender_device,
    messages.c.recipient,
    messages.c.body,
    messages.c.sent_at,
    messages.c.status,
    messages.c.encryption,
    messages.c.media_type,
    messages.c.media_metadata,
    messages.c.provenance,
    messages.c.replaces,
    messages.c.edited_at,
    messages.c.deleted_at,
)


def _message(row: Any, keys: GrantKeys | None) -> Message:
    body, metadata, grant_key_id = row.body, row.media_metadata, None
    if keys is not None and body.startswith(WRAP_PREFIX):
        # Kept under the app grant's key; once the key is destroyed (the app's
        # data deleted) nothing here opens, and nothing is shown.
        grant_key_id = body[len(WRAP_PREFIX) :].partition(":")[0]
        body = keys.unwrap(body) or ""
        metadata = keys.unwrap(metadata) if metadata else None
    return Message(
        id=MessageId(row.id),
        conversation_id=ConversationId(row.conversation_id),
        seq=int(row.seq),
        sender=Address(row.sender),
        sender_device=DeviceId(row.sender_device),
        recipient=Address(row.recipient),
        body=body,
        sent_at=row.sent_at,
        status=DeliveryStatus(row.status),
        encryption=Encryption(row.encryption),
        media_type=row.media_type,
        metadata=metadata,
        provenance=provenance_from_json(row.provenance) if row.provenance else None,
        grant_key_id=grant_key_id,
        replaces=MessageId(row.replaces) if row.replaces else None,
        edited_at=row.edited_at,
        deleted_at=row.deleted_at,
    )


# The send path's statements, built once: expanding parameters keep their
# compiled form cached whatever the batch size.
_CONTACTS_OF = (
    select(
        connections.c.owner_account_id,
        connections.c.peer_address,
        connections.c.conversation_id,
        connections.c.peer_accepts_messages,
        accounts.c.id,
    )
    .outerjoin(accounts, accounts.c.address == connections.c.peer_address)
    .where(
        connections.c.owner_account_id.in_(bindparam("owners", expanding=True)),
        connections.c.peer_address.in_(bindparam("peers", expanding=True)),
    )
)
_LOCK_CONVERSATIONS = (
    select(conversations.c.id)
    .where(conversations.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(conversations.c.id)
    .with_for_update()
)
_DEVICES_OF = (  # a revoked device gets nothing new
    select(devices.c.id, devices.c.account_id)
    .where(
        devices.c.account_id.in_(bindparam("accounts", expanding=True)),
        devices.c.revoked_at.is_(None),
    )
    .order_by(devices.c.id)
)
_NEXT_SEQS = (
    update(conversations)
    .where(conversations.c.id.in_(bindparam("ids", expanding=True)))
    .values(last_seq=conversations.c.last_seq + bindparam("n"))
    .returning(conversations.c.id, conversations.c.last_seq)
)
_NEXT_POSITIONS = (
    update(devices)
    .where(devices.c.id.in_(bindparam("ids", expanding=True)))
    .values(stream_head=devices.c.stream_head + bindparam("n"))
    .returning(devices.c.id, devices.c.stream_head)
)


class SqlMessages(Repository):
    def __init__(self, conn: SqlConnection, keys: GrantKeys | None = None) -> None:
        super().__init__(conn)
        self._keys = keys

    async def append_batch(self, requests: Sequence[SendRequest]) -> list[AppendResult]:
        """Append many sends in a constant number of statements (group commit).

        Refusals and retries are decided from what the transaction reads; each
        accepted message gets its conversation's next ``seq`` and a place in
        every receiving device's stream, in request order.
        """
        contacts = await self._contacts_of(requests)
        # A recipient who blocked the sender is as unreachable as a stranger.
        await drop_blocked(self._conn, requests, contacts)
        # Lock the conversations before looking for earlier sends with the same
        # idempotency key: a retry racing its still-uncommitted original (another
        # process) waits here, then finds it, instead of colliding on insert.
        await self._conn.execute(
            _LOCK_CONVERSATIONS, {"ids": sorted({c.conversation_id for c in contacts.values()})}
        )
        existing = await self._messages_by_txn(requests)
        devices_of = await self._devices_of(
            {c.recipient_account for c in contacts.values() if c.recipient_account}
            | {r.sender_account for r in requests}
        )
        results: list[AppendResult | None] = []
        accepted: list[tuple[int, Message, list[DeviceId]]] = []
        first_with_key: dict[tuple[str, str], int] = {}  # key -> index of its first request
        repeats: dict[int, int] = {}  # index of a repeat in this batch -> index of the first
        for index, request in enumerate(requests):
            key = (request.sender_device, request.client_txn_id) if request.client_txn_id else None
            if key in existing:
                results.append(AppendResult(existing[key], created=False))
                continue
            if key is not None and key in first_with_key:
                repeats[index] = first_with_key[key]
                results.append(None)  # filled in below: the same message as the first
                continue
            contact = contacts.get((request.sender_account, request.recipient))
            if (
                contact is None
                or not contact.peer_accepts
                or ((contact.recipient_account is None) != (request.outbound is not None))
            ):
                # Not connected, not taking messages, or a local/remote mix-up
                # (a remote address is sent only with its Openmsg seal).
                results.append(AppendResult(None, created=False))
                continue
            conversation_id, recipient_account = contact.conversation_id, contact.recipient_account
            message = Message(
                id=request.message_id,
                conversation_id=conversation_id,
                seq=0,  # assigned below, once per conversation for the whole batch
                sender=request.sender,
                sender_device=request.sender_device,
                recipient=request.recipient,
                body=request.body,
                sent_at=request.sent_at,
                # A local recipient's node is this one: it has the message now.
                status=DeliveryStatus.ACCEPTED if request.outbound else DeliveryStatus.DELIVERED,
                encryption=request.encryption,
                media_type=request.media_type,
                metadata=request.metadata,
                provenance=request.provenance,
                grant_key_id=request.grant_key_id,
            )
            receivers = stream_receivers(
                devices_of.get(recipient_account, []) if recipient_account else [],
                devices_of.get(request.sender_account, []),
                request.sender_device,
            )
            if key is not None:
                first_with_key[key] = index
            accepted.append((index, message, receivers))
            results.append(None)

        seqs = await self._advance(_NEXT_SEQS, [m.conversation_id for _, m, _ in accepted])
        positions = await self._advance(_NEXT_POSITIONS, [d for _, _, ds in accepted for d in ds])
        rows, stream_rows, outbox_rows = [], [], []
        for index, message, receivers in accepted:
            stored = replace(message, seq=next(seqs[message.conversation_id]))
            events = tuple(StreamEvent(d, next(positions[d]), stored) for d in receivers)
            seal = requests[index].outbound
            results[index] = AppendResult(
                stored, created=True, events=events, outbound=seal is not None
            )
            rows.append(_message_row(stored, requests[index].client_txn_id, self._keys))
            if seal is not None:
                outbox_rows.append(_outbox_row(requests[index], seal, self._keys))
            stream_rows += [
                {"device_id": e.device_id, "position": e.position, "message_id": stored.id}
                for e in events
            ]
        if rows:
            await self._conn.execute(insert(messages), rows)
        if stream_rows:
            await self._conn.execute(insert(device_streams), stream_rows)
        if outbox_rows:
            await self._conn.execute(insert(openmsg_outbox), outbox_rows)
            # Kept after delivery: the peer names the message by it (revisions).
            await self._conn.execute(insert(openmsg_sent), [_sent_row(r) for r in outbox_rows])
        for index, first in repeats.items():
            original = results[first]
            assert original is not None
            results[index] = AppendResult(original.message, created=False)
        final = [result for result in results if result is not None]
        assert len(final) == len(requests), "every request has its result"
        return final

    async def append_group(self, request: GroupAppend) -> AppendResult:
        """Append one message to a group (services/groups.py): the caller holds the
        group's lock and named the receiving accounts. The group's next ``seq``, and
        a place in the stream of each of their devices but the sending one. A
        ``client_txn_id`` the sending device used before gives that message back."""
        if request.client_txn_id:
            query = select(*_MESSAGE_COLUMNS).where(
                messages.c.sender_device == request.sender_device,
                messages.c.client_txn_id == request.client_txn_id,
            )
            row = (await self._conn.execute(query)).first()
            if row is not None:
                return AppendResult(_message(row, self._keys), created=False)
        devices_of = await self._devices_of(set(request.receivers))
        # The sending device already has the message; it is left out only when it
        # is the sender's own (a peer names devices of its users, never ours).
        own_device = await self._conn.execute(
            select(devices.c.id)
            .join(accounts, accounts.c.id == devices.c.account_id)
            .where(devices.c.id == request.sender_device, accounts.c.address == request.sender)
        )
        skipped = request.sender_device if own_device.first() is not None else None
        receivers: list[str] = list(
            dict.fromkeys(
                d
                for account in request.receivers
                for d in devices_of.get(account, [])
                if d != skipped
            )
        )
        if request.seq is None:
            seq = next(
                (await self._advance(_NEXT_SEQS, [request.conversation_id]))[
                    request.conversation_id
                ]
            )
        else:  # a replica of a group hosted on another node keeps the host's seq
            seq = request.seq
            await self._conn.execute(
                update(conversations)
                .where(conversations.c.id == request.conversation_id)
                .values(last_seq=seq)
            )
        positions = await self._advance(_NEXT_POSITIONS, receivers)
        stored = Message(
            id=request.message_id,
            conversation_id=request.conversation_id,
            seq=seq,
            sender=request.sender,
            sender_device=DeviceId(request.sender_device),
            recipient=Address(request.conversation_id),  # a group's "to" is the group
            body=request.body,
            sent_at=request.sent_at,
            status=DeliveryStatus.DELIVERED,
            encryption=Encryption(request.encryption),
            media_type=request.media_type,
            metadata=request.metadata,
        )
        events = tuple(StreamEvent(DeviceId(d), next(positions[d]), stored) for d in receivers)
        await self._conn.execute(
            insert(messages), [_message_row(stored, request.client_txn_id, self._keys)]
        )
        if events:
            await self._conn.execute(
                insert(device_streams),
                [
                    {"device_id": e.device_id, "position": e.position, "message_id": stored.id}
                    for e in events
                ],
            )
        return AppendResult(stored, created=True, events=events)

    async def _messages_by_txn(
        self, requests: Sequence[SendRequest]
    ) -> dict[tuple[str, str], Message]:
        keys = {(r.sender_device, r.client_txn_id) for r in requests if r.client_txn_id}
        if not keys:
            return {}
        query = select(*_MESSAGE_COLUMNS, messages.c.client_txn_id).where(
            tuple_(messages.c.sender_device, messages.c.client_txn_id).in_(sorted(keys))
        )
        return {
            (row.sender_device, row.client_txn_id): _message(row, self._keys)
            for row in await self._conn.execute(query)
        }

    async def _contacts_of(
        self, requests: Sequence[SendRequest]
    ) -> dict[tuple[AccountId, Address], _SendContact]:
        """(sender account, recipient) -> the connection the send goes over."""
        wanted = {(r.sender_account, r.recipient) for r in requests}
        rows = await self._conn.execute(
            _CONTACTS_OF,
            {"owners": sorted({o for o, _ in wanted}), "peers": sorted({p for _, p in wanted})},
        )
        found = {}
        for r in rows:
            key = (AccountId(r.owner_account_id), Address(r.peer_address))
            if key in wanted:  # the two IN lists select a superset of the pairs
                found[key] = _SendContact(
                    ConversationId(r.conversation_id),
                    AccountId(r.id) if r.id is not None else None,
                    bool(r.peer_accepts_messages),
                )
        return found

    async def append_received(
        self, received: Sequence[ReceivedMessage]
    ) -> list[AppendResult | None]:
        """Store messages that arrived over Openmsg, each at its conversation's
        next ``seq`` and in every device stream of its recipient; ``None`` for
        one whose nonce this link already took (a replay or a retry)."""
        if not received:
            return []
        await self._conn.execute(
            _LOCK_CONVERSATIONS, {"ids": sorted({r.conversation_id for r in received})}
        )
        seen = await self._received_nonces(received)
        devices_of = await self._devices_of({r.recipient_account for r in received})
        fresh: list[tuple[int, ReceivedMessage]] = []
        for index, item in enumerate(received):
            key = (item.recipient_account, item.sender, item.nonce)
            if key not in seen:
                seen.add(key)  # a repeat inside this batch is a replay too
                fresh.append((index, item))
        seqs = await self._advance(_NEXT_SEQS, [r.conversation_id for _, r in fresh])
        positions = await self._advance(
            _NEXT_POSITIONS, [d for _, r in fresh for d in devices_of.get(r.recipient_account, [])]
        )
        results: list[AppendResult | None] = [None] * len(received)
        rows, stream_rows, nonce_rows = [], [], []
        for index, item in fresh:
            stored = Message(
                id=item.message_id,
                conversation_id=item.conversation_id,
                seq=next(seqs[item.conversation_id]),
                sender=item.sender,
                sender_device=DeviceId(""),  # on another node: not ours to name
                recipient=item.recipient,
                body=item.body,
                encryption=item.encryption,
                sent_at=item.sent_at,
                status=DeliveryStatus.DELIVERED,
                media_type=item.media_type,
                metadata=item.metadata,
                provenance=item.provenance,
            )
            events = tuple(
                StreamEvent(d, next(positions[d]), stored)
                for d in devices_of.get(item.recipient_account, [])
            )
            results[index] = AppendResult(stored, created=True, events=events)
            rows.append(_message_row(stored, None, self._keys))
            stream_rows += [
                {"device_id": e.device_id, "position": e.position, "message_id": stored.id}
                for e in events
            ]
            nonce_rows.append(
                {
                    "owner_account_id": item.recipient_account,
                    "peer_address": item.sender,
                    "nonce": item.nonce,
                    "message_id": stored.id,
                }
            )
        if rows:
            await self._conn.execute(insert(messages), rows)
            await self._conn.execute(insert(openmsg_received), nonce_rows)
        if stream_rows:
            await self._conn.execute(insert(device_streams), stream_rows)
        return results

    async def _received_nonces(
        self, received: Sequence[ReceivedMessage]
    ) -> set[tuple[AccountId, Address, str]]:
        query = select(
            openmsg_received.c.owner_account_id,
            openmsg_received.c.peer_address,
            openmsg_received.c.nonce,
        ).where(
            # An IN per primary-key column: an index lookup, not a scan, however many
            # were received (SQLite scans for a row-value IN). A superset of the keys:
            # the caller compares whole keys.
            openmsg_received.c.owner_account_id.in_(
                sorted({r.recipient_account for r in received})
            ),
            openmsg_received.c.peer_address.in_(sorted({r.sender for r in received})),
            openmsg_received.c.nonce.in_(sorted({r.nonce for r in received})),
        )
        return {
            (AccountId(r.owner_account_id), Address(r.peer_address), str(r.nonce))
            for r in await self._conn.execute(query)
        }

    async def _devices_of(self, account_ids: set[AccountId]) -> dict[AccountId, list[DeviceId]]:
        found: dict[AccountId, list[DeviceId]] = {}
        for row in await self._conn.execute(_DEVICES_OF, {"accounts": sorted(account_ids)}):
            found.setdefault(AccountId(row.account_id), []).append(DeviceId(row.id))
        return found

    async def _advance(self, statement: Any, keys: list[str]) -> dict[str, Iterator[int]]:
        """Bump a counter of each row by how often its key occurs; yields the
        numbers handed out per key, in order. One UPDATE .. RETURNING per
        distinct count (nearly always one). The row locks serialise concurrent
        batches, and processes."""
        by_count: dict[int, list[str]] = {}
        for key, count in Counter(keys).items():
            by_count.setdefault(count, []).append(key)
        ranges: dict[str, Iterator[int]] = {}
        for count, group in sorted(by_count.items()):
            result = await self._conn.execute(statement, {"ids": sorted(group), "n": count})
            rows: list[Any] = list(result.all())
            for row in rows:
                key, last = str(row[0]), int(row[1])
                ranges[key] = iter(range(last - count + 1, last + 1))
        return ranges

    async def stream(self, device_id: DeviceId, since: int, limit: int) -> list[StreamEvent]:
        query = (
            select(device_streams.c.position, *_MESSAGE_COLUMNS)
            .join(messages, messages.c.id == device_streams.c.message_id)
            .where(device_streams.c.device_id == device_id, device_streams.c.position > since)
            .order_by(device_streams.c.position)
            .limit(limit)
        )
        return [
            StreamEvent(device_id, int(r.position), _message(r, self._keys))
            for r in await self._conn.execute(query)
        ]

    async def history(
        self, conversation_id: ConversationId, after_seq: int, limit: int
    ) -> list[Message]:
        query = (
            select(*_MESSAGE_COLUMNS)
            .where(messages.c.conversation_id == conversation_id, messages.c.seq > after_seq)
            .order_by(messages.c.seq)
            .limit(limit)
        )
        return [_message(r, self._keys) for r in await self._conn.execute(query)]

    async def get(self, message_id: MessageId) -> Message | None:
        query = select(*_MESSAGE_COLUMNS).where(messages.c.id == message_id)
        row = (await self._conn.execute(query)).first()
        return _message(row, self._keys) if row else None

    async def sent_by_txn(self, sender_device: DeviceId, client_txn_id: str) -> Message | None:
        query = select(*_MESSAGE_COLUMNS).where(
            messages.c.sender_device == sender_device,
            messages.c.client_txn_id == client_txn_id,
        )
        row = (await self._conn.execute(query)).first()
        return _message(row, self._keys) if row else None


class _SendContact(NamedTuple):
    conversation_id: ConversationId
    recipient_account: AccountId | None
    """None when the recipient is on another node."""
    peer_accepts: bool


def _sent_row(outbox_row: dict[str, Any]) -> dict[str, Any]:
    return {k: outbox_row[k] for k in ("message_id", "owner_account_id", "peer_address", "nonce")}


def _outbox_row(
    request: SendRequest, seal: OutboundSeal, keys: GrantKeys | None = None
) -> dict[str, Any]:
    sealed_plaintext = seal.sealed_plaintext
    if sealed_plaintext is not None and request.grant_key_id is not None and keys is not None:
        # An app's text waiting for delivery is under its grant key as well: a
        # backup taken meanwhile cannot give it up once the app's data is deleted.
        sealed_plaintext = keys.wrap(request.grant_key_id, sealed_plaintext)
    return {
        "message_id": request.message_id,
        "owner_account_id": request.sender_account,
        "peer_address": request.recipient,
        "nonce": seal.nonce,
        "salt": seal.salt,
        "attempt_ts": seal.attempt_ts,
        "attempts": 1,  # the first, made by the process that holds the lease
        "next_attempt_at": request.sent_at,
        "give_up_at": seal.give_up_at,
        "lease_until": seal.lease_until,
        "sealed_plaintext": sealed_plaintext,
    }


def _message_row(
    message: Message, client_txn_id: str | None, keys: GrantKeys | None = None
) -> dict[str, Any]:
    body, metadata = message.body, message.metadata
    if message.grant_key_id is not None:
        if keys is None:
            raise LookupError("a message kept under a grant key needs the grant keys")
        body = keys.wrap(message.grant_key_id, body)
        metadata = keys.wrap(message.grant_key_id, metadata) if metadata else None
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "sender": message.sender,
        "sender_device": message.sender_device,
        "recipient": message.recipient,
        "body": body,
        "sent_at": message.sent_at,
        "status": message.status.value,
        "encryption": message.encryption.value,
        "client_txn_id": client_txn_id,
        "media_type": message.media_type,
        "media_metadata": metadata,
        "app_id": message.provenance.app_id if message.provenance else None,
        "provenance": provenance_to_json(message.provenance) if message.provenance else None,
        "replaces": message.replaces,
    }


class SqlTransaction:
    """One database transaction, exposing every repository over one connection."""

    def __init__(self, conn: SqlConnection, grant_keys: GrantKeys | None = None) -> None:
        self._conn = conn
        self.accounts = SqlAccounts(conn)
        self.devices = SqlDevices(conn)
        self.challenges = SqlChallenges(conn)
        self.codes = SqlPassCodes(conn)
        self.connections = SqlConnections(conn)
        self.messages = SqlMessages(conn, grant_keys)
        self.federation = SqlFederation(conn, grant_keys)
        self.apps = SqlApps(conn)
        self.erasure = SqlErasure(conn)
        self.export = SqlExport(conn, grant_keys)
        self.keys = SqlKeys(conn)
        self.backups = SqlBackups(conn)
        self.link_requests = SqlLinkRequests(conn)
        self.to_device = SqlToDevice(conn)
        self.identities = SqlIdentities(conn)
        self.verifications = SqlVerifications(conn)
        self.totp = SqlTotp(conn)
        self.preferences = SqlPreferences(conn)
        self.contact_requests = SqlContactRequests(conn)
        self.blocks = SqlBlocks(conn)
        self.webhooks = SqlWebhooks(conn)
        self.policies = SqlPolicies(conn)
        self.groups = SqlGroups(conn)
        self.revisions = SqlRevisions(conn)
        self.remote_requests = SqlRemoteRequests(conn)

    async def commit(self) -> None:
        await self._conn.commit()
