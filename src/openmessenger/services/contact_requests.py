"""Two-way contact requests, beside pass codes; off unless the owner turns them on
(``accept_requests``: ``verified`` or ``anyone``).

A request reaches its owner, who accepts or declines it; messaging starts only
once it is accepted, which connects the two exactly as a pass code does
(``PairingService.connect_accounts``). The sender hears one answer whatever
happens: requests off, an unknown address, an unverified sender where only
verified ones may ask, a block, an earlier request (pending, declined or
accepted) or an existing connection all look like a delivered request, and
nothing is stored for the target then. Every request counts against the
sender's hourly limit, dropped or not, so the limit tells nothing either.

Across our nodes (``federation``, services/request_federation.py): a request to
an address on another node that lists ``requests`` goes there, where the same
rules decide (``receive_remote``); the sender hears the same answer. Accepting
such a request connects the two through that node with a one-time pass code.
An Openmsg v1 node takes no requests: ``requests_remote_unsupported``.
"""

from __future__ import annotations

from typing import Protocol

from openmessenger.core.contact_requests import (
    ContactRequest,
    IncomingRequest,
    RemoteContactRequest,
    RequestState,
    validate_note,
)
from openmessenger.core.errors import Conflict, InvalidInput, NotFound, RateLimited
from openmessenger.core.ids import Address, Domain, ParsedAddress, parse_address
from openmessenger.core.preferences import AcceptRequests
from openmessenger.core.records import Account, AccountKind, AuthenticatedDevice, Contact
from openmessenger.services.pairing import PairingService
from openmessenger.services.ports import Clock, Secrets, Transaction, UnitOfWork
from openmessenger.services.preferences import accept_requests_of
from openmessenger.services.request_limits import WindowLimiter

MAX_ID_CHARS = 64
_NO_REQUEST = "No such pending request."


class RemoteRequests(Protocol):
    """Requests to and from addresses on our other nodes (services/request_federation.py)."""

    async def takes_requests(self, domain: Domain) -> bool:
        """Whether ``domain``'s node takes contact requests (PeerUnavailable: unknown)."""
        ...

    async def forward(self, sender: Account, target: ParsedAddress, note: str | None) -> None:
        """Hand the request to the target's node (PeerUnavailable: unreachable)."""
        ...

    async def accept(
        self, caller: AuthenticatedDevice, request: RemoteContactRequest
    ) -> Contact | None:
        """Connect through the sender's node; None when it stands by no such request."""
        ...


class ContactRequestService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        pairing: PairingService,
        limiter: WindowLimiter,
        rate: str,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self._pairing = pairing
        self._limiter = limiter
        self._rate = rate
        self.federation: RemoteRequests | None = None
        """Requests across our nodes (set by wiring)."""

    async def send(self, caller: AuthenticatedDevice, to: str, note: str | None) -> None:
        """Ask ``to`` to connect. Returns the same (nothing) whether the request was
        delivered or dropped, on this node or another of ours; only bad input, a
        node that takes no requests or cannot be reached, and the rate limit are
        said."""
        target_address = parse_address(to, field="to")
        note = validate_note(note)
        sender = caller.account
        if target_address.address == sender.address:
            raise InvalidInput("to", "is your own address")
        remote = target_address.domain != self._domain
        if remote and (
            self.federation is None
            or not await self.federation.takes_requests(target_address.domain)
        ):
            raise Conflict(
                f"{target_address.domain} does not take contact requests from other nodes "
                "(an Openmsg v1 node); connect with a pass code.",
                code="requests_remote_unsupported",
            )
        key = ("contact-request", sender.id)
        if not await self._limiter.hit(self._rate, *key):
            retry_after = await self._limiter.retry_after(self._rate, *key)
            raise RateLimited("sender of contact requests", retry_after)
        if remote:
            assert self.federation is not None
            # The target's node decides, by the rules below; its answer says nothing.
            await self.federation.forward(sender, target_address, note)
            return
        now = self._clock.now()
        async with self._uow() as tx:
            target = await tx.accounts.by_address(target_address.address)
            if target is None or not await self._deliverable(tx, caller, target):
                return
            await tx.contact_requests.add(
                ContactRequest(
                    id=self._secrets.identifier(),
                    target_account_id=target.id,
                    sender_account_id=sender.id,
                    sender_address=sender.address,
                    note=note,
                    state=RequestState.PENDING,
                    created_at=now,
                )
            )
            await tx.commit()

    async def _deliverable(
        self, tx: Transaction, caller: AuthenticatedDevice, target: Account
    ) -> bool:
        accepting = await accept_requests_of(tx, target.id)
        if accepting is AcceptRequests.OFF:
            return False
        # Read now: the caller's authenticated copy may predate its registration.
        sender = await tx.accounts.get(caller.account.id)
        if sender is None:
            return False
        if accepting is AcceptRequests.VERIFIED and sender.kind is not AccountKind.REGISTERED:
            return False
        if await tx.blocks.is_blocked(target.id, sender.address):
            return False
        if await tx.connections.get(target.id, sender.address) is not None:
            return False
        return await tx.contact_requests.between(target.id, sender.id) is None

    async def receive_remote(
        self,
        sender: Address,
        sender_name: str | None,
        sender_verified: bool,
        to: Address,
        note: str | None,
    ) -> None:
        """A request from an address on another of our nodes (which vouches for its
        name and whether it is verified): stored when the rules above let it
        through, else dropped. Returns the same either way, as ``send`` does; the
        per-sender hourly limit holds here too (for a node that would not keep it)."""
        if not await self._limiter.hit(self._rate, "contact-request", sender):
            return
        now = self._clock.now()
        async with self._uow() as tx:
            target = await tx.accounts.by_address(to)
            if target is None:
                return
            accepting = await accept_requests_of(tx, target.id)
            if accepting is AcceptRequests.OFF:
                return
            if accepting is AcceptRequests.VERIFIED and not sender_verified:
                return
            if await tx.blocks.is_blocked(target.id, sender):
                return
            if await tx.connections.get(target.id, sender) is not None:
                return
            if await tx.remote_requests.between(target.id, sender) is not None:
                return
            await tx.remote_requests.add(
                RemoteContactRequest(
                    id=self._secrets.identifier(),
                    target_account_id=target.id,
                    sender_address=sender,
                    sender_name=sender_name,
                    sender_verified=sender_verified,
                    note=note,
                    state=RequestState.PENDING,
                    created_at=now,
                )
            )
            await tx.commit()

    async def incoming(self, caller: AuthenticatedDevice) -> list[IncomingRequest]:
        """The requests waiting for the caller's answer (from this node and from
        others), oldest first, with each sender's name and whether it is verified."""
        found: list[IncomingRequest] = []
        async with self._uow() as tx:
            for request in await tx.contact_requests.pending_for(caller.account.id):
                # The sender's account as it is now (its name, whether registered).
                sender = await tx.accounts.get(request.sender_account_id)
                found.append(
                    IncomingRequest(
                        id=request.id,
                        sender_address=request.sender_address,
                        sender_name=sender.display_name if sender else None,
                        sender_verified=sender is not None
                        and sender.kind is AccountKind.REGISTERED,
                        note=request.note,
                        created_at=request.created_at,
                        remote=False,
                    )
                )
            for remote in await tx.remote_requests.pending_for(caller.account.id):
                found.append(
                    IncomingRequest(
                        id=remote.id,
                        sender_address=remote.sender_address,
                        sender_name=remote.sender_name,
                        sender_verified=remote.sender_verified,
                        note=remote.note,
                        created_at=remote.created_at,
                        remote=True,
                    )
                )
        return sorted(found, key=lambda r: (r.created_at, r.id))

    async def accept(self, caller: AuthenticatedDevice, request_id: str) -> Contact:
        """Connect with the request's sender; the caller's new contact."""
        now = self._clock.now()
        remote = await self._remote_pending(caller, request_id)
        if remote is not None:
            return await self._accept_remote(caller, remote)
        async with self._uow() as tx:
            request = await self._pending(tx, caller, request_id)
            sender = await tx.accounts.get(request.sender_account_id)
            target = await tx.accounts.get(caller.account.id)
            if sender is None or target is None:
                raise NotFound(_NO_REQUEST, code="request_not_found")
            if not await tx.contact_requests.decide(request.id, RequestState.ACCEPTED, now):
                raise NotFound(_NO_REQUEST, code="request_not_found")
            contact = await tx.connections.get(target.id, sender.address)
            if contact is None:
                await self._pairing.connect_accounts(tx, sender, target, now)
                contact = await tx.connections.get(target.id, sender.address)
            assert contact is not None
            await tx.commit()
        return contact

    async def _remote_pending(
        self, caller: AuthenticatedDevice, request_id: str
    ) -> RemoteContactRequest | None:
        if not 0 < len(request_id) <= MAX_ID_CHARS:
            return None
        async with self._uow() as tx:
            found = await tx.remote_requests.get(caller.account.id, request_id)
        if found is None or found.state is not RequestState.PENDING:
            return None
        return found

    async def _accept_remote(
        self, caller: AuthenticatedDevice, request: RemoteContactRequest
    ) -> Contact:
        """Settle the request at once (a second accept finds nothing), then connect
        through the sender's node. Unreachable: pending again, to accept later.
        A node that stands by no such request: the request goes."""
        async with self._uow() as tx:
            claimed = await tx.remote_requests.decide(
                request.id, RequestState.ACCEPTED, self._clock.now()
            )
            await tx.commit()
        if not claimed or self.federation is None:
            raise NotFound(_NO_REQUEST, code="request_not_found")
        try:
            contact = await self.federation.accept(caller, request)
        except BaseException:
            async with self._uow() as tx:
                await tx.remote_requests.reopen(request.id)
                await tx.commit()
            raise
        async with self._uow() as tx:
            if contact is None:
                await tx.remote_requests.forget(request.id)
            else:
                await tx.remote_requests.settle(request.id)
            await tx.commit()
        if contact is None:
            raise NotFound(
                "The sender's node no longer stands by this request.", code="request_not_found"
            )
        return contact

    async def decline(self, caller: AuthenticatedDevice, request_id: str) -> None:
        """The sender hears nothing, and its later requests are dropped."""
        remote = await self._remote_pending(caller, request_id)
        if remote is not None:
            # Nothing travels to the sender's node.
            async with self._uow() as tx:
                if not await tx.remote_requests.decide(
                    remote.id, RequestState.DECLINED, self._clock.now()
                ):
                    raise NotFound(_NO_REQUEST, code="request_not_found")
                await tx.remote_requests.settle(remote.id)
                await tx.commit()
            return
        async with self._uow() as tx:
            request = await self._pending(tx, caller, request_id)
            if not await tx.contact_requests.decide(
                request.id, RequestState.DECLINED, self._clock.now()
            ):
                raise NotFound(_NO_REQUEST, code="request_not_found")
            await tx.commit()

    async def _pending(
        self, tx: Transaction, caller: AuthenticatedDevice, request_id: str
    ) -> ContactRequest:
        found = None
        if 0 < len(request_id) <= MAX_ID_CHARS:
            found = await tx.contact_requests.get(caller.account.id, request_id)
        if found is None or found.state is not RequestState.PENDING:
            raise NotFound(_NO_REQUEST, code="request_not_found")
        return found
