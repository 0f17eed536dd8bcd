"""Preferences: set and clear one at one level, and read the effective values for
a context (a contact or a conversation, and the calling device). The rules of
levels, values and precedence are in ``core/preferences.py``; ``accept_apps``
is the app allowlist of services/apps.py, read and written through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from openmessenger.core.errors import Forbidden, InvalidInput, NotFound
from openmessenger.core.ids import AccountId, Address, ConversationId, parse_address
from openmessenger.core.preferences import (
    AcceptRequests,
    Effective,
    Level,
    Name,
    PreferenceValue,
    check_level,
    decode,
    encode,
    parse_level,
    parse_name,
    parse_value,
    resolve,
    resolve_all,
)
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.services.apps import AppService
from openmessenger.services.ports import Clock, Transaction, UnitOfWork

ACCOUNT_SCOPE = ""
MAX_CONVERSATION_ID = 64

_PERSON_ONLY = frozenset({Name.ACCEPT_REQUESTS, Name.ACCEPT_APPS})
"""Who may reach the person is the person's choice, never an app's acting for them."""


@dataclass(frozen=True, slots=True)
class Context:
    """Where preferences are read or set: the calling device, and a contact or a
    conversation (a 1:1 conversation brings its contact)."""

    device_id: str
    contact: Address | None = None
    conversation: ConversationId | None = None


@dataclass(frozen=True, slots=True)
class EffectivePreferences:
    context: Context
    preferences: list[Effective]


@dataclass(frozen=True, slots=True)
class Target:
    """One level of one preference to set or clear."""

    name: Name
    level: Level
    scope: str
    contact: Address | None


class PreferenceService:
    def __init__(self, uow: UnitOfWork, clock: Clock, apps: AppService) -> None:
        self._uow = uow
        self._clock = clock
        self._apps = apps

    async def effective(
        self,
        caller: AuthenticatedDevice,
        *,
        contact: str | None = None,
        conversation: str | None = None,
        name: str | None = None,
    ) -> EffectivePreferences:
        """Every preference (or ``name``), with the level its value came from."""
        wanted = parse_name(name) if name is not None else None
        if contact is not None and conversation is not None:
            raise InvalidInput("conversation", "give a contact or a conversation, not both")
        account = caller.account.id
        async with self._uow() as tx:
            peer = await self._contact(tx, account, contact) if contact is not None else None
            conversation_id = None
            if conversation is not None:
                conversation_id, peer = await self._conversation(tx, account, conversation)
            context = Context(caller.device.id, peer, conversation_id)
            raw = await tx.preferences.stored(account, _scopes(context))
            allowlists = await tx.apps.allowlists(account, peer)
        set_at = {
            name_: {level: decode(name_, value) for level, value in levels.items()}
            for name_, levels in raw.items()
        }
        apps_at: dict[Level, PreferenceValue] = {}
        if None in allowlists:
            apps_at[Level.ACCOUNT] = list(allowlists[None])
        if peer is not None and peer in allowlists:
            apps_at[Level.CONTACT] = list(allowlists[peer])
        set_at[Name.ACCEPT_APPS] = apps_at
        found = resolve_all(set_at)
        if wanted is not None:
            found = [e for e in found if e.name is wanted]
        return EffectivePreferences(context, found)

    async def set(
        self,
        caller: AuthenticatedDevice,
        name: str,
        value: object,
        *,
        level: str,
        contact: str | None = None,
        conversation: str | None = None,
    ) -> Effective:
        """Set ``name`` at one level; answers what was stored there."""
        target = await self._target(caller, name, level, contact, conversation)
        checked = parse_value(target.name, value)
        if target.name is Name.ACCEPT_APPS:
            stored = await self._apps.set_allowlist(
                caller, target.contact, checked if isinstance(checked, list) else None
            )
            allowed = list(stored) if stored is not None else None
            return Effective(target.name, allowed, target.level.value)
        async with self._uow() as tx:
            await tx.preferences.put(
                caller.account.id,
                target.level,
                target.scope,
                target.name,
                encode(checked),
                self._clock.now(),
            )
            await tx.commit()
        return Effective(target.name, checked, target.level.value)

    async def clear(
        self,
        caller: AuthenticatedDevice,
        name: str,
        *,
        level: str,
        contact: str | None = None,
        conversation: str | None = None,
    ) -> None:
        """Unset ``name`` at one level (a wider level, or the default, applies again)."""
        target = await self._target(caller, name, level, contact, conversation)
        if target.name is Name.ACCEPT_APPS:
            await self._apps.set_allowlist(caller, target.contact, None)
            return
        async with self._uow() as tx:
            await tx.preferences.clear(caller.account.id, target.level, target.scope, target.name)
            await tx.commit()

    async def _target(
        self,
        caller: AuthenticatedDevice,
        name: str,
        level: str,
        contact: str | None,
        conversation: str | None,
    ) -> Target:
        checked_name = parse_name(name)
        checked_level = parse_level(level)
        check_level(checked_name, checked_level)
        if checked_name in _PERSON_ONLY and caller.device.app_id is not None:
            raise Forbidden(
                "Only the person's own devices may do this, not an app acting for them.",
                code="not_for_apps",
            )
        if contact is not None and checked_level is not Level.CONTACT:
            raise InvalidInput("contact", "is given with level contact only")
        if conversation is not None and checked_level is not Level.CONVERSATION:
            raise InvalidInput("conversation", "is given with level conversation only")
        account = caller.account.id
        match checked_level:
            case Level.ACCOUNT:
                return Target(checked_name, checked_level, ACCOUNT_SCOPE, None)
            case Level.DEVICE:
                return Target(checked_name, checked_level, caller.device.id, None)
            case Level.CONTACT:
                if contact is None:
                    raise InvalidInput("contact", "is required with level contact")
                async with self._uow() as tx:
                    peer = await self._contact(tx, account, contact)
                return Target(checked_name, checked_level, peer, peer)
            case Level.CONVERSATION:
                if conversation is None:
                    raise InvalidInput("conversation", "is required with level conversation")
                async with self._uow() as tx:
                    conversation_id, _ = await self._conversation(tx, account, conversation)
                return Target(checked_name, checked_level, conversation_id, None)

    async def _contact(self, tx: Transaction, account: AccountId, contact: str) -> Address:
        peer = parse_address(contact, field="contact").address
        if await tx.connections.get(account, peer) is None:
            raise NotFound("No such contact.", code="contact_not_found")
        return peer

    async def _conversation(
        self, tx: Transaction, account: AccountId, conversation: str
    ) -> tuple[ConversationId, Address | None]:
        if not conversation or len(conversation) > MAX_CONVERSATION_ID:
            raise InvalidInput("conversation", "is not a conversation id")
        conversation_id = ConversationId(conversation)
        member, peer = await tx.preferences.conversation_peer(account, conversation_id)
        if not member:
            raise NotFound("No such conversation.", code="conversation_not_found")
        return conversation_id, peer


def _scopes(context: Context) -> list[tuple[Level, str]]:
    scopes = [(Level.ACCOUNT, ACCOUNT_SCOPE), (Level.DEVICE, context.device_id)]
    if context.contact is not None:
        scopes.append((Level.CONTACT, context.contact))
    if context.conversation is not None:
        scopes.append((Level.CONVERSATION, context.conversation))
    return scopes


async def accept_requests_of(tx: Transaction, account: AccountId) -> AcceptRequests:
    """Whether, and from whom, the account takes contact requests (account level only)."""
    raw = await tx.preferences.stored(account, [(Level.ACCOUNT, ACCOUNT_SCOPE)])
    levels = raw.get(Name.ACCEPT_REQUESTS, {})
    value = resolve(
        Name.ACCEPT_REQUESTS,
        {level: decode(Name.ACCEPT_REQUESTS, v) for level, v in levels.items()},
    ).value
    return AcceptRequests(str(value))
