"""Reading for a plain-HTTP app: the node opens what was sealed to its device.

A node-held app device has a sealing key derived from its grant's key; the
node seals transport-encrypted text to it like to any device, and opens it
again only when that app asks (sync, history, stream, webhook). End-to-end
bodies stay as they are: the node cannot open them, and nor can the app
without a device of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pydantic import ValidationError

from openmessenger.core.envelope import Encryption, Message
from openmessenger.core.records import Device
from openmessenger.crypto.app_keys import node_held_device
from openmessenger.crypto.sealing import SealingError, SealingKeyPair
from openmessenger.protocol.e2e import SealedBody
from openmessenger.services.ports import GrantKeyStore, UnitOfWork


class NodeHeldReader:
    def __init__(self, uow: UnitOfWork, grant_keys: GrantKeyStore) -> None:
        self._uow = uow
        self._grant_keys = grant_keys

    async def readable(self, device: Device, messages: Sequence[Message]) -> list[Message]:
        """``messages`` as ``device`` reads them: opened when it is node-held."""
        if not device.node_held or device.app_id is None:
            return list(messages)
        pair = await self._sealing_pair(device)
        return [self._open(pair, device, m) for m in messages]

    async def _sealing_pair(self, device: Device) -> SealingKeyPair | None:
        assert device.app_id is not None
        async with self._uow() as tx:
            grant = await tx.apps.grant(device.account_id, device.app_id)
        key = self._grant_keys.key(grant.key_id) if grant is not None else None
        return node_held_device(key).sealing if key is not None else None

    @staticmethod
    def _open(pair: SealingKeyPair | None, device: Device, message: Message) -> Message:
        if pair is None or message.encryption is not Encryption.TRANSPORT:
            return message
        try:
            sealed = SealedBody.model_validate_json(message.body)
        except ValidationError:
            return message  # stored before sealing existed: plain already
        try:
            return replace(message, body=pair.open(sealed, device.id))
        except SealingError:
            return replace(message, body="")  # not sealed to this device (sent before it joined)
