"""Plans of accounts, participants' policy overrides, and deleting expired
history (services/policies.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from openmessenger.core.ids import AccountId, ConversationId, MessageId
from openmessenger.core.policies import MessageRate, Plan, PolicyOverride
from openmessenger.storage._base import Repository
from openmessenger.storage.erasure import SqlErasure
from openmessenger.storage.tables import accounts, connections, conversation_policies, messages


def _plan(value: str) -> Plan:
    try:
        return Plan(value)
    except ValueError:  # a plan this version does not know: the default one
        return Plan.FREE


def _override(row: Any) -> PolicyOverride:
    rate = None
    if row.rate_count is not None and row.rate_unit is not None:
        rate = MessageRate(int(row.rate_count), row.rate_unit)
    return PolicyOverride(
        retention_seconds=row.retention_seconds,
        max_participants=row.max_participants,
        max_message_bytes=row.max_message_bytes,
        message_rate=rate,
    )


class SqlPolicies(Repository):
    async def plan(self, account_id: AccountId) -> Plan | None:
        query = select(accounts.c.plan).where(accounts.c.id == account_id)
        found = (await self._conn.execute(query)).scalar()
        return _plan(found) if found is not None else None

    async def set_plan(self, account_id: AccountId, plan: Plan) -> None:
        await self._conn.execute(
            update(accounts).where(accounts.c.id == account_id).values(plan=plan.value)
        )

    async def participant_plans(self, conversation_id: ConversationId) -> dict[AccountId, Plan]:
        """The plans of this node's accounts that hold a connection over the conversation."""
        query = (
            select(accounts.c.id, accounts.c.plan)
            .join(connections, connections.c.owner_account_id == accounts.c.id)
            .where(connections.c.conversation_id == conversation_id)
        )
        return {AccountId(r.id): _plan(r.plan) for r in await self._conn.execute(query)}

    async def overrides(self, conversation_id: ConversationId) -> dict[AccountId, PolicyOverride]:
        query = select(conversation_policies).where(
            conversation_policies.c.conversation_id == conversation_id
        )
        return {AccountId(r.account_id): _override(r) for r in await self._conn.execute(query)}

    async def put_override(
        self,
        conversation_id: ConversationId,
        account_id: AccountId,
        override: PolicyOverride,
        now: datetime,
    ) -> None:
        """Set the participant's override (replacing theirs); an empty one is removed."""
        await self.delete_override(conversation_id, account_id)
        if override.empty:
            return
        rate = override.message_rate
        await self._conn.execute(
            insert(conversation_policies).values(
                conversation_id=conversation_id,
                account_id=account_id,
                retention_seconds=override.retention_seconds,
                max_participants=override.max_participants,
                max_message_bytes=override.max_message_bytes,
                rate_count=rate.count if rate else None,
                rate_unit=rate.unit if rate else None,
                updated_at=now,
            )
        )

    async def delete_override(self, conversation_id: ConversationId, account_id: AccountId) -> None:
        await self._conn.execute(
            delete(conversation_policies).where(
                conversation_policies.c.conversation_id == conversation_id,
                conversation_policies.c.account_id == account_id,
            )
        )

    async def shortest_override_retention(self) -> int | None:
        query = select(func.min(conversation_policies.c.retention_seconds))
        found = (await self._conn.execute(query)).scalar()
        return int(found) if found is not None else None

    async def conversations_with_history_before(
        self, before: datetime, after: ConversationId | None, limit: int
    ) -> list[ConversationId]:
        """Conversations holding a message sent before ``before``, by id, after ``after``."""
        query = select(messages.c.conversation_id).where(messages.c.sent_at < before)
        if after is not None:
            query = query.where(messages.c.conversation_id > after)
        query = query.group_by(messages.c.conversation_id).order_by(messages.c.conversation_id)
        rows = await self._conn.execute(query.limit(limit))
        return [ConversationId(r.conversation_id) for r in rows]

    async def delete_history_before(
        self, conversation_id: ConversationId, before: datetime, limit: int
    ) -> list[MessageId]:
        """Delete up to ``limit`` of the conversation's messages sent before ``before``,
        with every row that points at them (stream entries, webhook deliveries,
        outbox and received records: the erasure's one list). Returns their ids."""
        query = (
            select(messages.c.id)
            .where(messages.c.conversation_id == conversation_id, messages.c.sent_at < before)
            .order_by(messages.c.seq)
            .limit(limit)
        )
        ids = [MessageId(r.id) for r in await self._conn.execute(query)]
        if ids:
            await _delete_messages(SqlErasure(self._conn), ids)
        return ids


async def _delete_messages(erasure: SqlErasure, ids: Sequence[MessageId]) -> None:
    # The erasure's helper knows every table that points at a message.
    await erasure._delete_messages(select(messages.c.id).where(messages.c.id.in_(list(ids))))
