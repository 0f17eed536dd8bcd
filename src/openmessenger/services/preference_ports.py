"""The ports of preferences, contact requests and blocks (services/preferences.py,
services/contact_requests.py, services/blocks.py); ``Transaction`` in ports.py
exposes them. Implemented in storage/preferences.py."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from openmessenger.core.contact_requests import ContactRequest, RequestState
from openmessenger.core.ids import AccountId, Address, ConversationId
from openmessenger.core.preferences import Level, Name


class PreferenceRepository(Protocol):
    async def stored(
        self, account_id: AccountId, scopes: Iterable[tuple[Level, str]]
    ) -> dict[Name, dict[Level, str]]:
        """The JSON values set at each (level, scope key): "" for the account,
        the contact's address, the device id, the conversation id."""
        ...

    async def put(
        self, account_id: AccountId, level: Level, scope: str, name: Name, value: str, now: datetime
    ) -> None: ...

    async def clear(self, account_id: AccountId, level: Level, scope: str, name: Name) -> bool: ...

    async def conversation_peer(
        self, account_id: AccountId, conversation_id: ConversationId
    ) -> tuple[bool, Address | None]:
        """(the account takes part in the conversation, its 1:1 peer if it is one)."""
        ...


class ContactRequestRepository(Protocol):
    async def between(self, target: AccountId, sender: AccountId) -> ContactRequest | None: ...

    async def add(self, request: ContactRequest) -> bool:
        """False when the pair has a row already."""
        ...

    async def pending_for(self, target: AccountId) -> list[ContactRequest]: ...

    async def get(self, target: AccountId, request_id: str) -> ContactRequest | None: ...

    async def decide(self, request_id: str, state: RequestState, now: datetime) -> bool:
        """False if it was not pending any more."""
        ...

    async def drop_pending_from(self, target: AccountId, sender: Address) -> None: ...


class BlockRepository(Protocol):
    async def add(self, account_id: AccountId, address: Address, now: datetime) -> bool: ...

    async def remove(self, account_id: AccountId, address: Address) -> bool: ...

    async def list_for(self, account_id: AccountId) -> list[tuple[Address, datetime]]: ...

    async def is_blocked(self, account_id: AccountId, address: Address) -> bool: ...

    async def blockers(
        self, account_ids: Iterable[AccountId], address: Address
    ) -> set[AccountId]:
        """Which of ``account_ids`` blocked ``address`` (one query)."""
        ...
