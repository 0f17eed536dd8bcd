"""Groups: creating, inviting, joining, leaving, removing, roles, and the
group's one ordered, end-to-end encrypted log (docs/conversations.md). The
creator's node hosts a group; participants on another of our nodes take part
through services/group_federation.py (their accounts go by ``@ADDRESS`` here).

Every change to a group takes the group's lock first, so its membership and
its log change one after another. Membership changes are written into the log
as node-authored ``group.member`` events (sender device ``""``), in the same
transaction as the change, so every device sees who was in the group when.
A message or event goes into the streams of every device of every joined
participant (and of the participant an event is about), and nowhere else: a
participant who left or was removed gets nothing new and reads no history past
its leaving. Its keys go too: clients rotate the group's Megolm session when a
device drops out of the target set (client/e2e.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from openmessenger.core.envelope import CLIENT_TXN_ID_PATTERN, AppendResult, Encryption
from openmessenger.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PeerUnavailable,
    Refused,
)
from openmessenger.core.groups import (
    FORBIDDEN,
    MEMBER_EVENT_MEDIA_TYPE,
    REMOTE_UNSUPPORTED,
    Group,
    GroupAppend,
    Member,
    MemberEvent,
    MemberKind,
    MemberState,
    Role,
    check_invite,
    check_joined,
    check_remove,
    check_set_role,
    event_text,
    host_of,
    is_remote,
    parse_role,
    remote_account_id,
    successor,
    validate_name,
    visible_seqs,
)
from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    Domain,
    MessageId,
    address_domain,
    parse_address,
)
from openmessenger.core.records import Account, AccountKind, AuthenticatedDevice
from openmessenger.services.messaging import (
    HistoryPage,
    SendResult,
    check_page,
    validate_encrypted_body,
)
from openmessenger.services.ports import Bus, Clock, Secrets, Transaction, UnitOfWork
from openmessenger.services.webhooks import WebhookQueue

if TYPE_CHECKING:
    from openmessenger.services.group_federation import GroupFederation

MaxParticipants = Callable[[AccountId, ConversationId | None], Awaitable[int]]
"""How many participants (invited and joined) a group of this owner may have (the
group, once it exists, for its overrides). Called outside any transaction."""
SendPolicy = Callable[[AccountId, ConversationId, str], Awaitable[None]]
"""The conversation's size and rate check before a message is appended (sender's
account, group, body); raises to refuse it. Called outside any transaction."""

_TXN = re.compile(CLIENT_TXN_ID_PATTERN)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GroupView:
    """A group as one participant sees it."""

    group: Group
    me: Member
    members: list[Member]
    """The current participants (invited and joined), in the order they came."""


@dataclass(frozen=True, slots=True)
class _Invitee:
    account_id: AccountId
    address: Address
    account: Account | None
    """None: an address on another of our nodes."""


def _no_group() -> NotFound:
    return NotFound("No such group.", code="group_not_found")


class GroupService:
    def __init__(
        self,
        uow: UnitOfWork,
        bus: Bus,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        max_participants: MaxParticipants,
        send_policy: SendPolicy | None = None,
    ) -> None:
        self._uow = uow
        self._bus = bus
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self.max_participants = max_participants
        """Participants (invited and joined) a group of this owner may have; wiring
        gives the default, and account plans replace it."""
        self._send_policy = send_policy
        self.webhooks: WebhookQueue | None = None
        """Queues webhook calls for the app devices among the receivers (set by wiring)."""
        self.federation: GroupFederation | None = None
        """Groups across our nodes (services/group_federation.py; set by wiring)."""

    # -- membership ---------------------------------------------------------------------

    async def create(
        self, caller: AuthenticatedDevice, name: str, addresses: Sequence[str]
    ) -> GroupView:
        """A new group owned by the caller, with ``addresses`` invited (each one an
        address the caller is connected with: the generic refusal otherwise; on
        another of our nodes, invited there through services/group_federation.py)."""
        name = validate_name(name)
        group_id = ConversationId(self._secrets.identifier())
        now = self._clock.now()
        appended: list[AppendResult] = []
        limit = await self.max_participants(caller.account.id, None)
        await self._ask_nodes(addresses)
        async with self._uow() as tx:
            invitees: dict[Address, _Invitee] = {}
            for index, address in enumerate(addresses):
                found = await self._invitable(tx, caller, address, field=f"members[{index}]")
                if found.account_id != caller.account.id:
                    invitees[found.address] = found
            if 1 + len(invitees) > limit:
                raise Conflict(f"A group has at most {limit} participants.", code="group_full")
            await tx.groups.create(group_id, name, caller.account.address, now)
            group = await tx.groups.lock(group_id)
            assert group is not None
            me = _Invitee(caller.account.id, caller.account.address, caller.account)
            owner = await self._member(tx, group_id, me, Role.OWNER, None)
            created = await self._event(
                tx, group, caller.account.address, owner, MemberEvent.CREATED, [owner]
            )
            appended.append(created)
            owner = replace(
                owner,
                state=MemberState.JOINED,
                invited_seq=_seq(created),
                joined_seq=_seq(created),
                joined_at=now,
            )
            await tx.groups.put_member(owner)
            members = [owner]
            for invitee in invitees.values():
                invited = await self._member(
                    tx, group_id, invitee, Role.MEMBER, caller.account.address
                )
                event = await self._event(
                    tx, group, caller.account.address, invited, MemberEvent.INVITED, members
                )
                invited = replace(invited, invited_seq=_seq(event))
                await tx.groups.put_member(invited)
                members.append(invited)
                appended.append(event)
            view = await self._view(tx, group_id, caller.account.id)
            await tx.commit()
        await self._publish(appended)
        return view

    async def invite(self, caller: AuthenticatedDevice, group_id: str, address: str) -> GroupView:
        await self._ask_nodes([address])
        if self.federation is not None and await self._elsewhere(group_id):
            # Hosted by another node: checked here (the caller's connection), decided there.
            async with self._uow() as tx:
                _, _, actor = await self._locked(tx, group_id, caller.account.id)
                check_invite(actor)
                await self._invitable(tx, caller, address, field="address")
            await self.federation.act(caller, ConversationId(group_id), "invite", address=address)
            return await self.get(caller, group_id)

        async def invitable(tx: Transaction, actor: Member) -> _Invitee:
            return await self._invitable(tx, caller, address, field="address")

        return await self._invite(caller.account.id, group_id, invitable)

    async def invite_from_peer(self, actor_id: AccountId, group_id: str, address: str) -> None:
        """The host: a participant on another node invites ``address``. One on this
        node must be connected with the inviter; one on another node is checked by
        its own node when the invitation arrives (services/group_federation.py)."""
        await self._ask_nodes([address])

        async def invitable(tx: Transaction, actor: Member) -> _Invitee:
            return await self._invitable_by_peer(tx, actor, address)

        await self._invite(actor_id, group_id, invitable)

    async def _invite(
        self,
        actor_id: AccountId,
        group_id: str,
        invitable: Callable[[Transaction, Member], Awaitable[_Invitee]],
    ) -> GroupView:
        owner = await self.owner_of(ConversationId(group_id))
        if owner is None:
            raise _no_group()
        limit = await self.max_participants(owner, ConversationId(group_id))
        async with self._uow() as tx:
            group, members, actor = await self._locked(tx, group_id, actor_id)
            check_invite(actor)
            account = await invitable(tx, actor)
            current = _find(members, account.account_id)
            if current is not None and current.state.current:
                raise Conflict("Already in the group (or invited).", code="group_member_exists")
            if len(_current(members)) + 1 > limit:
                raise Conflict("The group is full.", code="group_full")
            invited = await self._member(tx, group.id, account, Role.MEMBER, actor.address)
            appended = await self._event(
                tx, group, actor.address, invited, MemberEvent.INVITED, members
            )
            await tx.groups.put_member(replace(invited, invited_seq=_seq(appended)))
            view = await self._view(tx, group.id, actor_id)
            await tx.commit()
        await self._publish([appended])
        return view

    async def join(self, caller: AuthenticatedDevice, group_id: str) -> GroupView:
        """Accept an invitation: from now on the caller's devices get the group's
        messages (and read its history from this point)."""
        if self.federation is not None and await self._elsewhere(group_id):
            await self.federation.act(caller, ConversationId(group_id), "join")
            return await self.get(caller, group_id)
        return await self.join_as(caller.account.id, group_id)

    async def join_as(self, account_id: AccountId, group_id: str) -> GroupView:
        """:meth:`join` for a participant here or (asked by its node) on another node."""
        async with self._uow() as tx:
            group, members, me = await self._locked(tx, group_id, account_id)
            if me.state is MemberState.JOINED:
                view = await self._view(tx, group.id, account_id)
                return view  # joining twice changes nothing
            now = self._clock.now()
            joining = replace(me, state=MemberState.JOINED, joined_at=now, updated_at=now)
            others = [m for m in members if m.account_id != me.account_id]
            appended = await self._event(
                tx, group, me.address, joining, MemberEvent.JOINED, [*others, joining]
            )
            await tx.groups.put_member(replace(joining, joined_seq=_seq(appended)))
            view = await self._view(tx, group.id, account_id)
            await tx.commit()
        await self._publish([appended])
        return view

    async def decline(self, caller: AuthenticatedDevice, group_id: str) -> None:
        if self.federation is not None and await self._elsewhere(group_id):
            await self.federation.act(caller, ConversationId(group_id), "decline")
            return
        await self.decline_as(caller.account.id, group_id)

    async def decline_as(self, account_id: AccountId, group_id: str) -> None:
        async with self._uow() as tx:
            group, members, me = await self._locked(tx, group_id, account_id)
            if me.state is not MemberState.INVITED:
                raise Conflict("There is no invitation to decline.", code="group_not_invited")
            declined = replace(me, state=MemberState.DECLINED, updated_at=self._clock.now())
            await tx.groups.put_member(declined)
            appended = await self._event(
                tx, group, me.address, declined, MemberEvent.DECLINED, members
            )
            await tx.commit()
        await self._publish([appended])

    async def leave(self, caller: AuthenticatedDevice, group_id: str) -> None:
        """Leave (always allowed; an invitation is declined). An owner who leaves
        hands the group to the longest-standing admin, else member."""
        if self.federation is not None and await self._elsewhere(group_id):
            await self.federation.act(caller, ConversationId(group_id), "leave")
            return
        await self.leave_as(caller.account.id, group_id)

    async def leave_as(self, account_id: AccountId, group_id: str) -> None:
        async with self._uow() as tx:
            group, members, me = await self._locked(tx, group_id, account_id)
            appended = await self._end(tx, group, members, me, me.address, MemberState.LEFT)
            if me.role is Role.OWNER and me.state is MemberState.JOINED:
                heir = successor(members, me.account_id)
                if heir is not None:
                    heir = replace(heir, role=Role.OWNER, updated_at=self._clock.now())
                    await tx.groups.put_member(heir)
                    remaining = [m for m in members if m.account_id != me.account_id]
                    appended.append(
                        await self._event(
                            tx, group, me.address, heir, MemberEvent.ROLE_CHANGED, remaining
                        )
                    )
            await tx.commit()
        await self._publish(appended)

    async def leave_every_group(self, caller: AuthenticatedDevice) -> None:
        """Before the account is deleted: it leaves every group it takes part in
        as if it asked (declines its invitations), so the others see it go and a
        group it owns passes on. A host on another node that cannot be reached
        now is not waited for: it keeps a participant whose node no longer
        knows the account, and nothing it sends is stored for it."""
        async with self._uow() as tx:
            taking_part = await tx.groups.of_account(caller.account.id)
        for group, _ in taking_part:
            try:
                await self.leave(caller, group.id)
            except PeerUnavailable:
                log.info("group %s: its host was not told that a participant left", group.id)
            except (NotFound, Conflict):
                pass  # gone or left meanwhile

    async def remove(self, caller: AuthenticatedDevice, group_id: str, address: str) -> GroupView:
        """Remove a participant (or withdraw an invitation): it gets nothing new."""
        if self.federation is not None and await self._elsewhere(group_id):
            await self.federation.act(caller, ConversationId(group_id), "remove", address=address)
            return await self.get(caller, group_id)
        return await self.remove_as(caller.account.id, group_id, address)

    async def remove_as(self, account_id: AccountId, group_id: str, address: str) -> GroupView:
        async with self._uow() as tx:
            group, members, actor = await self._locked(tx, group_id, account_id)
            check_joined(actor)
            target = _by_address(members, address)
            check_remove(actor, target)
            appended = await self._end(
                tx, group, members, target, actor.address, MemberState.REMOVED
            )
            view = await self._view(tx, group.id, account_id)
            await tx.commit()
        await self._publish(appended)
        return view

    async def set_role(
        self, caller: AuthenticatedDevice, group_id: str, address: str, role: str
    ) -> GroupView:
        """The owner makes a joined participant admin or member, or hands the group
        over (``owner``: the old owner becomes an admin)."""
        new_role = parse_role(role)
        if self.federation is not None and await self._elsewhere(group_id):
            await self.federation.act(
                caller, ConversationId(group_id), "role", address=address, role=new_role.value
            )
            return await self.get(caller, group_id)
        return await self.set_role_as(caller.account.id, group_id, address, new_role)

    async def set_role_as(
        self, account_id: AccountId, group_id: str, address: str, new_role: Role
    ) -> GroupView:
        async with self._uow() as tx:
            group, members, actor = await self._locked(tx, group_id, account_id)
            check_joined(actor)
            target = _by_address(members, address)
            check_set_role(actor, target, new_role)
            now = self._clock.now()
            changes = [(target, new_role)]
            if new_role is Role.OWNER:
                changes.append((actor, Role.ADMIN))
            appended = []
            for before, role_now in changes:
                if before.role is role_now:
                    continue
                changed = replace(before, role=role_now, updated_at=now)
                await tx.groups.put_member(changed)
                appended.append(
                    await self._event(
                        tx, group, actor.address, changed, MemberEvent.ROLE_CHANGED, members
                    )
                )
            view = await self._view(tx, group.id, account_id)
            await tx.commit()
        await self._publish(appended)
        return view

    # -- reading ------------------------------------------------------------------------

    async def list_groups(self, caller: AuthenticatedDevice) -> list[GroupView]:
        """The groups the caller is invited to or has joined."""
        async with self._uow() as tx:
            found = await tx.groups.of_account(caller.account.id)
            return [await self._view(tx, g.id, caller.account.id) for g, _ in found]

    async def get(self, caller: AuthenticatedDevice, group_id: str) -> GroupView:
        async with self._uow() as tx:
            me = await tx.groups.member(ConversationId(group_id), caller.account.id)
            if me is None or not me.state.current:
                raise _no_group()
            return await self._view(tx, ConversationId(group_id), caller.account.id)

    async def history(
        self, caller: AuthenticatedDevice, group_id: str, after_seq: int, limit: int
    ) -> HistoryPage:
        """The group's log as the caller may read it: from its joining on, and for a
        participant who left or was removed, up to that event and no further."""
        limit = check_page(after_seq, limit, field="after_seq")
        async with self._uow() as tx:
            me = await tx.groups.member(ConversationId(group_id), caller.account.id)
            if me is None or (visible_seqs(me) is None and not me.state.current):
                raise _no_group()  # never joined, and no more invited: not theirs
            seqs = visible_seqs(me)
            if seqs is None:
                raise Forbidden("Join the group to read it.", code=FORBIDDEN)
            first, last = seqs
            blocked = {address for address, _ in await tx.blocks.list_for(caller.account.id)}
            cursor = max(after_seq, first - 1)
            while True:
                found = await tx.messages.history(ConversationId(group_id), cursor, limit + 1)
                readable = [m for m in found if m.seq <= last]
                has_more = len(readable) > limit
                readable = readable[:limit]
                # What someone the caller blocked said is not shown (membership is).
                shown = [
                    m
                    for m in readable
                    if m.sender not in blocked or m.media_type == MEMBER_EVENT_MEDIA_TYPE
                ]
                if shown or not has_more:
                    return HistoryPage(shown, has_more=has_more)
                cursor = readable[-1].seq

    # -- messages -----------------------------------------------------------------------

    async def send(
        self,
        caller: AuthenticatedDevice,
        group_id: str,
        body: str,
        client_txn_id: str | None,
        encryption: Encryption = Encryption.END_TO_END,
    ) -> SendResult:
        """Append an end-to-end body to the group's log; every device of every
        joined participant gets it (the sender's other devices too). The same
        ``client_txn_id`` twice stores one message."""
        if encryption is not Encryption.END_TO_END:
            raise InvalidInput("encryption", "must be end-to-end: group messages are")
        body = validate_encrypted_body(body)
        if client_txn_id is not None and not _TXN.match(client_txn_id):
            raise InvalidInput("client_txn_id", "must be 1 to 128 printable ASCII characters")
        if self.federation is not None and await self._elsewhere(group_id):
            # Hosted by another node: it orders the message (services/group_federation.py).
            return await self.federation.forward(
                caller, ConversationId(group_id), body, client_txn_id
            )
        if self._send_policy is not None:
            # Members only: a stranger learns nothing of the group's limits. The policy
            # reads in its own transaction (SQLite has one at a time), so before ours.
            async with self._uow() as tx:
                me = await tx.groups.member(ConversationId(group_id), caller.account.id)
            if me is None or not me.state.current:
                raise _no_group()
            check_joined(me)
            await self._send_policy(caller.account.id, ConversationId(group_id), body)
        return await self.send_as(
            caller.account.id, caller.device.id, group_id, body, client_txn_id, self._clock.now()
        )

    async def send_from_peer(
        self,
        account_id: AccountId,
        device_id: str,
        group_id: str,
        body: str,
        client_txn_id: str,
    ) -> SendResult:
        """The host: a message a participant on another node sent (its node forwarded
        it), checked against the group's policy like a local participant's."""
        if self._send_policy is not None:
            async with self._uow() as tx:
                me = await tx.groups.member(ConversationId(group_id), account_id)
            if me is None or not me.state.current:
                raise _no_group()
            check_joined(me)
            await self._send_policy(account_id, ConversationId(group_id), body)
        return await self.send_as(
            account_id, device_id, group_id, body, client_txn_id, self._clock.now()
        )

    async def send_as(
        self,
        account_id: AccountId,
        device_id: str,
        group_id: str,
        body: str,
        client_txn_id: str | None,
        sent_at: datetime,
    ) -> SendResult:
        """Append a checked body from a joined participant here or (forwarded by its
        node) on another node; every other member node gets it too."""
        async with self._uow() as tx:
            group, members, me = await self._locked(tx, group_id, account_id)
            check_joined(me)
            joined = [m.account_id for m in members if _joined(m)]
            # Whoever blocked the sender does not get their messages, in groups too.
            blockers = await tx.blocks.blockers(joined, me.address)
            result = await tx.messages.append_group(
                GroupAppend(
                    message_id=MessageId(self._secrets.identifier()),
                    conversation_id=group.id,
                    sender=me.address,
                    sender_device=device_id,
                    body=body,
                    client_txn_id=client_txn_id,
                    sent_at=sent_at,
                    encryption=Encryption.END_TO_END.value,
                    receivers=tuple(a for a in joined if a not in blockers),
                )
            )
            assert result.message is not None
            if result.created:
                await self.fan_out(tx, result, [m for m in members if _joined(m)])
                await tx.commit()
        await self._publish([result])
        return SendResult(result.message, result.created)

    # -- what the policies ask (services/policies.py, GroupDirectory) ---------------------

    async def owner_of(self, conversation_id: ConversationId) -> AccountId | None:
        async with self._uow() as tx:
            if await tx.groups.get(conversation_id) is None:
                return None
            members = await tx.groups.members(conversation_id)
        return _owner_of(members) if members else None

    async def is_member(self, conversation_id: ConversationId, account_id: AccountId) -> bool:
        async with self._uow() as tx:
            member = await tx.groups.member(conversation_id, account_id)
        return member is not None and _joined(member)

    async def manages(self, conversation_id: ConversationId, account_id: AccountId) -> bool:
        async with self._uow() as tx:
            member = await tx.groups.member(conversation_id, account_id)
        return member is not None and _joined(member) and member.role is not Role.MEMBER

    # -- inside ---------------------------------------------------------------------------

    async def _locked(
        self, tx: Transaction, group_id: str, account_id: AccountId
    ) -> tuple[Group, list[Member], Member]:
        """The group, locked, its participants, and the caller among them: a group
        the caller is not (or no more) part of is not found."""
        group = await tx.groups.lock(ConversationId(group_id))
        if group is None:
            raise _no_group()
        members = await tx.groups.members(group.id)
        me = _find(members, account_id)
        if me is None or not me.state.current:
            raise _no_group()
        return group, members, me

    async def _invitable(
        self, tx: Transaction, caller: AuthenticatedDevice, address: str, *, field: str
    ) -> _Invitee:
        """An address the caller may invite. Not connected (or not taking the
        caller's messages): the generic refusal, and the target hears nothing.
        Connected and on another of our nodes that takes part in groups: a remote
        participant; on a node that does not (an Openmsg v1 peer): 409."""
        if not isinstance(address, str):
            raise InvalidInput(field, "must be an address")
        target = parse_address(address, field=field)
        if target.address == caller.account.address:
            return _Invitee(caller.account.id, caller.account.address, caller.account)
        contact = await tx.connections.get(caller.account.id, target.address)
        if contact is None or not contact.peer_accepts_messages:
            raise Refused()
        if target.domain != self._domain:
            if self.federation is None or not self.federation.takes_groups(target.domain):
                raise Conflict(
                    f"{target.domain} does not take part in groups (an Openmsg v1 node): "
                    "its addresses cannot be invited.",
                    code=REMOTE_UNSUPPORTED,
                )
            return _Invitee(remote_account_id(target.address), target.address, None)
        account = await tx.accounts.by_address(target.address)
        if account is None or await tx.blocks.is_blocked(account.id, caller.account.address):
            raise Refused()
        return _Invitee(account.id, account.address, account)

    async def _invitable_by_peer(self, tx: Transaction, actor: Member, address: str) -> _Invitee:
        """An address a participant on another node may invite, as the host sees it."""
        if not isinstance(address, str):
            raise InvalidInput("address", "must be an address")
        target = parse_address(address, field="address")
        if target.domain == self._domain:
            account = await tx.accounts.by_address(target.address)
            if (
                account is None
                or await tx.connections.get(account.id, actor.address) is None
                or await tx.blocks.is_blocked(account.id, actor.address)
            ):
                raise Refused()
            return _Invitee(account.id, account.address, account)
        if target.domain != address_domain(actor.address) and (
            self.federation is None or not self.federation.takes_groups(target.domain)
        ):
            raise Conflict(
                f"{target.domain} does not take part in groups: its addresses cannot be invited.",
                code=REMOTE_UNSUPPORTED,
            )
        # Its own node takes the invitation only over a connection with the inviter.
        return _Invitee(remote_account_id(target.address), target.address, None)

    async def _member(
        self,
        tx: Transaction,
        group_id: ConversationId,
        invitee: _Invitee,
        role: Role,
        invited_by: Address | None,
    ) -> Member:
        kind, app_id = MemberKind.HUMAN, None
        account = invitee.account
        if account is not None and account.kind is AccountKind.MANAGED:
            kind = MemberKind.SYSTEM
            app_id = next((d.app_id for d in await tx.keys.devices(account.id) if d.app_id), None)
        return Member(
            conversation_id=group_id,
            account_id=invitee.account_id,
            address=invitee.address,
            role=role,
            kind=kind,
            app_id=app_id,
            state=MemberState.INVITED,
            invited_by=invited_by,
            invited_seq=None,
            joined_seq=None,
            left_seq=None,
            joined_at=None,
            updated_at=self._clock.now(),
        )

    async def _end(
        self,
        tx: Transaction,
        group: Group,
        members: list[Member],
        target: Member,
        actor: Address,
        state: MemberState,
    ) -> list[AppendResult]:
        """``target`` leaves (or is removed): the event reaches it and the joined
        participants; from then on nothing does."""
        if target.state is MemberState.INVITED:
            state = MemberState.REMOVED if state is MemberState.REMOVED else MemberState.DECLINED
        ended = replace(target, state=state, updated_at=self._clock.now())
        event = {
            MemberState.LEFT: MemberEvent.LEFT,
            MemberState.REMOVED: MemberEvent.REMOVED,
            MemberState.DECLINED: MemberEvent.DECLINED,
        }[state]
        appended = await self._event(tx, group, actor, ended, event, members)
        if target.state is MemberState.JOINED:
            ended = replace(ended, left_seq=_seq(appended))
        await tx.groups.put_member(ended)
        return [appended]

    async def _event(
        self,
        tx: Transaction,
        group: Group,
        actor: Address,
        subject: Member,
        event: MemberEvent,
        members: Sequence[Member],
    ) -> AppendResult:
        """A ``group.member`` event in the log, for the joined participants and
        the one it is about."""
        receivers = dict.fromkeys(m.account_id for m in members if _joined(m))
        receivers[subject.account_id] = None
        remote = {m.address: m for m in members if _joined(m) and is_remote(m)}
        if is_remote(subject):
            remote[subject.address] = subject
        metadata = {
            "event": event.value,
            "address": subject.address,
            "by": actor,
            "role": subject.role.value,
            "kind": subject.kind.value,
            "app_id": subject.app_id,
        }
        appended = await tx.messages.append_group(
            GroupAppend(
                message_id=MessageId(self._secrets.identifier()),
                conversation_id=group.id,
                sender=actor,
                sender_device="",  # the node's: every device of the actor gets it too
                body=event_text(event, actor, subject.address, subject.role),
                client_txn_id=None,
                sent_at=self._clock.now(),
                encryption=Encryption.TRANSPORT.value,
                receivers=tuple(receivers),
                media_type=MEMBER_EVENT_MEDIA_TYPE,
                metadata=json.dumps(metadata, sort_keys=True, separators=(",", ":")),
            )
        )
        await self.fan_out(tx, appended, list(remote.values()))
        return appended

    async def fan_out(
        self, tx: Transaction, appended: AppendResult, receivers: Sequence[Member]
    ) -> None:
        """The host: a message for participants on other nodes waits in the group's
        fan-out, one row per node (services/group_federation.py)."""
        by_domain: dict[Domain, list[Address]] = {}
        for member in receivers:
            if is_remote(member):
                by_domain.setdefault(address_domain(member.address), []).append(member.address)
        for domain, addresses in by_domain.items():
            await tx.groups.add_fanout(
                appended.message.conversation_id if appended.message else ConversationId(""),
                domain,
                _seq(appended),
                addresses,
                self._clock.now(),
            )

    async def _elsewhere(self, group_id: str) -> bool:
        """Whether the group is hosted by another node (this one keeps a replica)."""
        async with self._uow() as tx:
            group = await tx.groups.get(ConversationId(group_id))
        return group is not None and host_of(group) != self._domain

    async def _ask_nodes(self, addresses: Sequence[object]) -> None:
        """Learn, before any transaction, whether the nodes of remote invitees take
        part in groups (one lookup per node, then cached)."""
        if self.federation is None:
            return
        for address in addresses:
            if isinstance(address, str) and "*" in address:
                domain = address.rsplit("*", 1)[1].lower()
                if domain != self._domain:
                    await self.federation.learn(Domain(domain))

    async def _view(
        self, tx: Transaction, group_id: ConversationId, account_id: AccountId
    ) -> GroupView:
        group = await tx.groups.get(group_id)
        members = await tx.groups.members(group_id)
        me = _find(members, account_id)
        if group is None or me is None:
            raise _no_group()
        return GroupView(group, me, _current(members))

    async def publish(self, appended: Sequence[AppendResult]) -> None:
        """Publish what a replica of a group hosted elsewhere just stored."""
        await self._publish(appended)

    async def _publish(self, appended: Sequence[AppendResult]) -> None:
        """After the commit: a live event always names a stored message."""
        if self.federation is not None and any(a.created for a in appended):
            self.federation.kick()
        events = [e for result in appended if result.created for e in result.events]
        if not events:
            return
        await self._bus.publish(events)
        if self.webhooks is not None:
            await self.webhooks.enqueue(events)


def _seq(appended: AppendResult) -> int:
    assert appended.message is not None
    return appended.message.seq


def _joined(member: Member) -> bool:
    return member.state is MemberState.JOINED


def _current(members: Sequence[Member]) -> list[Member]:
    return [m for m in members if m.state.current]


def _find(members: Sequence[Member], account_id: AccountId) -> Member | None:
    return next((m for m in members if m.account_id == account_id), None)


def _owner_of(members: Sequence[Member]) -> AccountId:
    """The account whose plan the group follows: its owner's, or while the owner's
    account is on another node, the longest-standing local participant's."""
    owner = next((m for m in members if m.role is Role.OWNER and m.state.current), None)
    if owner is not None and not is_remote(owner):
        return owner.account_id
    local = [m for m in members if not is_remote(m)]
    return (local or list(members))[0].account_id


def _by_address(members: Sequence[Member], address: str) -> Member:
    found = next((m for m in members if m.address == address and m.state.current), None)
    if found is None:
        raise NotFound("No such participant in this group.", code="group_member_not_found")
    return found
