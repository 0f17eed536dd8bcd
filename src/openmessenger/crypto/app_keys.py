"""Keys of the app gateway: app keys, and the keys of node-held app devices.

An app signs its messages with an Ed25519 app key. A plain-HTTP app lets the
node hold its device's keys; they are derived (HKDF-SHA256) from the app
grant's key, so destroying that key (deleting the app's data for the account)
destroys them as well, and nothing else about them is ever written down.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import vodozemac
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from openmessenger.crypto.keys import decode_base64_key
from openmessenger.crypto.sealing import SealingKeyPair
from openmessenger.protocol.e2e import sealing_key_signed_bytes

SEED_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True, slots=True)
class AppKeyPair:
    seed: str = field(repr=False)
    """The private seed, base64: shown to the app once, never stored by the node."""
    public_key: str

    @classmethod
    def generate(cls) -> AppKeyPair:
        signer = SigningKey.generate()
        return cls(_b64(bytes(signer)), _b64(bytes(signer.verify_key)))


def sign_with_seed(seed: str, message: bytes) -> str:
    """An Ed25519 signature (base64) with the key of ``seed`` (base64, 32 bytes)."""
    raw = decode_base64_key(seed, SEED_BYTES)
    if raw is None:
        raise ValueError("an app key seed is 32 bytes in base64")
    return _b64(SigningKey(raw).sign(message).signature)


def public_key_of_seed(seed: str) -> str:
    raw = decode_base64_key(seed, SEED_BYTES)
    if raw is None:
        raise ValueError("an app key seed is 32 bytes in base64")
    return _b64(bytes(SigningKey(raw).verify_key))


@dataclass(frozen=True, slots=True)
class NodeHeldDevice:
    """The public keys of a node-held device, and the sealing key it opens with."""

    ed25519_key: str
    curve25519_key: str
    sealing: SealingKeyPair

    def sealing_key_signature(self, device_id: str, grant_key: bytes) -> str:
        signer = SigningKey(_derive(grant_key, b"node-held device ed25519"))
        signed = sealing_key_signed_bytes(device_id, self.sealing.public_key)
        return _b64(signer.sign(signed).signature).rstrip("=")  # as vodozemac writes them


def node_held_device(grant_key: bytes) -> NodeHeldDevice:
    signer = SigningKey(_derive(grant_key, b"node-held device ed25519"))
    curve = PrivateKey(_derive(grant_key, b"node-held device curve25519"))
    sealing_secret = vodozemac.Curve25519SecretKey.from_bytes(
        _derive(grant_key, b"node-held device sealing")
    )
    return NodeHeldDevice(
        ed25519_key=_b64(bytes(signer.verify_key)),
        curve25519_key=_b64(bytes(curve.public_key)),
        sealing=SealingKeyPair(sealing_secret),
    )


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=SEED_BYTES, salt=None, info=info).derive(key)
