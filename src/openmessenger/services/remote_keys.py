"""The keys of addresses on other nodes, for this node's devices.

Between our own nodes (the ``end-to-end`` capability) the sender's node asks
the recipient's node, in a signed request, for the devices and signed device
list of an address its account is connected with, and claims one-time keys
the same way. A node that speaks only Openmsg v1 has no keys to give: its
addresses are reached ``transport-encrypted``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import ValidationError

from openmessenger.core.envelope import Encryption
from openmessenger.core.errors import PeerUnavailable
from openmessenger.core.ids import Address, DeviceId, Domain, address_domain
from openmessenger.core.records import AddressKeys, ClaimedOneTimeKey, DevicePublicKeys
from openmessenger.protocol import openmsg
from openmessenger.services.peers import PeerDirectory
from openmessenger.services.ports import PeerUnreachable
from openmessenger.services.signed_requests import SignedRequests

log = logging.getLogger(__name__)


class FederatedKeyDirectory:
    """``RemoteKeyDirectory`` over signed extension requests."""

    def __init__(self, signed: SignedRequests, directory: PeerDirectory) -> None:
        self._signed = signed
        self._directory = directory

    async def query(self, requester: Address, address: Address) -> AddressKeys | None:
        domain = address_domain(address)
        end_to_end = await self.end_to_end(domain)
        if not end_to_end:
            return AddressKeys(address, (), None, Encryption.TRANSPORT)
        body = openmsg.KeysQueryRequest(requester=requester, address=address)
        answer = await self._ask(domain, openmsg.KEYS_QUERY_PATH, body.model_dump())
        try:
            keys = openmsg.KeysQueryAnswer.model_validate(answer)
        except ValidationError:
            log.info("keys of %s: %s answered something else", address, domain)
            return None
        if not keys.found:
            return None
        return AddressKeys(
            address=address,
            devices=tuple(
                DevicePublicKeys(DeviceId(d.device_id), d.ed25519_key, d.curve25519_key)
                for d in keys.devices
            ),
            device_list=keys.device_list.model_dump_json() if keys.device_list else None,
            encryption=Encryption.TRANSPORT if keys.transport_only else Encryption.END_TO_END,
        )

    async def end_to_end(self, domain: Domain) -> bool:
        """Whether ``domain``'s node takes end-to-end messages. PeerUnavailable when it
        cannot be asked: guessing "no" would send plain text to a node that takes them."""
        found = await self._directory.capability(domain, openmsg.END_TO_END)
        if found is None:
            raise PeerUnavailable(domain)
        return found

    async def claim(
        self, requester: Address, address: Address, devices: Sequence[DeviceId]
    ) -> dict[DeviceId, ClaimedOneTimeKey]:
        domain = address_domain(address)
        if not devices or not await self._directory.supports(domain, openmsg.END_TO_END):
            return {}
        body = openmsg.KeysClaimRequest(requester=requester, address=address, devices=list(devices))
        answer = await self._ask(domain, openmsg.KEYS_CLAIM_PATH, body.model_dump())
        try:
            claimed = openmsg.KeysClaimAnswer.model_validate(answer)
        except ValidationError:
            return {}
        return {
            DeviceId(device): ClaimedOneTimeKey(key.key_id, key.key, key.signature, key.fallback)
            for device, key in claimed.one_time_keys.items()
            if device in devices
        }

    async def _ask(self, domain: Domain, path: str, body: openmsg.JsonObject) -> object:
        try:
            reply = await self._signed.post(domain, path, body)
        except PeerUnreachable as exc:
            raise PeerUnavailable(domain) from exc
        return reply.body
