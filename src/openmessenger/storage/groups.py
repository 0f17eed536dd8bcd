"""Groups and their participants (core/groups.py has the rules)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.orm import aliased

from openmessenger.core.groups import (
    GROUP_KIND,
    REMOTE_PREFIX,
    Group,
    GroupForward,
    Member,
    MemberKind,
    MemberState,
    Mode,
    Role,
    is_remote,
    remote_account_id,
    successor,
)
from openmessenger.core.ids import AccountId, Address, ConversationId, Domain, MessageId
from openmessenger.storage._base import Repository
from openmessenger.storage.tables import (
    conversation_members,
    conversations,
    group_fanout,
    group_forwards,
    group_remote_members,
)

_CURRENT = (MemberState.INVITED.value, MemberState.JOINED.value)


def _group(row: Any) -> Group:
    return Group(
        id=ConversationId(row.id),
        name=row.name or "",
        mode=Mode(row.mode),
        created_by=Address(row.created_by or ""),
        created_at=row.created_at,
        last_seq=int(row.last_seq),
    )


def _member(row: Any, account_id: AccountId | None = None) -> Member:
    return Member(
        conversation_id=ConversationId(row.conversation_id),
        account_id=account_id or AccountId(row.account_id),
        address=Address(row.address),
        role=Role(row.role),
        kind=MemberKind(row.kind),
        app_id=row.app_id,
        state=MemberState(row.state),
        invited_by=Address(row.invited_by) if row.invited_by else None,
        invited_seq=int(row.invited_seq) if row.invited_seq is not None else None,
        joined_seq=int(row.joined_seq) if row.joined_seq is not None else None,
        left_seq=int(row.left_seq) if row.left_seq is not None else None,
        joined_at=row.joined_at,
        updated_at=row.updated_at,
    )


def _member_values(member: Member) -> dict[str, Any]:
    return {
        "address": member.address,
        "role": member.role.value,
        "kind": member.kind.value,
        "app_id": member.app_id,
        "state": member.state.value,
        "invited_by": member.invited_by,
        "invited_seq": member.invited_seq,
        "joined_seq": member.joined_seq,
        "left_seq": member.left_seq,
        "joined_at": member.joined_at,
        "updated_at": member.updated_at,
    }


class SqlGroups(Repository):
    async def create(
        self, group_id: ConversationId, name: str, created_by: Address, now: datetime
    ) -> None:
        await self._conn.execute(
            insert(conversations).values(
                id=group_id,
                kind=GROUP_KIND,
                created_at=now,
                last_seq=0,
                mode=Mode.HISTORY.value,
                name=name,
                created_by=created_by,
            )
        )

    async def lock(self, group_id: ConversationId) -> Group | None:
        """The group, its row locked until the transaction ends (every change to a
        group's members or log takes this first, so they happen one after another)."""
        # A no-op UPDATE: a row lock on PostgreSQL, the write lock on SQLite.
        await self._conn.execute(
            update(conversations)
            .where(conversations.c.id == group_id, conversations.c.kind == GROUP_KIND)
            .values(last_seq=conversations.c.last_seq)
        )
        return await self.get(group_id)

    async def get(self, group_id: ConversationId) -> Group | None:
        query = select(conversations).where(
            conversations.c.id == group_id, conversations.c.kind == GROUP_KIND
        )
        row = (await self._conn.execute(query)).first()
        return _group(row) if row else None

    async def members(self, group_id: ConversationId) -> list[Member]:
        """Every participant the group ever had (on this node and on others), in
        the order they came."""
        query = select(conversation_members).where(
            conversation_members.c.conversation_id == group_id
        )
        found = [_member(r) for r in await self._conn.execute(query)]
        remote = select(group_remote_members).where(
            group_remote_members.c.conversation_id == group_id
        )
        found += [_remote(r) for r in await self._conn.execute(remote)]
        found.sort(key=lambda m: (m.invited_seq or 0, m.address))
        return found

    async def member(self, group_id: ConversationId, account_id: AccountId) -> Member | None:
        if account_id.startswith(REMOTE_PREFIX):
            remote = select(group_remote_members).where(
                group_remote_members.c.conversation_id == group_id,
                group_remote_members.c.address == account_id[len(REMOTE_PREFIX) :],
            )
            found = (await self._conn.execute(remote)).first()
            return _remote(found) if found else None
        query = select(conversation_members).where(
            conversation_members.c.conversation_id == group_id,
            conversation_members.c.account_id == account_id,
        )
        row = (await self._conn.execute(query)).first()
        return _member(row) if row else None

    async def put_member(self, member: Member) -> None:
        """Add a participant, or replace what is known of it."""
        if is_remote(member):
            await self._put_remote(member)
            return
        where = and_(
            conversation_members.c.conversation_id == member.conversation_id,
            conversation_members.c.account_id == member.account_id,
        )
        result = await self._conn.execute(
            update(conversation_members).where(where).values(**_member_values(member))
        )
        if result.rowcount == 0:
            await self._conn.execute(
                insert(conversation_members).values(
                    conversation_id=member.conversation_id,
                    account_id=member.account_id,
                    **_member_values(member),
                )
            )

    async def of_account(self, account_id: AccountId) -> list[tuple[Group, Member]]:
        """The groups the account takes part in (invited or joined), oldest first."""
        query = (
            select(conversations, *[c.label(f"m_{c.name}") for c in conversation_members.c])
            .join(
                conversation_members,
                conversation_members.c.conversation_id == conversations.c.id,
            )
            .where(
                conversation_members.c.account_id == account_id,
                conversation_members.c.state.in_(_CURRENT),
            )
            .order_by(conversations.c.created_at, conversations.c.id)
        )
        found = []
        for row in await self._conn.execute(query):
            values = {c.name: getattr(row, f"m_{c.name}") for c in conversation_members.c}
            found.append((_group(row), _member(_Row(values))))
        return found

    async def hand_over(self, account_id: AccountId) -> None:
        """Before the account is deleted: each group it owns passes on as if it
        left (core.groups.successor), so no group is left without an owner."""
        query = select(conversation_members.c.conversation_id).where(
            conversation_members.c.account_id == account_id,
            conversation_members.c.role == Role.OWNER.value,
            conversation_members.c.state.in_(_CURRENT),
        )
        for row in list(await self._conn.execute(query)):
            group_id = ConversationId(row.conversation_id)
            heir = successor(await self.members(group_id), account_id)
            if heir is not None:
                await self.put_member(replace(heir, role=Role.OWNER))

    async def share_group(self, account_id: AccountId, address: Address) -> bool:
        """Whether the account and ``address`` both joined one group (and may
        have left it since: their earlier messages are checked against their keys)."""
        mine, theirs = aliased(conversation_members), aliased(conversation_members)
        query = (
            select(mine.c.conversation_id)
            .join(theirs, theirs.c.conversation_id == mine.c.conversation_id)
            .where(
                mine.c.account_id == account_id,
                mine.c.joined_seq.isnot(None),
                theirs.c.address == address,
                theirs.c.joined_seq.isnot(None),
            )
            .limit(1)
        )
        if (await self._conn.execute(query)).first() is not None:
            return True
        remote = (
            select(mine.c.conversation_id)
            .join(
                group_remote_members,
                group_remote_members.c.conversation_id == mine.c.conversation_id,
            )
            .where(
                mine.c.account_id == account_id,
                mine.c.joined_seq.isnot(None),
                group_remote_members.c.address == address,
                group_remote_members.c.joined_seq.isnot(None),
            )
            .limit(1)
        )
        return (await self._conn.execute(remote)).first() is not None

    # -- groups across nodes (services/group_federation.py) ------------------------------

    async def _put_remote(self, member: Member) -> None:
        values = _member_values(member)
        where = and_(
            group_remote_members.c.conversation_id == member.conversation_id,
            group_remote_members.c.address == member.address,
        )
        result = await self._conn.execute(
            update(group_remote_members).where(where).values(**values)
        )
        if result.rowcount == 0:
            await self._conn.execute(
                insert(group_remote_members).values(
                    conversation_id=member.conversation_id, **values
                )
            )

    async def add_fanout(
        self,
        group_id: ConversationId,
        domain: Domain,
        seq: int,
        receivers: list[Address],
        now: datetime,
    ) -> None:
        """The host: the message at ``seq`` goes to ``receivers`` on ``domain``'s node."""
        await self._conn.execute(
            insert(group_fanout).values(
                conversation_id=group_id,
                domain=domain,
                seq=seq,
                receivers=json.dumps(receivers),
                attempts=0,
                next_attempt_at=now,
            )
        )

    async def claim_fanout(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[ConversationId, Domain, int]]:
        """(group, node, attempts so far) whose oldest waiting row is due; each is
        leased until ``lease_until`` (its rows' next attempt moves there)."""
        query = (
            select(
                group_fanout.c.conversation_id,
                group_fanout.c.domain,
                func.max(group_fanout.c.attempts).label("attempts"),
            )
            .group_by(group_fanout.c.conversation_id, group_fanout.c.domain)
            .having(func.min(group_fanout.c.next_attempt_at) <= now)
            .limit(limit)
        )
        found = [
            (ConversationId(r.conversation_id), Domain(r.domain), int(r.attempts))
            for r in await self._conn.execute(query)
        ]
        for group_id, domain, _ in found:
            await self._conn.execute(
                update(group_fanout)
                .where(group_fanout.c.conversation_id == group_id, group_fanout.c.domain == domain)
                .values(next_attempt_at=lease_until)
            )
        return found

    async def fanout_rows(
        self, group_id: ConversationId, domain: Domain, limit: int
    ) -> list[tuple[int, list[Address]]]:
        """The first waiting (seq, receivers) for that node, in seq order."""
        query = (
            select(group_fanout.c.seq, group_fanout.c.receivers)
            .where(group_fanout.c.conversation_id == group_id, group_fanout.c.domain == domain)
            .order_by(group_fanout.c.seq)
            .limit(limit)
        )
        return [
            (int(r.seq), [Address(a) for a in json.loads(r.receivers)])
            for r in await self._conn.execute(query)
        ]

    async def settle_fanout(
        self,
        group_id: ConversationId,
        domain: Domain,
        *,
        up_to_seq: int | None,
        retry_at: datetime,
        attempts: int,
    ) -> None:
        """Drop the rows that node took (up to ``up_to_seq``); the rest are due at
        ``retry_at`` (at once after a success)."""
        where = and_(group_fanout.c.conversation_id == group_id, group_fanout.c.domain == domain)
        if up_to_seq is not None:
            await self._conn.execute(
                delete(group_fanout).where(where, group_fanout.c.seq <= up_to_seq)
            )
        await self._conn.execute(
            update(group_fanout).where(where).values(next_attempt_at=retry_at, attempts=attempts)
        )

    async def add_forward(self, forward: GroupForward) -> None:
        """A member's node: a message for the host to order."""
        await self._conn.execute(
            insert(group_forwards).values(
                message_id=forward.message_id,
                conversation_id=forward.conversation_id,
                sender_account_id=forward.sender_account_id,
                sender_device=forward.sender_device,
                body=forward.body,
                client_txn_id=forward.client_txn_id,
                sent_at=forward.sent_at,
                attempts=forward.attempts,
                next_attempt_at=forward.next_attempt_at,
                give_up_at=forward.give_up_at,
                revision=forward.revision,
                replaces=forward.replaces,
            )
        )

    async def forward_by_txn(self, sender_device: str, client_txn_id: str) -> GroupForward | None:
        query = select(group_forwards).where(
            group_forwards.c.sender_device == sender_device,
            group_forwards.c.client_txn_id == client_txn_id,
        )
        row = (await self._conn.execute(query)).first()
        return _forward(row) if row else None

    async def claim_forwards(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[GroupForward]:
        """Forwards due now, oldest first, each leased until ``lease_until``."""
        query = (
            select(group_forwards)
            .where(group_forwards.c.next_attempt_at <= now)
            .order_by(group_forwards.c.sent_at, group_forwards.c.message_id)
            .limit(limit)
        )
        found = [_forward(r) for r in await self._conn.execute(query)]
        if found:
            await self._conn.execute(
                update(group_forwards)
                .where(group_forwards.c.message_id.in_([f.message_id for f in found]))
                .values(next_attempt_at=lease_until)
            )
        return found

    async def settle_forward(
        self, message_id: MessageId, retry_at: datetime | None, attempts: int
    ) -> None:
        """Delete a forward the host took (or refused for good), else retry it later."""
        where = group_forwards.c.message_id == message_id
        if retry_at is None:
            await self._conn.execute(delete(group_forwards).where(where))
        else:
            await self._conn.execute(
                update(group_forwards)
                .where(where)
                .values(next_attempt_at=retry_at, attempts=attempts)
            )


def _remote(row: Any) -> Member:
    return _member(row, remote_account_id(row.address))


def _forward(row: Any) -> GroupForward:
    return GroupForward(
        message_id=MessageId(row.message_id),
        conversation_id=ConversationId(row.conversation_id),
        sender_account_id=AccountId(row.sender_account_id),
        sender_device=row.sender_device,
        body=row.body,
        client_txn_id=row.client_txn_id,
        sent_at=row.sent_at,
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at,
        give_up_at=row.give_up_at,
        revision=row.revision,
        replaces=MessageId(row.replaces) if row.replaces else None,
    )


class _Row:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
