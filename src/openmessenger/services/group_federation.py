"""Groups across our nodes (capability ``groups``, protocol/group_federation.py).

The host (the creator's node) is the one authority: it holds the membership and
assigns every seq. A message or membership event for participants on other
nodes waits in the host's fan-out (``group_fanout``, written in the same
transaction as the message) until each node took it; the rows of one (group,
node) go in seq order, a batch at a time, with the membership as it stands, and
are retried with backoff while that node is unreachable. A member's node keeps a
replica (the conversation row, the members, the messages for its accounts at
the host's seqs) and puts each message into its accounts' device streams.

A member's node opens a replica only for an invitation of one of its addresses
by an address it is connected with; anything else is dropped (silently for its
accounts). Its accounts' join, decline and leave go to the host at once (and
fail if it is unreachable); their messages are kept (``group_forwards``) until
the host orders them, retried with backoff, idempotent by sending device and
``client_txn_id``. The sender's node gets its message back through the fan-out,
so the sender's other devices see it in the host's order. Their edits and
deletions for everyone of their own messages take the same way
(``group_forwards`` rows naming the ``revision`` and the message it
``replaces``, sent to the host's ``group-revise/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from openmessenger.core.envelope import AppendResult, DeliveryStatus, Encryption, Message
from openmessenger.core.errors import (
    DomainError,
    InvalidInput,
    NotFound,
    PeerUnavailable,
)
from openmessenger.core.groups import (
    MEMBER_EVENT_MEDIA_TYPE,
    Group,
    GroupAppend,
    GroupForward,
    Member,
    MemberEvent,
    MemberKind,
    MemberState,
    Role,
    check_joined,
    host_of,
    is_remote,
    parse_role,
    remote_account_id,
)
from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    DeviceId,
    Domain,
    MessageId,
    address_domain,
    parse_address,
)
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.core.revisions import (
    DELETE_MEDIA_TYPE,
    DELETED_NOTICE,
    EDIT_MEDIA_TYPE,
    edit_metadata,
)
from openmessenger.protocol import group_federation as wire
from openmessenger.protocol.extension_refusal import ExtensionRefusal
from openmessenger.protocol.openmsg import JsonObject, ResponseCode
from openmessenger.services.federation_gate import FederationGate
from openmessenger.services.groups import GroupService
from openmessenger.services.messaging import SendResult, validate_encrypted_body
from openmessenger.services.peers import PeerDirectory
from openmessenger.services.polling import PollingLoop, any_more_due, backoff_seconds
from openmessenger.services.ports import (
    Clock,
    FederationTransport,
    Secrets,
    Transaction,
    UnitOfWork,
)
from openmessenger.services.signed_requests import (
    ExtensionHandler,
    PeerRefusal,
    SignedRequests,
    SignedRequestVerifier,
    error_of,
    parse_answer,
    parse_request,
    refusal_body,
    served,
)

if TYPE_CHECKING:
    from openmessenger.services.revisions import RevisionService

log = logging.getLogger(__name__)
_Model = TypeVar("_Model", bound=BaseModel)

_LEASE = timedelta(seconds=120)
_BATCH = 32
_FANOUT_ROWS = 64
_MAX_SEQ_SPAN = 512
_CURRENT = (MemberState.INVITED.value, MemberState.JOINED.value)



def _wire_member(m: Member) -> wire.WireMember:
    return wire.WireMember(
        address=m.address,
        role=m.role.value,
        kind=m.kind.value,
        app_id=m.app_id,
        state=m.state.value,
        invited_by=m.invited_by,
        invited_seq=m.invited_seq,
        joined_seq=m.joined_seq,
        left_seq=m.left_seq,
        joined_at=m.joined_at,
    )


def _wire_group(g: Group) -> wire.WireGroup:
    return wire.WireGroup(
        id=g.id, name=g.name, mode="history", created_by=g.created_by, created_at=g.created_at
    )


class GroupFederation:
    def __init__(
        self,
        *,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        transport: FederationTransport,
        gate: FederationGate,
        directory: PeerDirectory,
        groups: GroupService,
        verifier: SignedRequestVerifier,
        give_up_after: timedelta,
        poll_seconds: float = 1.0,
    ) -> None:
        self._uow = uow
        self._verifier = verifier
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self._gate = gate
        self._joining: set[tuple[ConversationId, Address]] = set()
        """Our participants whose join is on its way to the host (see act)."""
        self._directory = directory
        self._groups = groups
        self._give_up_after = give_up_after
        self._signed = SignedRequests(
            secrets=secrets, clock=clock, domain=domain, transport=transport
        )
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret
        self._loop = PollingLoop("group-federation", self._round, poll_seconds)
        self.revisions: RevisionService | None = None
        """Edits and deletions its participants on member nodes send (set by wiring)."""

    # --- asked by GroupService -------------------------------------------------------

    async def learn(self, domain: Domain) -> None:
        """Look up (and cache) what ``domain``'s node speaks, outside any transaction."""
        with contextlib.suppress(Exception):
            await self._directory.capability(domain, wire.GROUPS)

    def takes_groups(self, domain: Domain) -> bool:
        """Whether ``domain``'s node takes part in groups, as :meth:`learn` found
        before the transaction that asks (no network inside one);
        PeerUnavailable when it could not be asked and nothing is known of it."""
        found = self._directory.known_capability(domain, wire.GROUPS)
        if found is None:
            raise PeerUnavailable(domain)
        return found

    async def act(
        self,
        caller: AuthenticatedDevice,
        group_id: ConversationId,
        action: str,
        *,
        address: str | None = None,
        role: str | None = None,
    ) -> None:
        """The caller joins, declines or leaves a group hosted elsewhere: the host
        decides, and the replica takes the membership it answers with."""
        async with self._uow() as tx:
            group = await tx.groups.get(group_id)
            me = await tx.groups.member(group_id, caller.account.id)
        if group is None or me is None or not me.state.current:
            raise NotFound("No such group.", code="group_not_found")
        request = wire.GroupActRequest.model_validate(
            {
                "group_id": group_id,
                "actor": caller.account.address,
                "action": action,
                "address": address,
                "role": role,
            }
        )
        joining = caller.account.address if action == "join" else None
        if joining is not None:
            # The host's fan-out of the join may come before its answer does.
            self._joining.add((group_id, joining))
        try:
            answer = await self._signed.ask(Domain(host_of(group)), wire.GROUP_ACT_PATH, request)
        finally:
            if joining is not None:
                self._joining.discard((group_id, joining))
        found = parse_answer(wire.GroupActAnswer, answer)
        if found is None:
            raise PeerUnavailable(host_of(group))
        async with self._uow() as tx:
            locked = await tx.groups.lock(group_id)
            if locked is not None:
                await self._take_members(tx, locked, found.members, {}, joining)
            await tx.commit()

    async def forward(
        self,
        caller: AuthenticatedDevice,
        group_id: ConversationId,
        body: str,
        client_txn_id: str | None,
    ) -> SendResult:
        """A message to a group hosted elsewhere: kept until the host orders it. The
        host's message when it answers at once; else an ``accepted`` one (seq 0)
        that arrives in the host's order later."""
        now = self._clock.now()
        message_id = MessageId(self._secrets.identifier())
        async with self._uow() as tx:
            me = await tx.groups.member(group_id, caller.account.id)
            if me is None or not me.state.current:
                raise NotFound("No such group.", code="group_not_found")
            check_joined(me)
            txn = client_txn_id or message_id
            earlier = await tx.groups.forward_by_txn(caller.device.id, txn)
            if earlier is not None:
                return SendResult(self._pending(earlier, me.address), created=False)
            forward = GroupForward(
                message_id=message_id,
                conversation_id=group_id,
                sender_account_id=caller.account.id,
                sender_device=caller.device.id,
                body=body,
                client_txn_id=txn,
                sent_at=now,
                attempts=1,
                next_attempt_at=now + _LEASE,  # leased to this request
                give_up_at=now + self._give_up_after,
            )
            await tx.groups.add_forward(forward)
            await tx.commit()
        outcome = await self._send_forward(forward, me.address)
        await self._settle_forward(forward, outcome)
        if isinstance(outcome, wire.SentOut):
            return SendResult(
                Message(
                    id=MessageId(outcome.id),
                    conversation_id=group_id,
                    seq=outcome.seq,
                    sender=me.address,
                    sender_device=caller.device.id,
                    recipient=Address(group_id),
                    body=body,
                    sent_at=outcome.sent_at,
                    status=DeliveryStatus.DELIVERED,
                    encryption=Encryption.END_TO_END,
                ),
                created=outcome.created,
            )
        if isinstance(outcome, ExtensionRefusal):
            raise error_of(outcome)
        return SendResult(self._pending(forward, me.address), created=True)

    async def revise(
        self,
        caller: AuthenticatedDevice,
        original: Message,
        body: str | None,
        client_txn_id: str | None,
    ) -> SendResult:
        """An edit (``body``) or deletion for everyone (None) of the caller's message
        in a group hosted elsewhere (checked here already; the host checks again):
        kept until the host orders it, like a message. Once the host took it: the
        edit as the host stored it, or the original's tombstone (erased here at
        once); while the host cannot be reached: the edit as ``accepted`` (seq 0),
        or the original as it still stands, the change arriving in the host's
        order later."""
        now = self._clock.now()
        message_id = MessageId(self._secrets.identifier())
        revision = "delete" if body is None else "edit"
        group_id = original.conversation_id
        async with self._uow() as tx:
            me = await tx.groups.member(group_id, caller.account.id)
            if me is None or not me.state.current:
                raise NotFound("No such group.", code="group_not_found")
            check_joined(me)
            txn = client_txn_id or (f"delete:{original.id}" if body is None else message_id)
            earlier = await tx.groups.forward_by_txn(caller.device.id, txn)
            if earlier is not None:
                if earlier.revision == "delete":
                    return SendResult(original, created=False)
                return SendResult(self._pending(earlier, me.address), created=False)
            forward = GroupForward(
                message_id=message_id,
                conversation_id=group_id,
                sender_account_id=caller.account.id,
                sender_device=caller.device.id,
                body=body or DELETED_NOTICE,
                client_txn_id=txn,
                sent_at=now,
                attempts=1,
                next_attempt_at=now + _LEASE,  # leased to this request
                give_up_at=now + self._give_up_after,
                revision=revision,
                replaces=original.id,
            )
            await tx.groups.add_forward(forward)
            await tx.commit()
        outcome = await self._send_forward(forward, me.address)
        await self._settle_forward(forward, outcome)
        if isinstance(outcome, ExtensionRefusal):
            raise error_of(outcome)
        if outcome is None:
            if body is None:
                return SendResult(original, created=True)
            return SendResult(self._pending(forward, me.address), created=True)
        if body is None:
            async with self._uow() as tx:
                found = await tx.messages.get(original.id)
                if found is not None and found.deleted_at is None:
                    # The host erased it everywhere; our copy goes now, not at its fan-out.
                    await tx.revisions.erase(original.id, self._clock.now())
                    await tx.commit()
                tombstone = await tx.messages.get(original.id) if found else None
            return SendResult(tombstone or original, created=outcome.created)
        return SendResult(
            replace(
                self._pending(forward, me.address),
                id=MessageId(outcome.id),
                seq=outcome.seq,
                sent_at=outcome.sent_at,
                status=DeliveryStatus.DELIVERED,
            ),
            created=outcome.created,
        )

    def _pending(self, forward: GroupForward, sender: Address) -> Message:
        if forward.revision == "edit" and forward.replaces is not None:
            return replace(
                self._pending(replace(forward, revision=None), sender),
                media_type=EDIT_MEDIA_TYPE,
                metadata=_canonical(edit_metadata(forward.replaces)),
                replaces=forward.replaces,
            )
        return Message(
            id=forward.message_id,
            conversation_id=forward.conversation_id,
            seq=0,
            sender=sender,
            sender_device=DeviceId(forward.sender_device),
            recipient=Address(forward.conversation_id),
            body=forward.body,
            sent_at=forward.sent_at,
            status=DeliveryStatus.ACCEPTED,
            encryption=Encryption.END_TO_END,
        )

    # --- the loop: the host's fan-out and a member node's forwards -------------------------

    def kick(self) -> None:
        self._loop.kick()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _round(self) -> bool:
        """One pass over what is due; True when more may be due at once."""
        now = self._clock.now()
        async with self._uow() as tx:
            streams = await tx.groups.claim_fanout(now, now + _LEASE, _BATCH)
            forwards = await tx.groups.claim_forwards(now, now + _LEASE, _BATCH)
            await tx.commit()
        more = await any_more_due(
            [
                *(self._deliver_stream(g, d, attempts) for g, d, attempts in streams),
                *(self._retry_forward(f) for f in forwards),
            ],
            "a group delivery failed",
        )
        return more or len(streams) == _BATCH

    async def _deliver_stream(
        self, group_id: ConversationId, domain: Domain, attempts: int
    ) -> bool:
        """Send one (group, node)'s next batch; True when it has more waiting."""
        async with self._uow() as tx:
            rows = await tx.groups.fanout_rows(group_id, domain, _FANOUT_ROWS)
            group = await tx.groups.get(group_id)
            members = await tx.groups.members(group_id) if group else []
            rows = [r for r in rows if rows and r[0] <= rows[0][0] + _MAX_SEQ_SPAN]
            found = (
                await tx.messages.history(group_id, rows[0][0] - 1, rows[-1][0] - rows[0][0] + 1)
                if rows and group
                else []
            )
        if not rows:
            return False
        last_seq = rows[-1][0]
        by_seq = {m.seq: m for m in found}
        batch: list[wire.WireGroupMessage] = []
        chars = 0
        for seq, receivers in rows:
            message = by_seq.get(seq)
            if message is None or message.deleted_at is not None:
                continue  # deleted meanwhile (by retention, or for everyone): nothing to send
            if batch and chars + len(message.body) > wire.MAX_DELIVER_BODY_CHARS:
                last_seq = batch[-1].seq
                break
            chars += len(message.body)
            batch.append(_wire_message(message, receivers))
        if group is None or not batch:
            await self._settle_stream(group_id, domain, last_seq, 0, None)
            return True
        request = wire.GroupDeliverRequest(
            group=_wire_group(group),
            members=[_wire_member(m) for m in members],
            messages=batch,
        )
        try:
            answer = await self._signed.exchange(domain, wire.GROUP_DELIVER_PATH, request)
        except PeerUnavailable:
            answer = None
        if parse_answer(wire.GroupDeliverAnswer, answer) is None:
            if answer is not None:
                log.info("group %s: %s refused a delivery: %s", group_id, domain, answer)
            delay = timedelta(seconds=backoff_seconds(attempts + 1, self._rng))
            await self._settle_stream(group_id, domain, None, attempts + 1, delay)
            return False
        await self._settle_stream(group_id, domain, last_seq, 0, None)
        return True

    async def _settle_stream(
        self,
        group_id: ConversationId,
        domain: Domain,
        up_to_seq: int | None,
        attempts: int,
        delay: timedelta | None,
    ) -> None:
        async with self._uow() as tx:
            await tx.groups.settle_fanout(
                group_id,
                domain,
                up_to_seq=up_to_seq,
                retry_at=self._clock.now() + (delay or timedelta(0)),
                attempts=attempts,
            )
            await tx.commit()

    async def _retry_forward(self, forward: GroupForward) -> bool:
        async with self._uow() as tx:
            me = await tx.groups.member(forward.conversation_id, forward.sender_account_id)
        if me is None or self._clock.now() >= forward.give_up_at:
            log.info("group message %s: given up", forward.message_id)
            await self._settle_forward(forward, None, give_up=True)
            return False
        outcome = await self._send_forward(forward, me.address)
        if isinstance(outcome, ExtensionRefusal) and outcome.status == 429:
            outcome = None  # over the group's rate for now: later
        await self._settle_forward(forward, outcome)
        return False

    async def _send_forward(
        self, forward: GroupForward, sender: Address
    ) -> wire.SentOut | ExtensionRefusal | None:
        """One attempt: the host's message, its refusal, or None (try again later)."""
        async with self._uow() as tx:
            group = await tx.groups.get(forward.conversation_id)
        if group is None:
            return ExtensionRefusal(status=404, code="group_not_found", message="No such group.")
        path = wire.GROUP_SEND_PATH
        request: wire.GroupSendRequest | wire.GroupReviseRequest
        if forward.revision is not None and forward.replaces is not None:
            path = wire.GROUP_REVISE_PATH
            request = wire.GroupReviseRequest(
                group_id=forward.conversation_id,
                sender=sender,
                sender_device=forward.sender_device,
                revision="delete" if forward.revision == "delete" else "edit",
                replaces=forward.replaces,
                body=forward.body if forward.revision == "edit" else None,
                client_txn_id=forward.client_txn_id,
                sent_at=forward.sent_at,
            )
        else:
            request = wire.GroupSendRequest(
                group_id=forward.conversation_id,
                sender=sender,
                sender_device=forward.sender_device,
                body=forward.body,
                client_txn_id=forward.client_txn_id,
                sent_at=forward.sent_at,
            )
        try:
            answer = await self._signed.exchange(Domain(host_of(group)), path, request)
        except PeerUnavailable:
            return None
        sent = parse_answer(wire.GroupSendAnswer, answer)
        if sent is not None:
            return sent.message
        return parse_answer(ExtensionRefusal, answer)

    async def _settle_forward(
        self,
        forward: GroupForward,
        outcome: wire.SentOut | ExtensionRefusal | None,
        *,
        give_up: bool = False,
    ) -> None:
        async with self._uow() as tx:
            if outcome is not None or give_up:
                await tx.groups.settle_forward(forward.message_id, None, forward.attempts)
            else:
                delay = timedelta(seconds=backoff_seconds(forward.attempts, self._rng))
                await tx.groups.settle_forward(
                    forward.message_id,
                    min(self._clock.now() + delay, forward.give_up_at),
                    forward.attempts + 1,
                )
            await tx.commit()

    # --- requests from our other nodes --------------------------------------------------

    def handlers(self) -> dict[str, ExtensionHandler]:
        """The signed endpoints this serves, by path (api/openmsg.py routes them)."""
        return {
            wire.GROUP_DELIVER_PATH: served(self._deliver),
            wire.GROUP_ACT_PATH: served(self._act_for_peer),
            wire.GROUP_SEND_PATH: served(self._send_for_peer),
            wire.GROUP_REVISE_PATH: served(self._revise_for_peer),
        }

    async def _deliver(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        """A member node takes the host's next messages and its membership."""
        origin = await self._verifier.origin(raw, headers, wire.GROUP_DELIVER_PATH)
        request = parse_request(wire.GroupDeliverRequest, raw)
        if _domain_of(request.group.created_by) != origin:
            raise PeerRefusal(ResponseCode.IDENT_CODE_INVALID, "Not that group's host.")
        group_id = ConversationId(request.group.id)
        messages = sorted(request.messages, key=lambda m: m.seq)
        appended: list[AppendResult] = []
        async with self._uow() as tx:
            invited = await self._invited_here(tx, group_id, origin, messages)
            group = await tx.groups.lock(group_id)
            if group is None:
                if not invited:
                    # Not an invitation over a connection: dropped, and nobody here hears of it.
                    return wire.GroupDeliverAnswer(accepted=False).model_dump(mode="json")
                created = request.group
                await tx.groups.create(
                    group_id, created.name, Address(created.created_by), created.created_at
                )
                group = await tx.groups.lock(group_id)
                assert group is not None
            elif host_of(group) != origin or group.created_by != request.group.created_by:
                raise PeerRefusal(ResponseCode.IDENT_CODE_INVALID, "Not that group's host.")
            local = await self._take_members(tx, group, request.members, invited)
            joined_here = {
                m.account_id
                for m in await tx.groups.members(group.id)
                if m.state is MemberState.JOINED and not is_remote(m)
            }
            last_seq = group.last_seq
            for message in messages:
                if message.seq <= last_seq:
                    continue  # taken before (a retry whose answer was lost)
                receivers = tuple(local[Address(a)] for a in message.to if Address(a) in local)
                if message.media_type != MEMBER_EVENT_MEDIA_TYPE:
                    # What people say reaches only those of ours who joined.
                    receivers = tuple(a for a in receivers if a in joined_here)
                    # Whoever blocked the sender does not get their messages.
                    blockers = await tx.blocks.blockers(receivers, Address(message.sender))
                    receivers = tuple(a for a in receivers if a not in blockers)
                revised = await self._revised(tx, group_id, message)
                if message.media_type == DELETE_MEDIA_TYPE and revised is not None:
                    # Deleted for everyone: our copy goes too, kept for anyone or not.
                    await tx.revisions.erase(revised, self._clock.now())
                if not receivers:
                    continue  # for nobody here: not kept
                appended.append(
                    await tx.messages.append_group(
                        GroupAppend(
                            message_id=MessageId(message.id),
                            conversation_id=group_id,
                            sender=Address(message.sender),
                            sender_device=message.sender_device,
                            body=message.body,
                            client_txn_id=None,
                            sent_at=message.sent_at,
                            encryption=message.encryption,
                            receivers=receivers,
                            media_type=message.media_type,
                            metadata=message.metadata,
                            seq=message.seq,
                        )
                    )
                )
                if revised is not None:
                    await tx.revisions.set_replaces(MessageId(message.id), revised)
                    if message.media_type == EDIT_MEDIA_TYPE:
                        await tx.revisions.mark_edited(revised, message.sent_at)
                last_seq = message.seq
            await tx.commit()
        await self._groups.publish(appended)
        return wire.GroupDeliverAnswer(accepted=True).model_dump(mode="json")

    async def _revised(
        self, tx: Transaction, group_id: ConversationId, message: wire.WireGroupMessage
    ) -> MessageId | None:
        """The message of this group that an edit or a deletion from the host names,
        if this node has it and it is the same sender's; None for anything else."""
        key = {EDIT_MEDIA_TYPE: "replaces", DELETE_MEDIA_TYPE: "deletes"}.get(message.media_type)
        if key is None or not message.metadata:
            return None
        try:
            named = json.loads(message.metadata).get(key)
        except (ValueError, AttributeError):
            return None
        if not isinstance(named, str) or not named:
            return None
        original = await tx.messages.get(MessageId(named))
        if original is None or original.conversation_id != group_id:
            return None
        return original.id if original.sender == message.sender else None

    async def _invited_here(
        self,
        tx: Transaction,
        group_id: ConversationId,
        origin: str,
        messages: Sequence[wire.WireGroupMessage],
    ) -> dict[Address, AccountId]:
        """This node's addresses the batch invites, each by an address it is
        connected with: only those may join the replica as new participants. The
        inviter must be an address of the host itself or a participant this node
        already knows joined: a host cannot name any contact of ours as inviter."""
        joined_here = {
            m.address for m in await tx.groups.members(group_id) if m.state is MemberState.JOINED
        }
        found: dict[Address, AccountId] = {}
        for message in messages:
            if message.media_type != MEMBER_EVENT_MEDIA_TYPE or not message.metadata:
                continue
            try:
                event = json.loads(message.metadata)
            except ValueError:
                continue
            if not isinstance(event, dict) or event.get("event") != MemberEvent.INVITED.value:
                continue
            address, by = event.get("address"), event.get("by")
            if not isinstance(address, str) or not isinstance(by, str):
                continue
            if _domain_of(address) != self._domain:
                continue
            if _domain_of(by) != origin and Address(by) not in joined_here:
                continue
            account = await tx.accounts.by_address(Address(address))
            if account is None:
                continue
            if await tx.connections.get(account.id, Address(by)) is None:
                continue  # a stranger cannot add you
            if await tx.blocks.is_blocked(account.id, Address(by)):
                continue  # nor someone you blocked
            found[account.address] = account.id
        return found

    async def _take_members(
        self,
        tx: Transaction,
        group: Group,
        members: Sequence[wire.WireMember],
        invited: Mapping[Address, AccountId],
        joining: Address | None = None,
    ) -> dict[Address, AccountId]:
        """Lay the host's membership on the replica. A participant of this node is
        added only when ``invited`` names it, and joins only by asking through this
        node (``joining``: the answer to its own join); returns this node's
        participants."""
        known = {m.address: m for m in await tx.groups.members(group.id) if not is_remote(m)}
        local: dict[Address, AccountId] = {a: m.account_id for a, m in known.items()}
        now = self._clock.now()
        for w in members:
            address = Address(w.address)
            if _domain_of(address) == self._domain:
                before = known.get(address)
                rejoins = before is not None and not before.state.current and w.state in _CURRENT
                if (before is None or rejoins) and address not in invited:
                    local.pop(address, None)
                    continue  # only an invitation over a connection brings one in (again)
                account_id = before.account_id if before else invited[address]
                local[address] = account_id
                joined_before = before is not None and before.state is MemberState.JOINED
                asked = address == joining or (group.id, address) in self._joining
                if w.state == MemberState.JOINED.value and not joined_before and not asked:
                    # The host says one of ours joined, but they never asked here.
                    w = w.model_copy(
                        update={"state": MemberState.INVITED.value, "joined_seq": None}
                    )
            else:
                account_id = remote_account_id(address)
            await tx.groups.put_member(
                Member(
                    conversation_id=group.id,
                    account_id=account_id,
                    address=address,
                    role=Role(w.role),
                    kind=MemberKind(w.kind),
                    app_id=w.app_id,
                    state=MemberState(w.state),
                    invited_by=Address(w.invited_by) if w.invited_by else None,
                    invited_seq=w.invited_seq,
                    joined_seq=w.joined_seq,
                    left_seq=w.left_seq,
                    joined_at=w.joined_at,
                    updated_at=now,
                )
            )
        return local

    async def _act_for_peer(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        """The host: a participant on the asking node joins, declines or leaves."""
        origin = await self._verifier.origin(raw, headers, wire.GROUP_ACT_PATH)
        request = parse_request(wire.GroupActRequest, raw)
        actor = self._their_address(request.actor, origin)
        try:
            await self._hosted_here(request.group_id)
            account_id = remote_account_id(actor)
            target = request.address or ""
            if request.action == "join":
                await self._groups.join_as(account_id, request.group_id)
            elif request.action == "decline":
                await self._groups.decline_as(account_id, request.group_id)
            elif request.action == "leave":
                await self._groups.leave_as(account_id, request.group_id)
            elif request.action == "invite":
                await self._groups.invite_from_peer(account_id, request.group_id, target)
            elif request.action == "remove":
                await self._groups.remove_as(account_id, request.group_id, target)
            else:
                role = parse_role(request.role or "")
                await self._groups.set_role_as(account_id, request.group_id, target, role)
        except DomainError as exc:
            return refusal_body(exc)
        async with self._uow() as tx:
            group = await tx.groups.get(ConversationId(request.group_id))
            members = await tx.groups.members(ConversationId(request.group_id))
        assert group is not None
        return wire.GroupActAnswer(
            group=_wire_group(group), members=[_wire_member(m) for m in members]
        ).model_dump(mode="json")

    async def _send_for_peer(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        """The host: order a message a participant on the asking node sent."""
        origin = await self._verifier.origin(raw, headers, wire.GROUP_SEND_PATH)
        request = parse_request(wire.GroupSendRequest, raw)
        sender = self._their_address(request.sender, origin)
        try:
            await self._hosted_here(request.group_id)
            body = validate_encrypted_body(request.body)
            result = await self._groups.send_from_peer(
                remote_account_id(sender),
                request.sender_device,
                request.group_id,
                body,
                _peer_txn(sender, request),
            )
        except DomainError as exc:
            return refusal_body(exc)
        message = result.message
        return wire.GroupSendAnswer(
            message=wire.SentOut(
                id=message.id, seq=message.seq, sent_at=message.sent_at, created=result.created
            )
        ).model_dump(mode="json")

    async def _revise_for_peer(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        """The host: an edit or deletion for everyone of a group message a
        participant on the asking node sent, checked as for a participant here."""
        origin = await self._verifier.origin(raw, headers, wire.GROUP_REVISE_PATH)
        request = parse_request(wire.GroupReviseRequest, raw)
        sender = self._their_address(request.sender, origin)
        try:
            await self._hosted_here(request.group_id)
            if self.revisions is None:
                raise NotFound("No such group.", code="group_not_found")
            group_id = ConversationId(request.group_id)
            if request.revision == "edit":
                if request.body is None:
                    raise InvalidInput("body", "is required for an edit")
                body = validate_encrypted_body(request.body)
                result = await self.revisions.edit_from_peer(
                    remote_account_id(sender),
                    sender,
                    request.sender_device,
                    group_id,
                    request.replaces,
                    body,
                    _peer_txn(sender, request),
                )
                message, created = result.message, result.created
            else:
                message = await self.revisions.delete_from_peer(
                    remote_account_id(sender), sender, group_id, request.replaces
                )
                created = True
        except DomainError as exc:
            return refusal_body(exc)
        return wire.GroupSendAnswer(
            message=wire.SentOut(
                id=message.id, seq=message.seq, sent_at=message.sent_at, created=created
            )
        ).model_dump(mode="json")

    async def _hosted_here(self, group_id: str) -> None:
        async with self._uow() as tx:
            group = await tx.groups.get(ConversationId(group_id))
        if group is None or host_of(group) != self._domain:
            raise NotFound("No such group.", code="group_not_found")

    def _their_address(self, value: str, origin: Domain) -> Address:
        try:
            parsed = parse_address(value)
        except InvalidInput:
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Not an address.") from None
        if parsed.domain != origin:
            raise PeerRefusal(ResponseCode.IDENT_CODE_INVALID)  # a node speaks for its own only
        return parsed.address

    # --- shared -----------------------------------------------------------------------


def _wire_message(message: Message, receivers: list[Address]) -> wire.WireGroupMessage:
    return wire.WireGroupMessage(
        id=message.id,
        seq=message.seq,
        sender=message.sender,
        sender_device=message.sender_device,
        body=message.body,
        sent_at=message.sent_at,
        encryption=message.encryption.value,
        media_type=message.media_type,
        metadata=message.metadata,
        to=list(receivers),
    )


def _canonical(value: dict[str, str]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _peer_txn(sender: Address, request: wire.GroupSendRequest | wire.GroupReviseRequest) -> str:
    """The idempotency key of a forwarded send. A peer names its device and
    transaction ids; bound to its sender and the group, they can only ever match
    that sender's own earlier send, never another account's message here."""
    key = "\n".join((sender, request.group_id, request.sender_device, request.client_txn_id))
    return "peer:" + hashlib.sha256(key.encode()).hexdigest()


def _domain_of(address: str) -> Domain:
    return address_domain(Address(address)) if "*" in address else Domain("")
