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
"""

from __future__ import annotations

from openmessenger.core.contact_requests import ContactRequest, RequestState, validate_note
from openmessenger.core.errors import Conflict, InvalidInput, NotFound, RateLimited
from openmessenger.core.ids import Domain, parse_address
from openmessenger.core.preferences import AcceptRequests
from openmessenger.core.records import Account, AccountKind, AuthenticatedDevice, Contact
from openmessenger.services.pairing import PairingService
from openmessenger.services.ports import Clock, Secrets, Transaction, UnitOfWork
from openmessenger.services.preferences import accept_requests_of
from openmessenger.services.request_limits import WindowLimiter

MAX_ID_CHARS = 64


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

    async def send(self, caller: AuthenticatedDevice, to: str, note: str | None) -> None:
        """Ask ``to`` to connect. Returns the same (nothing) whether the request was
        delivered or dropped; only bad input, a remote address and the rate limit
        are said."""
        target_address = parse_address(to, field="to")
        note = validate_note(note)
        sender = caller.account
        if target_address.address == sender.address:
            raise InvalidInput("to", "is your own address")
        if target_address.domain != self._domain:
            raise Conflict(
                "Contact requests do not travel to other nodes yet; connect with a pass code.",
                code="requests_remote_unsupported",
            )
        key = ("contact-request", sender.id)
        if not await self._limiter.hit(self._rate, *key):
            retry_after = await self._limiter.retry_after(self._rate, *key)
            raise RateLimited("sender of contact requests", retry_after)
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

    async def incoming(self, caller: AuthenticatedDevice) -> list[ContactRequest]:
        """The requests waiting for the caller's answer, oldest first."""
        async with self._uow() as tx:
            return await tx.contact_requests.pending_for(caller.account.id)

    async def senders(self, requests: list[ContactRequest]) -> dict[str, Account]:
        """Each request's sender account as it is now (its name, whether registered)."""
        found: dict[str, Account] = {}
        async with self._uow() as tx:
            for request in requests:
                account = await tx.accounts.get(request.sender_account_id)
                if account is not None:
                    found[request.id] = account
        return found

    async def accept(self, caller: AuthenticatedDevice, request_id: str) -> Contact:
        """Connect with the request's sender; the caller's new contact."""
        now = self._clock.now()
        async with self._uow() as tx:
            request = await self._pending(tx, caller, request_id)
            sender = await tx.accounts.get(request.sender_account_id)
            target = await tx.accounts.get(caller.account.id)
            if sender is None or target is None:
                raise NotFound("No such pending request.", code="request_not_found")
            if not await tx.contact_requests.decide(request.id, RequestState.ACCEPTED, now):
                raise NotFound("No such pending request.", code="request_not_found")
            contact = await tx.connections.get(target.id, sender.address)
            if contact is None:
                await self._pairing.connect_accounts(tx, sender, target, now)
                contact = await tx.connections.get(target.id, sender.address)
            assert contact is not None
            await tx.commit()
        return contact

    async def decline(self, caller: AuthenticatedDevice, request_id: str) -> None:
        """The sender hears nothing, and its later requests are dropped."""
        async with self._uow() as tx:
            request = await self._pending(tx, caller, request_id)
            if not await tx.contact_requests.decide(
                request.id, RequestState.DECLINED, self._clock.now()
            ):
                raise NotFound("No such pending request.", code="request_not_found")
            await tx.commit()

    async def _pending(
        self, tx: Transaction, caller: AuthenticatedDevice, request_id: str
    ) -> ContactRequest:
        found = None
        if 0 < len(request_id) <= MAX_ID_CHARS:
            found = await tx.contact_requests.get(caller.account.id, request_id)
        if found is None or found.state is not RequestState.PENDING:
            raise NotFound("No such pending request.", code="request_not_found")
        return found
