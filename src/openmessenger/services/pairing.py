"""Pass codes and connections: nobody reaches an address without a code its
owner issued. Every refusal looks the same from outside (``Refused``), and the
owner hears nothing of it. The guessing bound is in ``core/passcodes.py``."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from openmessenger.core import passcodes as rules
from openmessenger.core.errors import InvalidInput, LimitExceeded, NotFound, Refused
from openmessenger.core.ids import (
    Address,
    ConversationId,
    Domain,
    ParsedAddress,
    PassCodeId,
    parse_address,
)
from openmessenger.core.passcodes import CodeState
from openmessenger.core.records import Account, AuthenticatedDevice, Contact, PassCode
from openmessenger.services.ports import Clock, Secrets, Transaction, UnitOfWork

_CODE_PURPOSE = "pass-code"


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """The only moment the digits exist outside the owner's head: the node keeps an HMAC."""

    record: PassCode
    pass_code: str


@dataclass(frozen=True, slots=True)
class ConnectResult:
    contact: Contact
    created: bool
    """False when the two were already connected."""


class RemoteConnector(Protocol):
    """Starts a connection with an address on another node (Openmsg's handshake)."""

    async def connect(
        self, initiator: Account, target: ParsedAddress, pass_code: str, allow_replies: bool
    ) -> ConnectResult: ...


@dataclass(frozen=True, slots=True)
class Reservation:
    """A pass code that matched and is held for one initiator while its node is
    asked to vouch for the request; released if it does not."""

    target: Account
    code: PassCode


class PairingService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        remote: RemoteConnector | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self.remote = remote

    def _code_hmac(self, owner: Address, code: str) -> str:
        # The owner's address is in the HMAC, so equal digits of two owners differ.
        return self._secrets.hmac(_CODE_PURPOSE, f"{owner}\n{code}")

    async def issue(self, caller: AuthenticatedDevice, for_address: str | None) -> IssuedCode:
        owner = caller.account
        bound_to = parse_address(for_address, field="for").address if for_address else None
        if bound_to == owner.address:
            raise InvalidInput("for", "is your own address")
        now = self._clock.now()
        async with self._uow() as tx:
            await tx.codes.lock_owner(owner.id)
            live = await tx.codes.live(owner.id, now)
            if len(live) >= rules.MAX_LIVE_CODES:
                raise LimitExceeded(
                    f"At most {rules.MAX_LIVE_CODES} pass codes can be live at once; "
                    "withdraw one or wait for one to expire."
                )
            pool = bound_to or rules.OPEN_POOL
            if not any(_pool_of(c) == pool for c in live):
                await tx.codes.set_budget_spent(owner.id, pool, 0)  # a new period
            live_hmacs = {c.code_hmac for c in live}
            while True:  # two live codes of one owner never share digits
                digits = self._secrets.digits(rules.CODE_DIGITS)
                code_hmac = self._code_hmac(owner.address, digits)
                if code_hmac not in live_hmacs:
                    break
            record = PassCode(
                id=PassCodeId(self._secrets.identifier()),
                owner_account_id=owner.id,
                code_hmac=code_hmac,
                bound_to=bound_to,
                state=CodeState.LIVE,
                created_at=now,
                expires_at=now + timedelta(seconds=rules.CODE_TTL_SECONDS),
                used_by=None,
                used_at=None,
            )
            await tx.codes.add(record)
            await tx.commit()
        return IssuedCode(record, digits)

    async def list_codes(self, caller: AuthenticatedDevice) -> list[PassCode]:
        async with self._uow() as tx:
            return await tx.codes.list_for(caller.account.id)

    async def withdraw(self, caller: AuthenticatedDevice, code_id: str) -> None:
        now = self._clock.now()
        async with self._uow() as tx:
            live = await tx.codes.live(caller.account.id, now)
            if not any(c.id == code_id for c in live):
                raise NotFound("No live pass code with that id.")
            await tx.codes.set_state([PassCodeId(code_id)], CodeState.WITHDRAWN)
            await tx.commit()

    async def connect(
        self, caller: AuthenticatedDevice, address: str, pass_code: str, allow_replies: bool = True
    ) -> ConnectResult:
        """Redeem ``pass_code`` issued by ``address``: the one way to start a connection.

        ``allow_replies=False`` makes a one-way connection: the caller can send,
        the target cannot answer (Openmsg's ``sending_allow_replies``)."""
        parsed = parse_address(address)
        target_address = parsed.address
        initiator = caller.account
        if target_address == initiator.address:
            raise InvalidInput("address", "is your own address")
        if not rules.is_well_formed(pass_code):
            raise InvalidInput("pass_code", f"must be {rules.CODE_DIGITS} digits")
        if parsed.domain != self._domain:
            if self.remote is None:
                raise Refused()
            return await self.remote.connect(initiator, parsed, pass_code, allow_replies)
        now = self._clock.now()
        async with self._uow() as tx:
            target = await tx.accounts.by_address(target_address)
            if target is None:
                raise Refused()
            await tx.codes.lock_owner(target.id)
            match = await self._redeem(tx, target, initiator.address, pass_code, now)
            if match is None:
                await tx.commit()  # the spent budget and any withdrawals stand
                raise Refused()
            contact = await tx.connections.get(initiator.id, target.address)
            created = contact is None
            if contact is None:
                contact = await self._connect(tx, initiator, target, now, allow_replies)
            await tx.commit()
        return ConnectResult(contact, created)

    async def reserve(
        self, target_address: Address, initiator: Address, pass_code: str
    ) -> Reservation | None:
        """Check a pass code presented from another node, under the same guessing
        bound as a local one; a match is marked used by ``initiator`` at once, so
        it cannot be redeemed twice while that node is asked to vouch."""
        if not rules.is_well_formed(pass_code):
            return None
        now = self._clock.now()
        async with self._uow() as tx:
            target = await tx.accounts.by_address(target_address)
            if target is None:
                return None
            await tx.codes.lock_owner(target.id)
            match = await self._redeem(tx, target, initiator, pass_code, now)
            await tx.commit()
        return Reservation(target, match) if match is not None else None

    async def release(self, reservation: Reservation) -> None:
        """Give a reserved code back (its initiator's node did not vouch): an
        impostor's request must not burn the owner's code."""
        async with self._uow() as tx:
            await tx.codes.lock_owner(reservation.target.id)
            await tx.codes.set_state([reservation.code.id], CodeState.LIVE)
            await tx.commit()

    async def contacts(self, caller: AuthenticatedDevice) -> list[Contact]:
        async with self._uow() as tx:
            return await tx.connections.list_for(caller.account.id)

    async def _redeem(
        self, tx: Transaction, target: Account, initiator: Address, code: str, now: datetime
    ) -> PassCode | None:
        """Check ``code`` against the pools ``initiator`` may draw from, charging failures."""
        live = await tx.codes.live(target.id, now)
        pools: dict[str, list[PassCode]] = {rules.OPEN_POOL: [], initiator: []}
        for live_code in live:
            pool = _pool_of(live_code)
            if pool in pools:
                pools[pool].append(live_code)

        spent: dict[str, int] = {}
        for pool, codes in pools.items():
            spent[pool] = await tx.codes.budget_spent(target.id, pool)
            if rules.must_withdraw_before_check(spent[pool], len(codes)):
                await _withdraw(tx, codes)
                codes.clear()
                spent[pool] = 0

        wanted = self._code_hmac(target.address, code)
        for codes in pools.values():
            for candidate in codes:
                if hmac.compare_digest(candidate.code_hmac, wanted):
                    await tx.codes.set_state(
                        [candidate.id], CodeState.USED, used_by=initiator, at=now
                    )
                    return candidate

        for pool, codes in pools.items():
            after = rules.spend_after_failure(spent[pool], len(codes))
            await tx.codes.set_budget_spent(target.id, pool, after)
        return None

    async def connect_accounts(
        self, tx: Transaction, initiator: Account, target: Account, now: datetime
    ) -> Contact:
        """Connect two local accounts inside ``tx``, exactly as redeeming a pass code
        does (an accepted contact request, services/contact_requests.py); the
        initiator's side of the connection."""
        return await self._connect(tx, initiator, target, now, allow_replies=True)

    async def _connect(
        self,
        tx: Transaction,
        initiator: Account,
        target: Account,
        now: datetime,
        allow_replies: bool,
    ) -> Contact:
        conversation_id = ConversationId(self._secrets.identifier())
        await tx.connections.create_conversation(conversation_id, now)
        mine = Contact(
            initiator.id,
            target.address,
            target.display_name,
            conversation_id,
            now,
            accepts_messages=allow_replies,
        )
        theirs = Contact(
            target.id,
            initiator.address,
            initiator.display_name,
            conversation_id,
            now,
            peer_accepts_messages=allow_replies,
        )
        await tx.connections.add(mine)
        await tx.connections.add(theirs)
        return mine


def _pool_of(code: PassCode) -> str:
    return code.bound_to or rules.OPEN_POOL


async def _withdraw(tx: Transaction, codes: Sequence[PassCode]) -> None:
    await tx.codes.set_state([c.id for c in codes], CodeState.WITHDRAWN)
