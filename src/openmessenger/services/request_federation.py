"""Contact requests across our nodes (capability ``requests``,
protocol/request_federation.py).

The target's node decides, by exactly the rules of a local request
(``ContactRequestService.receive_remote``), and answers the sender's node the
same whatever it decided, so that node cannot tell (nor tell its sender) whether
the request was stored. The sender's node vouches for its address (on its own
domain only), its display name and whether its account is registered.

The sender's node remembers each request its accounts sent
(``outgoing_contact_requests``). When the target accepts, the target's node
issues a one-time pass code bound to the sender and hands it over
(``request-accept/``); the sender's node redeems it with the ordinary Openmsg
handshake only if its account really has a request out to that target (and
has not blocked it), so both nodes hold the normal connection of a pass code.
Declining tells the sender's node nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

from openmessenger.core.contact_requests import RemoteContactRequest, validate_note
from openmessenger.core.errors import DomainError, InvalidInput, NotFound, PeerUnavailable
from openmessenger.core.ids import (
    Address,
    Domain,
    ParsedAddress,
    parse_address,
    validate_display_name,
)
from openmessenger.core.records import Account, AccountKind, AuthenticatedDevice, Contact
from openmessenger.protocol import request_federation as wire
from openmessenger.protocol.openmsg import JsonObject, ResponseCode
from openmessenger.services.contact_requests import ContactRequestService
from openmessenger.services.pairing import PairingService
from openmessenger.services.peers import PeerDirectory
from openmessenger.services.ports import (
    Clock,
    FederationTransport,
    Secrets,
    UnitOfWork,
)
from openmessenger.services.signed_requests import (
    ExtensionHandler,
    PeerRefusal,
    SignedRequests,
    SignedRequestVerifier,
    parse_answer,
    parse_request,
    served,
)

log = logging.getLogger(__name__)


class RequestFederation:
    def __init__(
        self,
        *,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        transport: FederationTransport,
        directory: PeerDirectory,
        verifier: SignedRequestVerifier,
        pairing: PairingService,
        requests: ContactRequestService,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._domain = domain
        self._directory = directory
        self._verifier = verifier
        self._pairing = pairing
        self._requests = requests
        self._signed = SignedRequests(
            secrets=secrets, clock=clock, domain=domain, transport=transport
        )

    # --- asked by ContactRequestService ------------------------------------------------

    async def takes_requests(self, domain: Domain) -> bool:
        found = await self._directory.capability(domain, wire.REQUESTS)
        if found is None:
            raise PeerUnavailable(domain)
        return found

    async def forward(self, sender: Account, target: ParsedAddress, note: str | None) -> None:
        """Remember the request, then hand it to the target's node. Whatever that
        node answers, the sender hears the same; only an unreachable node is said."""
        now = self._clock.now()
        async with self._uow() as tx:
            current = await tx.accounts.get(sender.id)  # its name and registration may be newer
            await tx.remote_requests.put_outgoing(sender.id, target.address, now)
            await tx.commit()
        verified = current is not None and current.kind is AccountKind.REGISTERED
        request = wire.RequestSendRequest(
            sender=sender.address,
            sender_name=(current or sender).display_name,
            sender_verified=verified,
            to=target.address,
            note=note,
        )
        answer = await self._signed.exchange(target.domain, wire.REQUEST_SEND_PATH, request)
        if parse_answer(wire.RequestSendAnswer, answer) is None:
            log.info("%s did not take a contact request: %s", target.domain, answer)

    async def accept(
        self, caller: AuthenticatedDevice, request: RemoteContactRequest
    ) -> Contact | None:
        """Give the sender's node a pass code bound to the sender; it connects the
        two by the Openmsg handshake. The caller's new contact, or None."""
        sender = parse_address(request.sender_address)
        issued = await self._pairing.issue(caller, sender.address)
        offer = wire.RequestAcceptRequest(
            target=caller.account.address, sender=sender.address, pass_code=issued.pass_code
        )
        try:
            answer = await self._signed.exchange(sender.domain, wire.REQUEST_ACCEPT_PATH, offer)
        except PeerUnavailable:
            answer = None
            unreachable = True
        else:
            unreachable = False
        found = parse_answer(wire.RequestAcceptAnswer, answer)
        if found is not None and not found.connected:
            log.info("%s stands by no request of %s", sender.domain, sender.address)
        # The connection is the outcome, whatever the answer said: the handshake
        # the code started may have gone through while the answer was lost.
        async with self._uow() as tx:
            contact = await tx.connections.get(caller.account.id, sender.address)
        if contact is None:
            # Unused: nobody else may hold it (it is bound to the sender anyway).
            with contextlib.suppress(NotFound):
                await self._pairing.withdraw(caller, issued.record.id)
            if unreachable:
                raise PeerUnavailable(sender.domain)
        return contact

    # --- requests from our other nodes --------------------------------------------------

    def handlers(self) -> dict[str, ExtensionHandler]:
        """The signed endpoints this serves, by path (api/openmsg.py routes them)."""
        return {
            wire.REQUEST_SEND_PATH: served(self._request_send),
            wire.REQUEST_ACCEPT_PATH: served(self._request_accept),
        }

    async def _request_send(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        """The target's node: one of the origin's addresses asks one of ours."""
        origin = await self._verifier.origin(raw, headers, wire.REQUEST_SEND_PATH)
        request = parse_request(wire.RequestSendRequest, raw)
        sender = self._their_address(request.sender, origin)
        to = self._our_address(request.to)
        try:
            note = validate_note(request.note)
            name = validate_display_name(request.sender_name) if request.sender_name else None
        except InvalidInput as exc:
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, exc.reason) from None
        await self._requests.receive_remote(sender, name, request.sender_verified, to, note)
        # Stored or dropped: one answer.
        return wire.RequestSendAnswer().model_dump(mode="json")

    async def _request_accept(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        """The sender's node: the target accepted; connect if our account asked."""
        origin = await self._verifier.origin(raw, headers, wire.REQUEST_ACCEPT_PATH)
        offer = parse_request(wire.RequestAcceptRequest, raw)
        target = self._their_address(offer.target, origin)
        sender = self._our_address(offer.sender)
        async with self._uow() as tx:
            account = await tx.accounts.by_address(sender)
            asked = (
                account is not None
                and await tx.remote_requests.has_outgoing(account.id, target)
                and not await tx.blocks.is_blocked(account.id, target)
            )
        remote = self._pairing.remote
        if not asked or account is None or remote is None:
            return wire.RequestAcceptAnswer(connected=False).model_dump(mode="json")
        try:
            await remote.connect(account, parse_address(target), offer.pass_code, True)
        except DomainError as exc:
            log.info("an accepted request from %s did not connect: %s", origin, exc.code)
            return wire.RequestAcceptAnswer(connected=False).model_dump(mode="json")
        async with self._uow() as tx:
            await tx.remote_requests.drop_outgoing(account.id, target)
            await tx.commit()
        return wire.RequestAcceptAnswer(connected=True).model_dump(mode="json")

    def _their_address(self, value: str, origin: Domain) -> Address:
        parsed = _address(value)
        if parsed.domain != origin or origin == self._domain:
            raise PeerRefusal(ResponseCode.IDENT_CODE_INVALID)  # a node speaks for its own only
        return parsed.address

    def _our_address(self, value: str) -> Address:
        parsed = _address(value)
        if parsed.domain != self._domain:
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Not an address of this node.")
        return parsed.address

    # --- shared -----------------------------------------------------------------------


def _address(value: str) -> ParsedAddress:
    try:
        return parse_address(value)
    except InvalidInput:
        raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Not an address.") from None
