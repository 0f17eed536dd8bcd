"""The federation outbox: messages to addresses on other nodes, sent over
Openmsg v1 until the receiving node takes them, or until the give-up time.

A send writes the message and its outbox entry in one transaction; the sender
is woken at once and posts ``message-receive/``. An answer of SM_S888 means
delivered; SM_E007 too (the receiver already has this package, from an
attempt whose answer we never saw). Unreachable peers and temporary refusals
are retried with exponential backoff; a retry later than v1's 60-second window
carries a fresh salt, timestamp and hash over the same package (same nonce).
Entries are leased, so several processes never send one message at once, and a
restart picks up whatever was not settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from openmessenger.core.envelope import Encryption, Message, OutboundSeal
from openmessenger.core.errors import InvalidInput, Refused
from openmessenger.core.ids import AccountId, Domain, MessageId, address_domain
from openmessenger.core.records import OutboxItem, OutboxOutcome, OutboxVerdict
from openmessenger.protocol import openmsg
from openmessenger.protocol.e2e import MAX_ENCRYPTED_BODY_CHARS
from openmessenger.protocol.openmsg import ResponseCode
from openmessenger.services.federation_gate import FederationGate
from openmessenger.services.links import LinkCodes, Links
from openmessenger.services.peers import PeerDirectory
from openmessenger.services.ports import (
    Clock,
    FederationTransport,
    PeerUnreachable,
    Secrets,
    UnitOfWork,
)
from openmessenger.services.signed_requests import SignedRequests

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
_LEASE = timedelta(seconds=120)
# A hash this close to the end of its window is renewed before it is sent.
_FRESH_MARGIN_SECONDS = 15
_DELIVERED = frozenset({ResponseCode.SUCCESS, ResponseCode.MESSAGE_NONCE_ERROR})
# Answers no retry can change: the receiver has refused this message for good.
_FINAL_REFUSALS = frozenset(
    {
        ResponseCode.IDENT_CODE_INVALID,
        ResponseCode.MESSAGE_REJECTED_BYUSER,
        ResponseCode.MESSAGE_HASH_INVALID,
        ResponseCode.MESSAGE_DECRYPTION_ERROR,
        ResponseCode.MESSAGE_REJECTED_PERM,
    }
)


_TEXT_PURPOSE = "outbox-text"


def backoff_seconds(attempts: int, rng: random.Random) -> float:
    """1 s, 2 s, 4 s ... up to five minutes, each ±20 % so retries spread out."""
    # The exponent is capped: 2 ** 9 s is past the cap already, and a float
    # power of a large attempt count would overflow.
    base = min(MAX_BACKOFF_SECONDS, 2.0 ** min(max(0, attempts - 1), 16))
    return base * rng.uniform(0.8, 1.2)


class OutboxSender:
    def __init__(
        self,
        *,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        transport: FederationTransport,
        gate: FederationGate,
        give_up_after: timedelta,
        domain: Domain,
        directory: PeerDirectory,
        links: Links,
        batch: int = 256,
        poll_seconds: float = 1.0,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._transport = transport
        self._gate = gate
        self._give_up_after = give_up_after
        self._domain = domain
        self._directory = directory
        self._links = links
        self._signed = SignedRequests(
            secrets=secrets, clock=clock, domain=domain, transport=transport
        )
        self._batch = batch
        self._poll_seconds = poll_seconds
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret
        self._wake = asyncio.Event()
        self._in_flight: dict[str, str] = {}  # nonce -> hash being sent right now
        self._attempts: set[asyncio.Task[None]] = set()
        self._sending: set[MessageId] = set()
        self._settling: list[OutboxOutcome] = []
        self._settler: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[None] | None = None

    # --- what the messaging service calls ----------------------------------------

    async def seal(
        self, recipient_domain: Domain, body: str, *, end_to_end: bool = False
    ) -> OutboundSeal:
        """The Openmsg seal of a new message to ``recipient_domain``. ``body`` is the
        text, or with ``end_to_end`` an om.megolm.v1 body (only to a node that takes it)."""
        if await self._gate.is_blocked(recipient_domain):
            raise Refused()
        if end_to_end:
            if not await self._directory.supports(recipient_domain, openmsg.END_TO_END):
                raise InvalidInput(
                    "encryption",
                    f"{recipient_domain} does not take end-to-end messages: send plain text, "
                    "which is transport-encrypted",
                )
        elif len(body) > openmsg.MAX_MESSAGE_TEXT_CHARS and not await self._directory.supports(
            recipient_domain, openmsg.LONG_TEXT
        ):
            raise InvalidInput(
                "body",
                f"must be at most {openmsg.MAX_MESSAGE_TEXT_CHARS} characters: "
                f"{recipient_domain} speaks Openmsg v1 only",
            )
        now = self._clock.now()
        return OutboundSeal(
            nonce=openmsg.b64url_encode(openmsg.new_message_nonce()),
            salt=openmsg.new_message_salt(),
            attempt_ts=int(now.timestamp()),
            give_up_at=now + self._give_up_after,
            lease_until=now + _LEASE,
            # The stored message holds the text sealed to devices; the outbox keeps
            # it sealed under the node secret until delivery needs it no more.
            sealed_plaintext=None if end_to_end else self._secrets.seal(_TEXT_PURPOSE, body),
        )

    def notify(self, message: Message, sender_account: AccountId, seal: OutboundSeal) -> None:
        """A message just joined the outbox, leased to this process: send it now
        (no read of the outbox: everything it takes is at hand)."""
        self._spawn(
            OutboxItem(
                message_id=message.id,
                owner_account_id=sender_account,
                sender=message.sender,
                peer_address=message.recipient,
                body=message.body,
                sealed_plaintext=seal.sealed_plaintext,
                encryption=message.encryption,
                nonce=seal.nonce,
                salt=seal.salt,
                attempt_ts=seal.attempt_ts,
                attempts=1,
                give_up_at=seal.give_up_at,
                sealed_link=None,
                sender_device=message.sender_device,
                sent_at=message.sent_at,
                media_type=message.media_type,
                metadata=message.metadata,
                provenance=message.provenance,
            )
        )

    def kick(self) -> None:
        """Look for due messages now (after the clock moved)."""
        self._wake.set()

    async def is_ours(self, message_hash: str, nonce: str) -> bool:
        """``message-confirm/``: is this the hash of one of our messages in its window?"""
        in_flight = self._in_flight.get(nonce)
        if in_flight is not None:
            return openmsg.hashes_match(in_flight, message_hash)
        async with self._uow() as tx:  # sent by another process of this node
            item = await tx.federation.outbox_by_nonce(nonce)
        codes = await self._codes(item) if item is not None else None
        if item is None or codes is None:
            return False
        now = int(self._clock.now().timestamp())
        return openmsg.within_window(item.attempt_ts, now) and openmsg.hashes_match(
            self._hash(item, codes), message_hash
        )

    # --- the loop -----------------------------------------------------------------

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="openmsg-outbox")

    async def stop(self) -> None:
        tasks = [t for t in (self._runner, *self._attempts) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None
        # Attempts cut short are due again at once, not when their lease runs out.
        now = self._clock.now()
        self._settling += [
            OutboxOutcome(message_id, OutboxVerdict.RETRY, now) for message_id in self._sending
        ]
        self._sending.clear()
        if self._settling:
            await self._settle_now()

    async def _run(self) -> None:
        while True:
            try:
                claimed = await self._claim()
            except Exception:
                log.exception("reading the outbox failed")
                claimed = []
            for item in claimed:
                self._spawn(item)
            if len(claimed) == self._batch:
                continue  # more may be due
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)

    def _spawn(self, item: OutboxItem) -> None:
        task = asyncio.create_task(self._attempt(item))
        self._attempts.add(task)
        task.add_done_callback(self._attempts.discard)

    async def _claim(self) -> list[OutboxItem]:
        """Retries that are due, and messages whose sender stopped before settling them."""
        now = self._clock.now()
        async with self._uow() as tx:
            items = await tx.federation.claim_due(now, now + _LEASE, self._batch)
            await tx.commit()
        return items

    async def _attempt(self, item: OutboxItem) -> None:
        self._sending.add(item.message_id)
        try:
            outcome = await self._send(item)
        except Exception:
            log.exception("sending message %s failed unexpectedly", item.message_id)
            outcome = self._retry(item)
        self._sending.discard(item.message_id)
        self._settling.append(outcome)
        if self._settler is None or self._settler.done():
            self._settler = asyncio.create_task(self._settle_soon())

    async def _send(self, item: OutboxItem) -> OutboxOutcome:
        now = self._clock.now()
        codes = await self._codes(item)
        if codes is None or now >= item.give_up_at:
            return OutboxOutcome(item.message_id, OutboxVerdict.FAILED)
        peer_domain = address_domain(item.peer_address)
        if await self._gate.is_blocked(peer_domain):
            return OutboxOutcome(item.message_id, OutboxVerdict.FAILED)
        now_ts = int(now.timestamp())
        if now_ts - item.attempt_ts > openmsg.MESSAGE_WINDOW_SECONDS - _FRESH_MARGIN_SECONDS:
            item = await self._renew(item, now_ts)
        text = self._text(item)
        end_to_end = item.encryption is Encryption.END_TO_END
        # The envelope beyond v1 goes to our nodes only; a v1 peer gets the text alone.
        envelope = None
        if item.has_envelope:
            takes = await self._directory.capability(peer_domain, openmsg.ENVELOPE)
            if takes is None:
                return self._retry(item)  # cannot tell yet: never strip a tag by guessing
            envelope = _wire_envelope(item) if takes else None
        long = end_to_end or envelope is not None or len(text) > openmsg.MAX_MESSAGE_TEXT_CHARS
        package = self._package(item, codes, text)
        message_hash = self._hash(item, codes, package)
        receiver_id = item.peer_address.split("*", 1)[0]
        request: openmsg.MessageReceiveRequest
        if long:
            request = openmsg.LongMessageReceiveRequest(
                receiving_openmsg_address_id=receiver_id,
                ident_code=codes.ident_code,
                message_package=package,
                message_hash=message_hash,
                message_salt=item.salt,
                message_timestamp=item.attempt_ts,
                end_to_end=end_to_end,
                envelope=envelope,
            )
        else:
            request = openmsg.MessageReceiveRequest(
                receiving_openmsg_address_id=receiver_id,
                ident_code=codes.ident_code,
                message_package=package,
                message_hash=message_hash,
                message_salt=item.salt,
                message_timestamp=item.attempt_ts,
            )
        self._in_flight[item.nonce] = message_hash
        try:
            if long:
                reply = await self._signed.post(
                    peer_domain, openmsg.LONG_MESSAGE_PATH, request.to_wire()
                )
            else:
                reply = await self._transport.post_json(
                    openmsg.endpoint_url(peer_domain, "message-receive"), request.to_wire()
                )
        except PeerUnreachable as exc:
            log.info("message %s: %s unreachable (%s)", item.message_id, peer_domain, exc)
            return self._retry(item)
        finally:
            self._in_flight.pop(item.nonce, None)
        answer = openmsg.read_answer(reply.body)
        if reply.status != openmsg.ANSWER_HTTP_STATUS:
            return self._retry(item)
        if answer.ok or answer.response_code in _DELIVERED:
            return OutboxOutcome(item.message_id, OutboxVerdict.DELIVERED)
        log.info("message %s refused by %s: %s", item.message_id, peer_domain, answer.response_code)
        if answer.response_code in _FINAL_REFUSALS:
            return OutboxOutcome(item.message_id, OutboxVerdict.FAILED)
        return self._retry(item)

    async def _codes(self, item: OutboxItem) -> LinkCodes | None:
        """The connection's codes; None when it is gone (the message cannot go)."""
        if item.sealed_link is not None:
            return LinkCodes.unseal(self._secrets, item.sealed_link)
        known = await self._links.of(item.owner_account_id, item.peer_address)
        return known.codes if known else None

    def _text(self, item: OutboxItem) -> str:
        """What the peer receives: the text the outbox keeps sealed until delivery."""
        if item.sealed_plaintext is None:
            return item.body
        return self._secrets.unseal(_TEXT_PURPOSE, item.sealed_plaintext)

    def _package(self, item: OutboxItem, codes: LinkCodes, text: str | None = None) -> str:
        # The same package at every attempt: same key, nonce and text.
        if text is None:
            text = self._text(item)
        if item.encryption is Encryption.END_TO_END:
            max_chars = MAX_ENCRYPTED_BODY_CHARS
        elif len(text) > openmsg.MAX_MESSAGE_TEXT_CHARS:
            max_chars = openmsg.LONG_TEXT_MAX_CHARS
        else:
            max_chars = openmsg.MAX_MESSAGE_TEXT_CHARS
        return openmsg.package_message(
            text, codes.key, openmsg.b64url_decode(item.nonce), max_chars=max_chars
        )

    def _hash(self, item: OutboxItem, codes: LinkCodes, package: str | None = None) -> str:
        if package is None:
            package = self._package(item, codes)
        return openmsg.message_hash(package, codes.auth_code, item.salt, item.attempt_ts)

    async def _renew(self, item: OutboxItem, now_ts: int) -> OutboxItem:
        """A fresh salt and timestamp, stored before use so that our answer to
        the receiver's ``message-confirm/`` finds them (any process)."""
        salt = openmsg.new_message_salt()
        async with self._uow() as tx:
            await tx.federation.refresh_attempt(item.message_id, salt, now_ts)
            await tx.commit()
        return replace(item, salt=salt, attempt_ts=now_ts)

    def _retry(self, item: OutboxItem) -> OutboxOutcome:
        now = self._clock.now()
        if now >= item.give_up_at:
            return OutboxOutcome(item.message_id, OutboxVerdict.FAILED)
        delay = timedelta(seconds=backoff_seconds(item.attempts, self._rng))
        # The last attempt falls on the give-up time; failing there is then final.
        return OutboxOutcome(
            item.message_id, OutboxVerdict.RETRY, min(now + delay, item.give_up_at)
        )

    async def _settle_soon(self) -> None:
        # Outcomes that arrive while a settle is being written go in the next one.
        while self._settling:
            await asyncio.sleep(0)
            await self._settle_now()

    async def _settle_now(self) -> None:
        batch, self._settling = self._settling, []
        try:
            await self._write(batch)
        except Exception:
            log.exception("recording %d outbox outcomes failed; the leases expire", len(batch))

    async def _write(self, outcomes: Sequence[OutboxOutcome]) -> None:
        async with self._uow() as tx:
            await tx.federation.settle(outcomes)
            await tx.commit()


def _wire_envelope(item: OutboxItem) -> openmsg.Envelope:
    tag = item.provenance
    assert item.sent_at is not None
    return openmsg.Envelope(
        message_id=item.message_id,
        sender_device=item.sender_device,
        sent_at=int(item.sent_at.timestamp()),
        media_type=item.media_type,
        metadata=json.loads(item.metadata) if item.metadata else None,
        app=openmsg.AppTag(
            app_id=tag.app_id,
            app_key=tag.app_key,
            attestation=tag.attestation,
            app_signature=tag.app_signature,
        )
        if tag is not None
        else None,
    )
