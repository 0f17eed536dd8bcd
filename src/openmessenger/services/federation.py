"""Openmsg v1 between nodes: the handshake in both directions and received
messages. The wire format is ``protocol.openmsg``; this is what the node does
with it. Every answer is a JSON body for an HTTP 200 (the edge renders it).

Refusals store nothing and tell the address owner nothing. A pass code that
matched is held while the initiator's domain is asked to vouch (``auth-confirm/``)
and given back if it does not, so an impostor cannot burn it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from openmessenger.core.envelope import AppendResult, Encryption, ReceivedMessage
from openmessenger.core.errors import InvalidInput, PeerUnavailable, Refused
from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    Domain,
    MessageId,
    ParsedAddress,
    address_domain,
    parse_address,
)
from openmessenger.core.records import Account, Contact, OpenmsgLink
from openmessenger.crypto.keys import verify_ed25519
from openmessenger.protocol import openmsg
from openmessenger.protocol.e2e import MAX_ENCRYPTED_BODY_CHARS, SignedDeviceList
from openmessenger.protocol.openmsg import JsonObject, ResponseCode
from openmessenger.services.app_envelopes import ReceivedEnvelope, check_remote_envelope
from openmessenger.services.apps import accepts_app
from openmessenger.services.federation_gate import FederationGate
from openmessenger.services.keys import KeyService
from openmessenger.services.links import LinkCodes, Links, ident_hmac
from openmessenger.services.messaging import validate_encrypted_body
from openmessenger.services.pairing import ConnectResult, PairingService
from openmessenger.services.peers import PeerDirectory
from openmessenger.services.ports import (
    Bus,
    Clock,
    FederationTransport,
    PeerReply,
    PeerUnreachable,
    Secrets,
    UnitOfWork,
)
from openmessenger.services.sealing import BodySealer
from openmessenger.services.signed_requests import (
    ExtensionHandler,
    PeerRefusal,
    SignedRequestVerifier,
    parse_request,
)
from openmessenger.services.webhooks import WebhookQueue

log = logging.getLogger(__name__)

_HANDSHAKE_PURPOSE = "openmsg-handshake"
HANDSHAKE_SECONDS = openmsg.MESSAGE_WINDOW_SECONDS


def wire_name(account: Account) -> str:
    """v1 requires a name; an account without one goes by its number."""
    return account.display_name or account.address.split("*", 1)[0]


ReceiveLog = Callable[[ReceivedMessage], Awaitable[AppendResult | None]]
"""Stores one received message (group-committed); None when its nonce was taken."""

ConfirmLookup = Callable[[str, str], Awaitable[bool]]
"""``(message_hash, nonce)``: is this one of our messages being sent right now?"""


class BlockChecker(Protocol):
    async def is_blocked(self, account: AccountId, address: Address) -> bool: ...


class FederationService:
    def __init__(
        self,
        *,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        transport: FederationTransport,
        gate: FederationGate,
        pairing: PairingService,
        bus: Bus,
        receive_log: ReceiveLog,
        confirm_lookup: ConfirmLookup,
        directory: PeerDirectory,
        links: Links,
        verifier: SignedRequestVerifier,
        blocks: BlockChecker,
    ) -> None:
        self._uow = uow
        self._verifier = verifier
        self._blocks = blocks
        """Who blocked whom (services/blocks.py)."""
        self._sealer = BodySealer(uow)
        self.keys: KeyService | None = None
        """Answers other nodes' key requests; set once the node is built."""
        self.webhooks: WebhookQueue | None = None
        """Queues webhook calls for the app devices among the receivers (set by wiring)."""
        self.extensions: dict[str, ExtensionHandler] = {}
        """More signed extension endpoints by path, served by their own services, and
        the capabilities they add (see :meth:`add_extension`)."""
        self.capabilities: tuple[str, ...] = ()
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self._transport = transport
        self._gate = gate
        self._pairing = pairing
        self._bus = bus
        self._receive_log = receive_log
        self._confirm_lookup = confirm_lookup
        self._directory = directory
        self._links = links

    def add_extension(self, capability: str, handlers: Mapping[str, ExtensionHandler]) -> None:
        """Announce ``capability`` in the node descriptor and serve its signed
        endpoints (groups, revisions, requests, disappearing messages across nodes)."""
        self.extensions.update(handlers)
        self.capabilities += (capability,)

    # --- we start a handshake ------------------------------------------------------

    async def connect(
        self, initiator: Account, target: ParsedAddress, pass_code: str, allow_replies: bool
    ) -> ConnectResult:
        """Redeem a pass code issued on another node (``auth/`` there)."""
        if await self._gate.is_blocked(target.domain):
            raise Refused()
        now = self._clock.now()
        request = openmsg.AuthRequest(
            receiving_openmsg_address_id=target.number,
            pass_code=pass_code,
            sending_openmsg_address=initiator.address,
            sending_openmsg_address_name=wire_name(initiator),
            sending_allow_replies=allow_replies,
        )
        proof = openmsg.passcode_hash(pass_code, initiator.address, target.address)
        proof_hmac = self._secrets.hmac(_HANDSHAKE_PURPOSE, proof)
        async with self._uow() as tx:
            await tx.federation.add_handshake(
                proof_hmac, target.address, now + timedelta(seconds=HANDSHAKE_SECONDS)
            )
            await tx.commit()
        try:
            reply = await self._post(target.domain, "auth", request.to_wire())
        finally:
            async with self._uow() as tx:
                await tx.federation.end_handshake(proof_hmac, self._clock.now())
                await tx.commit()
        answer = openmsg.read_answer(reply.body) if reply.status == 200 else None
        if answer is None or not answer.ok:
            raise Refused()
        try:
            accepted = openmsg.parse_auth_success_answer(reply.body)
        except openmsg.RemoteProtocolError as exc:
            log.warning("a malformed auth/ answer from %s: %s", target.domain, exc)
            raise Refused() from None
        codes = LinkCodes(accepted.auth_code, accepted.ident_code, accepted.message_crypt_key)
        known = await self._codes_of(initiator, target.address)
        if known is not None and known.ident_code != codes.ident_code:
            # As v1 initiators do: a connection keeps its ident_code; the old codes stay.
            log.warning("%s answered a repeated handshake with a new ident_code", target.domain)
            raise Refused()
        return await self._store_connection(
            initiator,
            target.address,
            accepted.receiving_openmsg_address_name,
            codes,
            accepts_messages=allow_replies,
            peer_accepts_messages=True,
        )

    # --- a peer starts a handshake (auth/) ---------------------------------------------

    async def auth(self, body: object) -> JsonObject:
        return await self._answer(self._auth(body))

    async def _auth(self, body: object) -> JsonObject:
        request = openmsg.parse_auth_request(body)
        initiator = request.sending_address
        initiator_domain = address_domain(initiator)
        await self._admit(initiator_domain, initiator, handshake=True)
        if initiator_domain == self._domain:
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Refused.")
        target_address = Address(f"{request.receiving_openmsg_address_id}*{self._domain}")
        reservation = await self._pairing.reserve(target_address, initiator, request.pass_code)
        if reservation is None:
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Refused.")
        # Whoever knows the code must also be speaking for the initiator's domain.
        proof = openmsg.passcode_hash(
            request.pass_code, request.sending_openmsg_address, target_address
        )
        vouched = await self._vouched(
            initiator_domain,
            "auth-confirm",
            openmsg.AuthConfirmRequest(
                receiving_openmsg_address=target_address, passcode_hash=proof
            ).to_wire(),
        )
        if not vouched:
            await self._pairing.release(reservation)
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Refused.")
        # A connection made again keeps its ident_code (v1 initiators refuse a new
        # one); the auth code and key are new.
        known = await self._codes_of(reservation.target, initiator)
        codes = LinkCodes(
            openmsg.new_auth_code(),
            known.ident_code if known else openmsg.new_ident_code(),
            openmsg.new_message_crypt_key(),
        )
        await self._store_connection(
            reservation.target,
            initiator,
            request.sending_openmsg_address_name,
            codes,
            accepts_messages=True,
            peer_accepts_messages=request.sending_allow_replies,
        )
        return openmsg.AuthSuccessAnswer(
            auth_code=codes.auth_code,
            ident_code=codes.ident_code,
            message_crypt_key=codes.crypt_key,
            receiving_openmsg_address_name=wire_name(reservation.target),
        ).to_wire()

    # --- a peer checks that we started a handshake (auth-confirm/) ----------------------

    async def auth_confirm(self, body: object) -> JsonObject:
        return await self._answer(self._auth_confirm(body))

    async def _auth_confirm(self, body: object) -> JsonObject:
        request = openmsg.parse_auth_confirm_request(body)
        proof_hmac = self._secrets.hmac(_HANDSHAKE_PURPOSE, request.passcode_hash)
        async with self._uow() as tx:
            pending = await tx.federation.handshake_pending(
                proof_hmac, request.receiving_address, self._clock.now()
            )
        if not pending:
            raise PeerRefusal(
                ResponseCode.MESSAGE_DATA_MISSING, "No such handshake from this node."
            )
        return openmsg.success_body()

    # --- a peer sends a message (message-receive/) -----------------------------------------

    async def message_receive(self, body: object) -> JsonObject:
        return await self._answer(self._message_receive(body))

    async def _message_receive(self, body: object) -> JsonObject:
        request = openmsg.parse_message_receive_request(body)
        return await self._receive(request, None, openmsg.MAX_MESSAGE_TEXT_CHARS)

    # --- one of our nodes sends a long message (extension, signed) -------------------------

    async def long_message_receive(self, body: bytes, headers: Mapping[str, str]) -> JsonObject:
        return await self._answer(self._long_message_receive(body, headers))

    async def _long_message_receive(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        origin = await self._verifier.origin(raw, headers, openmsg.LONG_MESSAGE_PATH)
        request = openmsg.parse_long_message_receive_request(_json(raw))
        if request.end_to_end:
            return await self._receive(request, origin, MAX_ENCRYPTED_BODY_CHARS, end_to_end=True)
        return await self._receive(request, origin, openmsg.LONG_TEXT_MAX_CHARS)

    # --- one of our nodes asks for the keys of a connected address (extension) -----------

    async def keys_query(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        return await self._answer(self._keys_query(raw, headers))

    async def _keys_query(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        origin = await self._verifier.origin(raw, headers, openmsg.KEYS_QUERY_PATH)
        request = parse_request(openmsg.KeysQueryRequest, raw)
        requester, address = self._key_parties(request, origin)
        found = await self.keys.keys_for_peer(requester, address) if self.keys else None
        if found is None:
            return openmsg.KeysQueryAnswer(found=False).model_dump(mode="json")
        return openmsg.KeysQueryAnswer(
            found=True,
            transport_only=found.encryption is Encryption.TRANSPORT,
            device_list=(
                SignedDeviceList.model_validate_json(found.device_list)
                if found.device_list
                else None
            ),
            devices=[
                openmsg.RemoteDevice(
                    device_id=d.device_id,
                    ed25519_key=d.ed25519_key,
                    curve25519_key=d.curve25519_key,
                )
                for d in found.devices
            ],
        ).model_dump(mode="json")

    async def keys_claim(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        return await self._answer(self._keys_claim(raw, headers))

    async def _keys_claim(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        origin = await self._verifier.origin(raw, headers, openmsg.KEYS_CLAIM_PATH)
        request = parse_request(openmsg.KeysClaimRequest, raw)
        requester, address = self._key_parties(request, origin)
        claimed = (
            await self.keys.claim_for_peer(requester, address, request.devices)
            if self.keys
            else None
        )
        if claimed is None:
            return openmsg.KeysClaimAnswer(found=False).model_dump(mode="json")
        return openmsg.KeysClaimAnswer(
            found=True,
            one_time_keys={
                device: openmsg.ClaimedRemoteKey(
                    key_id=key.key_id, key=key.key, signature=key.signature, fallback=key.fallback
                )
                for device, key in claimed.items()
            },
        ).model_dump(mode="json")

    def _key_parties(
        self, request: openmsg.KeysQueryRequest, origin: Domain
    ) -> tuple[Address, Address]:
        try:
            requester = parse_address(request.requester, field="requester")
            address = parse_address(request.address, field="address")
        except InvalidInput:
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Not an address.") from None
        if requester.domain != origin:
            # A node speaks only for its own addresses.
            raise PeerRefusal(ResponseCode.IDENT_CODE_INVALID)
        return requester.address, address.address

    def descriptor(self) -> JsonObject:
        """What this node publishes at ``/.well-known/openmessenger``."""
        return openmsg.NodeDescriptor(
            domain=self._domain,
            protocols=(openmsg.V1_PROTOCOL, openmsg.EXTENSION_PROTOCOL),
            signing_key=self._secrets.signing_key(),
            capabilities=(
                openmsg.LONG_TEXT,
                openmsg.END_TO_END,
                openmsg.ENVELOPE,
                *self.capabilities,
            ),
        ).model_dump(mode="json")

    # --- shared by both ways of receiving ---------------------------------------------

    async def _receive(
        self,
        request: openmsg.MessageReceiveRequest,
        signed_by: Domain | None,
        max_chars: int,
        *,
        end_to_end: bool = False,
    ) -> JsonObject:
        """Check and store one message; ``signed_by`` is the origin a signature
        proved, else the sender's domain is asked to confirm (v1)."""
        known = await self._links.by_ident(request.ident_code)
        link = known.link if known else None
        owner_number = link.owner_address.split("*", 1)[0] if link else None
        if known is None or link is None or owner_number != request.receiving_openmsg_address_id:
            raise PeerRefusal(ResponseCode.IDENT_CODE_INVALID)
        peer_domain = address_domain(link.peer_address)
        if signed_by is not None and signed_by != peer_domain:
            raise PeerRefusal(ResponseCode.IDENT_CODE_INVALID)  # not that node's connection
        await self._admit(peer_domain, link.peer_address)
        if not link.accepts_messages:
            raise PeerRefusal(ResponseCode.MESSAGE_REJECTED_BYUSER)
        if await self._blocks.is_blocked(
            link.owner_account_id, link.peer_address
        ):
            # Blocked: the answer an address we are not connected with gets.
            raise PeerRefusal(ResponseCode.IDENT_CODE_INVALID)
        codes = known.codes
        expected = openmsg.message_hash(
            request.message_package,
            codes.auth_code,
            request.message_salt,
            request.message_timestamp,
        )
        if not openmsg.hashes_match(expected, request.message_hash):
            raise PeerRefusal(ResponseCode.MESSAGE_HASH_INVALID)
        now = self._clock.now()
        if not openmsg.within_window(request.message_timestamp, int(now.timestamp())):
            raise PeerRefusal(ResponseCode.MESSAGE_EXPIRED)
        nonce = openmsg.b64url_encode(
            openmsg.b64url_decode(request.message_package)[: openmsg.NONCE_BYTES]
        )
        vouched = signed_by is not None or await self._vouched(
            peer_domain,
            "message-confirm",
            openmsg.MessageConfirmRequest(
                message_hash=request.message_hash, message_nonce=nonce
            ).to_wire(),
        )
        if not vouched:
            raise PeerRefusal(ResponseCode.MESSAGE_UNKNOWN)
        text, _ = openmsg.open_package(request.message_package, codes.key, max_chars=max_chars)
        if end_to_end:
            try:
                body = validate_encrypted_body(text)
            except InvalidInput:
                raise PeerRefusal(
                    ResponseCode.MESSAGE_DECRYPTION_ERROR, "Not an om.megolm.v1 body."
                ) from None
        extras = await self._envelope(request, signed_by, link, text)
        if not end_to_end:
            # The text is sealed to the recipient's devices before anything stores it.
            body = await self._sealer.seal_for(text, None, link.owner_address)
        stored = await self._receive_log(
            ReceivedMessage(
                message_id=MessageId(self._secrets.identifier()),
                conversation_id=link.conversation_id,
                recipient_account=link.owner_account_id,
                recipient=link.owner_address,
                sender=link.peer_address,
                nonce=nonce,
                body=body,
                sent_at=datetime.fromtimestamp(request.message_timestamp, UTC),
                encryption=Encryption.END_TO_END if end_to_end else Encryption.TRANSPORT,
                media_type=extras.media_type,
                metadata=extras.metadata,
                provenance=extras.provenance,
            )
        )
        if stored is None:
            raise PeerRefusal(ResponseCode.MESSAGE_NONCE_ERROR)
        if request.sending_openmsg_address_name is not None:
            await self._rename_peer(link, request.sending_openmsg_address_name)
        await self._bus.publish(stored.events)
        if self.webhooks is not None:
            await self.webhooks.enqueue(stored.events)
        return openmsg.message_accepted_body()

    async def _envelope(
        self,
        request: openmsg.MessageReceiveRequest,
        signed_by: Domain | None,
        link: OpenmsgLink,
        text: str,
    ) -> ReceivedEnvelope:
        """The media type, metadata and app tag that came with a message, checked:
        an app tag must carry the sending node's valid attestation, and the
        recipient must take messages from that app."""
        wire = getattr(request, "envelope", None)
        if wire is None or signed_by is None:
            return ReceivedEnvelope()
        try:
            checked = check_remote_envelope(wire, link.peer_address, link.owner_address, text)
        except InvalidInput as exc:
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, exc.reason) from None
        if checked.app is None:
            return ReceivedEnvelope(checked.media_type, checked.metadata)
        descriptor = await self._directory.descriptor(signed_by)
        if descriptor is None or not verify_ed25519(
            descriptor.signing_key, checked.attested_bytes(signed_by), checked.app.attestation
        ):
            raise PeerRefusal(ResponseCode.MESSAGE_REJECTED_PERM, "The app tag does not verify.")
        async with self._uow() as tx:
            accepted = await accepts_app(
                tx, link.owner_account_id, link.peer_address, checked.app.app_id
            )
        if not accepted:
            raise PeerRefusal(ResponseCode.MESSAGE_REJECTED_BYUSER)
        return ReceivedEnvelope(checked.media_type, checked.metadata, checked.provenance(signed_by))

    # --- a peer checks that we sent a message (message-confirm/) ----------------------------

    async def message_confirm(self, body: object) -> JsonObject:
        return await self._answer(self._message_confirm(body))

    async def _message_confirm(self, body: object) -> JsonObject:
        request = openmsg.parse_message_confirm_request(body)
        if not await self._confirm_lookup(request.message_hash, request.message_nonce):
            raise PeerRefusal(ResponseCode.MESSAGE_UNKNOWN)
        return openmsg.success_body()

    # --- shared -------------------------------------------------------------------------

    async def _answer(self, work: Awaitable[JsonObject]) -> JsonObject:
        """The endpoint's answer: its work's result, or the refusal it raised."""
        try:
            return await work
        except PeerRefusal as refusal:
            return openmsg.error_body(refusal.code, refusal.message)
        except openmsg.RemoteProtocolError as exc:
            return openmsg.error_body(exc.response_code, exc.message)

    async def _admit(
        self, domain: Domain, address: Address | None = None, *, handshake: bool = False
    ) -> None:
        code = await self._gate.refusal(domain, address, handshake=handshake)
        if code is not None:
            raise PeerRefusal(code)

    async def _post(self, domain: Domain, endpoint: str, body: JsonObject) -> PeerReply:
        try:
            return await self._transport.post_json(openmsg.endpoint_url(domain, endpoint), body)
        except PeerUnreachable as exc:
            log.info("%s/%s unreachable: %s", domain, endpoint, exc)
            raise PeerUnavailable(domain) from None

    async def _vouched(self, domain: Domain, endpoint: str, body: JsonObject) -> bool:
        """Ask ``domain`` to confirm a request that claims to come from it."""
        try:
            reply = await self._post(domain, endpoint, body)
        except PeerUnavailable:
            return False
        return reply.status == openmsg.ANSWER_HTTP_STATUS and openmsg.read_answer(reply.body).ok

    async def _store_connection(
        self,
        owner: Account,
        peer: Address,
        peer_name: str,
        codes: LinkCodes,
        *,
        accepts_messages: bool,
        peer_accepts_messages: bool,
    ) -> ConnectResult:
        """Create the connection (or renew its codes: a new handshake replaces them)."""
        now = self._clock.now()
        async with self._uow() as tx:
            contact = await tx.connections.get(owner.id, peer)
            created = contact is None
            if contact is None:
                conversation_id = ConversationId(self._secrets.identifier())
                await tx.connections.create_conversation(conversation_id, now)
                contact = Contact(
                    owner.id,
                    peer,
                    peer_name,
                    conversation_id,
                    now,
                    accepts_messages=accepts_messages,
                    peer_accepts_messages=peer_accepts_messages,
                )
                await tx.connections.add(contact)
            else:
                await tx.connections.update_remote(
                    owner.id,
                    peer,
                    display_name=peer_name,
                    accepts_messages=accepts_messages,
                    peer_accepts_messages=peer_accepts_messages,
                )
            await tx.federation.put_link(
                owner.id,
                peer,
                ident_hmac(self._secrets, codes.ident_code),
                codes.seal(self._secrets),
                now,
            )
            await tx.commit()
        self._links.forget(owner.id, peer)
        return ConnectResult(contact, created)

    async def _codes_of(self, owner: Account, peer: Address) -> LinkCodes | None:
        known = await self._links.of(owner.id, peer)
        return known.codes if known else None

    async def _rename_peer(self, link: OpenmsgLink, name: str) -> None:
        async with self._uow() as tx:
            await tx.connections.update_remote(
                link.owner_account_id, link.peer_address, display_name=name
            )
            await tx.commit()


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "The body is not JSON.") from None

