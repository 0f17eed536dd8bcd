"""Plans and policies (docs/conversations.md, "Policies"): what each account's
plan allows, the stricter-only overrides participants lay on a conversation,
and their enforcement: message size and rate on send, and retention, a sweep
that deletes expired history for real.

The rules themselves are pure (core/policies.py); this service reads plans and
overrides through the ``policies`` repository. Other services call
:meth:`PolicyService.check_send` before they store a message, and ask
:meth:`PolicyService.for_conversation` / :meth:`PolicyService.for_account` for
limits they enforce themselves (e.g. a group's maximum participants).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from openmessenger.core.errors import Forbidden, NotFound
from openmessenger.core.ids import AccountId, Address, ConversationId, parse_address
from openmessenger.core.policies import (
    MessageRateLimited,
    Plan,
    Policy,
    PolicyOverride,
    check_body_size,
    check_override,
    parse_plan,
    strictest,
)
from openmessenger.core.records import Account, AuthenticatedDevice
from openmessenger.services.ports import Clock, Transaction, UnitOfWork
from openmessenger.services.request_limits import WindowLimiter

log = logging.getLogger("openmessenger.policies")

DIRECT_CACHE_SECONDS = 2.0
"""How long a 1:1 conversation's policy is kept in memory for sends: a plan or an
override changed in this process applies at once, one changed elsewhere (another
process, the operator's local CLI) within this time. Reading it costs a
transaction of its own, as much as the rest of a send (bench/RESULTS.md)."""
DIRECT_CACHE_SIZE = 100_000

SWEEP_BATCH = 500
"""Messages deleted per transaction by the retention sweep."""


class GroupDirectory(Protocol):
    """What the policies need to know of groups (implemented by the groups service).
    Called outside the policies' own transactions, so it may open its own."""

    async def owner_of(self, conversation_id: ConversationId) -> AccountId | None:
        """The account on this node that owns the group; None when the conversation
        is not a group (or not one owned here)."""
        ...

    async def is_member(self, conversation_id: ConversationId, account_id: AccountId) -> bool:
        """Whether the account takes part in the group now."""
        ...

    async def manages(self, conversation_id: ConversationId, account_id: AccountId) -> bool:
        """Whether the account may tighten the group's policy (its owner and admins:
        an override binds every participant)."""
        ...


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    """An account's plan and what it gives."""

    account: Account
    plan: Plan
    policy: Policy


@dataclass(frozen=True, slots=True)
class ConversationPolicy:
    conversation_id: ConversationId
    policy: Policy
    """In force: the plans' limits with every participant's override laid on them."""
    base: Policy
    """What the plans alone give (overrides may only be stricter than this)."""
    override: PolicyOverride
    """The caller's own override (empty: none)."""


class PolicyService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        plans: Mapping[Plan, Policy],
        limiter: WindowLimiter,
        *,
        sweep_every: timedelta = timedelta(minutes=10),
        batch: int = SWEEP_BATCH,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._plans = dict(plans)
        self._limiter = limiter
        self._sweep_every = sweep_every
        self._batch = batch
        self._runner: asyncio.Task[None] | None = None
        self.groups: GroupDirectory | None = None
        """Groups' owners and members (set by wiring once groups exist)."""
        self.direct_cache_seconds = DIRECT_CACHE_SECONDS
        self._direct: dict[tuple[AccountId, Address], tuple[float, ConversationId, Policy]] = {}

    # --- what applies ---------------------------------------------------------------

    def of_plan(self, plan: Plan) -> Policy:
        return self._plans[plan]

    async def for_account(self, account_id: AccountId) -> Policy:
        """What the account's plan gives (NotFound ``account_not_found``)."""
        async with self._uow() as tx:
            plan = await tx.policies.plan(account_id)
        if plan is None:
            raise NotFound("No such account.", code="account_not_found")
        return self._plans[plan]

    async def max_participants(self, owner_account_id: AccountId) -> int:
        """How many a group owned by this account may have, by its plan (a new
        group has no overrides yet; :meth:`for_conversation` has them later)."""
        return (await self.for_account(owner_account_id)).max_participants

    async def max_participants_in(
        self, owner_account_id: AccountId, group_id: ConversationId | None
    ) -> int:
        """How many a group may have: a new one by its owner's plan, an existing one
        by its policy in force (overrides included)."""
        if group_id is None:
            return await self.max_participants(owner_account_id)
        return (await self.for_conversation(group_id, owner_account_id)).max_participants

    async def for_conversation(
        self, conversation_id: ConversationId, owner_account_id: AccountId | None = None
    ) -> Policy:
        """The policy in force in a conversation: its owner's plan (a group; pass
        ``owner_account_id``) or the stricter of its local participants' plans (1:1),
        with every participant's override laid on it. A conversation with no
        participant here gets the default plan's policy.

        Call it (and :meth:`check_send`) outside any transaction of your own: it
        opens its own (on SQLite one transaction at a time)."""
        owner = owner_account_id or await self._group_owner(conversation_id)
        async with self._uow() as tx:
            return await self._in_force(tx, conversation_id, owner)

    async def check_send(
        self,
        account_id: AccountId,
        conversation_id: ConversationId,
        body: str,
        *,
        owner_account_id: AccountId | None = None,
    ) -> None:
        """Before a message is stored: its size against the conversation's policy
        (``message_too_large``, naming ``body``), then one message against the
        sender's rate in the conversation (``message_rate_limited``, with Retry-After)."""
        policy = await self.for_conversation(conversation_id, owner_account_id)
        await self._check(policy, account_id, conversation_id, body)

    async def check_direct_send(self, account_id: AccountId, recipient: Address, body: str) -> None:
        """:meth:`check_send` for a 1:1 message to ``recipient`` (one transaction).
        Without a connection nothing is checked here: the send is refused later,
        the generic way."""
        key = (account_id, recipient)
        now = time.monotonic()
        cached = self._direct.get(key)
        if cached is not None and cached[0] > now:
            _, conversation_id, policy = cached
        else:
            async with self._uow() as tx:
                contact = await tx.connections.get(account_id, recipient)
                if contact is None:
                    return
                conversation_id = contact.conversation_id
                policy = await self._in_force(tx, conversation_id, None)
            if self.direct_cache_seconds > 0:
                if len(self._direct) >= DIRECT_CACHE_SIZE:
                    self._direct.clear()
                self._direct[key] = (now + self.direct_cache_seconds, conversation_id, policy)
        await self._check(policy, account_id, conversation_id, body)

    async def _check(
        self, policy: Policy, account_id: AccountId, conversation_id: ConversationId, body: str
    ) -> None:
        check_body_size(policy, body)
        rate = str(policy.message_rate)
        key = ("conversation-rate", conversation_id, account_id)
        if not await self._limiter.hit(rate, *key):
            retry_after = await self._limiter.retry_after(rate, *key)
            raise MessageRateLimited(policy.message_rate, retry_after)

    # --- the user's view --------------------------------------------------------------

    async def account_policy(self, caller: AuthenticatedDevice) -> AccountPolicy:
        async with self._uow() as tx:
            plan = await tx.policies.plan(caller.account.id)
        plan = plan or Plan.FREE
        return AccountPolicy(caller.account, plan, self._plans[plan])

    async def conversation_policy(
        self, caller: AuthenticatedDevice, conversation_id: str
    ) -> ConversationPolicy:
        cid, owner = await self._participant(caller, conversation_id)
        async with self._uow() as tx:
            return await self._view(tx, cid, owner, caller.account.id)

    async def set_override(
        self, caller: AuthenticatedDevice, conversation_id: str, override: PolicyOverride
    ) -> ConversationPolicy:
        """Replace the caller's override; each limit it sets must be at most what the
        plans give (``policy_not_stricter`` names the first that is not)."""
        cid, owner = await self._participant(caller, conversation_id)
        await self._check_manages(caller, cid, owner)
        async with self._uow() as tx:
            base = await self._base(tx, cid, owner)
            check_override(base, override)
            await tx.policies.put_override(cid, caller.account.id, override, self._clock.now())
            self._direct.clear()
            view = await self._view(tx, cid, owner, caller.account.id)
            await tx.commit()
        return view

    async def clear_override(
        self, caller: AuthenticatedDevice, conversation_id: str
    ) -> ConversationPolicy:
        """Remove the caller's own override (another participant's stays)."""
        cid, owner = await self._participant(caller, conversation_id)
        await self._check_manages(caller, cid, owner)
        async with self._uow() as tx:
            await tx.policies.delete_override(cid, caller.account.id)
            self._direct.clear()
            view = await self._view(tx, cid, owner, caller.account.id)
            await tx.commit()
        return view

    # --- the operator -------------------------------------------------------------------

    async def account(self, address: str) -> AccountPolicy:
        """An account of this node, by address, with its plan (``admin accounts show``)."""
        async with self._uow() as tx:
            account = await _account(tx, address)
            plan = await tx.policies.plan(account.id) or Plan.FREE
        return AccountPolicy(account, plan, self._plans[plan])

    async def set_plan(self, address: str, plan: str) -> AccountPolicy:
        """Put the account on ``plan``; its limits apply from the next message."""
        chosen = parse_plan(plan)
        async with self._uow() as tx:
            account = await _account(tx, address)
            await tx.policies.set_plan(account.id, chosen)
            self._direct.clear()
            await tx.commit()
        return AccountPolicy(account, chosen, self._plans[chosen])

    # --- retention ---------------------------------------------------------------------

    async def sweep_retention(self) -> int:
        """Delete every message older than its conversation's retention, with all
        that points at it, in batches of its own transactions; how many went.
        Idempotent: run again, it finds nothing more (until more history expires)."""
        now = self._clock.now()
        shortest = [p.retention_seconds for p in self._plans.values() if p.retention_seconds]
        async with self._uow() as tx:
            override = await tx.policies.shortest_override_retention()
        if override is not None:
            shortest.append(override)
        if not shortest:
            return 0  # every plan keeps history forever, and nobody asked for less
        candidates_before = now - timedelta(seconds=min(shortest))
        deleted = 0
        after: ConversationId | None = None
        while True:
            async with self._uow() as tx:
                found = await tx.policies.conversations_with_history_before(
                    candidates_before, after, self._batch
                )
            for conversation_id in found:
                deleted += await self._expire(conversation_id, now)
            if len(found) < self._batch:
                return deleted
            after = found[-1]

    async def _expire(self, conversation_id: ConversationId, now: datetime) -> int:
        owner = await self._group_owner(conversation_id)
        async with self._uow() as tx:
            base = await self._known_base(tx, conversation_id, owner)
            if base is None:
                # Nobody here it belongs to (e.g. a group whose owner this node
                # cannot tell): kept, rather than deleted under a guessed plan.
                return 0
            overrides = await tx.policies.overrides(conversation_id)
        policy = _effective(base, overrides.values())
        if policy.retention_seconds is None:
            return 0
        before = now - timedelta(seconds=policy.retention_seconds)
        deleted = 0
        while True:
            async with self._uow() as tx:
                gone = await tx.policies.delete_history_before(conversation_id, before, self._batch)
                await tx.commit()
            deleted += len(gone)
            if len(gone) < self._batch:
                return deleted

    def start(self) -> None:
        """Sweep expired history now and then every ``sweep_every``, in the background."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="retention-sweep")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.sweep_retention()
                if deleted:
                    log.info("deleted %d expired messages", deleted)
            except Exception:
                log.exception("the retention sweep failed")
            await asyncio.sleep(self._sweep_every.total_seconds())

    # --- inside ----------------------------------------------------------------------------

    async def _in_force(
        self,
        tx: Transaction,
        conversation_id: ConversationId,
        owner_account_id: AccountId | None,
    ) -> Policy:
        base = await self._base(tx, conversation_id, owner_account_id)
        overrides = await tx.policies.overrides(conversation_id)
        return _effective(base, overrides.values())

    async def _base(
        self,
        tx: Transaction,
        conversation_id: ConversationId,
        owner_account_id: AccountId | None,
    ) -> Policy:
        found = await self._known_base(tx, conversation_id, owner_account_id)
        return found if found is not None else self._plans[Plan.FREE]

    async def _known_base(
        self,
        tx: Transaction,
        conversation_id: ConversationId,
        owner_account_id: AccountId | None,
    ) -> Policy | None:
        """What the plans give: the owner's (a group), else the stricter of the
        local participants'; None when the conversation has neither here."""
        if owner_account_id is not None:
            plan = await tx.policies.plan(owner_account_id)
            return self._plans[plan or Plan.FREE]
        plans = await tx.policies.participant_plans(conversation_id)
        if not plans:
            return None
        return strictest(self._plans[p] for p in plans.values())

    async def _group_owner(self, conversation_id: ConversationId) -> AccountId | None:
        """Asked outside our transactions: the groups service opens its own."""
        if self.groups is None:
            return None
        return await self.groups.owner_of(conversation_id)

    async def _participant(
        self, caller: AuthenticatedDevice, conversation_id: str
    ) -> tuple[ConversationId, AccountId | None]:
        """The conversation, if the caller takes part in it, with its group owner
        (None: a 1:1); else NotFound (the same answer as for one that does not exist)."""
        cid = ConversationId(conversation_id)
        async with self._uow() as tx:
            contact = await tx.connections.by_conversation(caller.account.id, cid)
        if contact is not None:
            return cid, None
        if self.groups is not None and await self.groups.is_member(cid, caller.account.id):
            return cid, await self._group_owner(cid)
        raise NotFound("No such conversation.", code="conversation_not_found")

    async def _check_manages(
        self, caller: AuthenticatedDevice, cid: ConversationId, owner: AccountId | None
    ) -> None:
        """In a group only its owner and admins set overrides (in a 1:1, either side)."""
        if owner is None or self.groups is None:
            return
        if not await self.groups.manages(cid, caller.account.id):
            raise Forbidden(
                "Only the group's owner and admins set its policy.", code="group_forbidden"
            )

    async def _view(
        self,
        tx: Transaction,
        conversation_id: ConversationId,
        owner_account_id: AccountId | None,
        account_id: AccountId,
    ) -> ConversationPolicy:
        base = await self._base(tx, conversation_id, owner_account_id)
        overrides = await tx.policies.overrides(conversation_id)
        return ConversationPolicy(
            conversation_id,
            _effective(base, overrides.values()),
            base,
            overrides.get(account_id, PolicyOverride()),
        )


def _effective(base: Policy, overrides: Iterable[PolicyOverride]) -> Policy:
    policy = base
    for override in overrides:
        policy = policy.narrowed(override)
    return policy


async def _account(tx: Transaction, address: str) -> Account:
    parsed = parse_address(address, field="address")
    account = await tx.accounts.by_address(parsed.address)
    if account is None:
        raise NotFound(f"No account {parsed.address} on this node.", code="account_not_found")
    return account
