"""The port of contact requests across nodes (services/contact_requests.py,
services/request_federation.py); ``Transaction`` in ports.py exposes it as
``remote_requests``. Implemented in storage/request_federation.py."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from openmessenger.core.contact_requests import RemoteContactRequest, RequestState
from openmessenger.core.ids import AccountId, Address


class RemoteRequestRepository(Protocol):
    # --- on the target's node: requests from addresses on other nodes -----------

    async def between(self, target: AccountId, sender: Address) -> RemoteContactRequest | None:
        """The pair's request in any state (a declined one too)."""
        ...

    async def add(self, request: RemoteContactRequest) -> bool:
        """False when the pair has a row already (a request raced this one)."""
        ...

    async def pending_for(self, target: AccountId) -> list[RemoteContactRequest]: ...

    async def get(self, target: AccountId, request_id: str) -> RemoteContactRequest | None: ...

    async def decide(self, request_id: str, state: RequestState, now: datetime) -> bool:
        """Settle a pending request; False if it was not pending any more."""
        ...

    async def settle(self, request_id: str) -> None:
        """An accept went through: the note goes, the row stays."""
        ...

    async def reopen(self, request_id: str) -> None:
        """Back to pending (an accept that could not reach the sender's node)."""
        ...

    async def forget(self, request_id: str) -> None: ...

    async def drop_pending_from(self, target: AccountId, sender: Address) -> None: ...

    # --- on the sender's node: requests its accounts sent to other nodes ---------

    async def put_outgoing(self, sender: AccountId, target: Address, now: datetime) -> None:
        """Remember (again) that ``sender`` asked ``target`` to connect."""
        ...

    async def has_outgoing(self, sender: AccountId, target: Address) -> bool: ...

    async def drop_outgoing(self, sender: AccountId, target: Address) -> None: ...
