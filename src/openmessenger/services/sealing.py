"""Sealing text the node had to see, so that no plain text is ever at rest.

A plain-text send from a client, and every message from an Openmsg v1 peer,
reach the node readable. Before storing one, the node seals it to the sealing
keys of the devices that will read it (the recipient account's and the
sender account's), and marks it ``transport-encrypted``. The node forgets the
text once sealed; only those devices can open the stored body. Once an account
has a signed device list, only the devices it names are sealed to: a device
added behind the account's back (with a stolen token, say) reads nothing.
"""

from __future__ import annotations

from openmessenger.core.ids import AccountId, Address, DeviceId
from openmessenger.crypto.sealing import seal
from openmessenger.protocol.e2e import SignedDeviceList
from openmessenger.services.ports import Transaction, UnitOfWork


class BodySealer:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def seal_for(
        self, text: str, sender_account: AccountId | None, recipient: Address | None
    ) -> str:
        """``text`` sealed to the devices of ``sender_account`` and of the local
        account at ``recipient`` (either may be None: a remote side)."""
        async with self._uow() as tx:
            accounts = [sender_account] if sender_account is not None else []
            if recipient is not None:
                account = await tx.accounts.by_address(recipient)
                if account is not None:
                    accounts.append(account.id)
            keys = await tx.keys.sealing_keys(accounts)
            recipients: dict[DeviceId, str] = {}
            for account_id, devices in keys.items():
                signed = await _signed_devices(tx, account_id)
                recipients.update(
                    (d, k) for d, k in devices.items() if signed is None or d in signed
                )
        return seal(text, {str(d): k for d, k in recipients.items()}).model_dump_json()


async def _signed_devices(tx: Transaction, account_id: AccountId) -> set[DeviceId] | None:
    """The devices the account's signed list names; None before it has one."""
    stored = await tx.keys.account_keys(account_id)
    if stored is None:
        return None
    listed = SignedDeviceList.model_validate_json(stored.device_list).list.devices
    return {DeviceId(d.device_id) for d in listed}
