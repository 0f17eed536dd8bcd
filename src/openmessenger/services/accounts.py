"""Profile of the calling account: who am I, and what name do others see."""

from __future__ import annotations

from dataclasses import replace

from openmessenger.core.ids import validate_display_name
from openmessenger.core.records import Account, AuthenticatedDevice
from openmessenger.services.ports import UnitOfWork


class AccountService:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def profile(self, caller: AuthenticatedDevice) -> Account:
        """The caller's account as stored now (the authenticated copy may be a minute old)."""
        async with self._uow() as tx:
            account = await tx.accounts.get(caller.account.id)
        return account or caller.account

    async def set_display_name(self, caller: AuthenticatedDevice, display_name: str) -> Account:
        name = validate_display_name(display_name)
        account = caller.account
        async with self._uow() as tx:
            await tx.accounts.set_display_name(account.id, name)
            await tx.commit()
        return replace(account, display_name=name)
