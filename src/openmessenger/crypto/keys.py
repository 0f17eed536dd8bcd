"""Node-side key helpers: keyed hashing under the node secret, signature checks.

Secrets that must be looked up (pass codes, tokens, challenges) are stored as
HMAC-SHA256 under the node secret: a plain hash of six digits is reversed in
milliseconds, an HMAC without the secret is not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import uuid

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.secret import SecretBox
from nacl.signing import SigningKey, VerifyKey

MIN_NODE_SECRET_BYTES = 32


def decode_base64_key(value: str, expected_len: int) -> bytes | None:
    """Decode standard base64 with or without padding; None unless exactly ``expected_len``."""
    padded = value + "=" * (-len(value) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == expected_len else None


def verify_ed25519(public_key: str, message: bytes, signature: str) -> bool:
    key = decode_base64_key(public_key, 32)
    sig = decode_base64_key(signature, 64)
    if key is None or sig is None:
        return False
    try:
        VerifyKey(key).verify(message, sig)
    except (BadSignatureError, ValueError):
        return False
    return True


class NodeSecrets:
    """The ``Secrets`` port: HMACs under the node secret, and fresh randomness."""

    def __init__(self, node_secret: bytes) -> None:
        if len(node_secret) < MIN_NODE_SECRET_BYTES:
            raise ValueError(f"the node secret must be at least {MIN_NODE_SECRET_BYTES} bytes")
        self._key = node_secret
        # The node's signing key follows from its secret: nothing more to keep safe.
        seed = hmac.new(node_secret, b"node-signing-key", hashlib.sha256).digest()
        self._signer = SigningKey(seed)

    def hmac(self, purpose: str, value: str) -> str:
        data = purpose.encode() + b"\x00" + value.encode()
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def token(self, nbytes: int) -> str:
        return secrets.token_urlsafe(nbytes)

    def digits(self, count: int) -> str:
        return "".join(secrets.choice("0123456789") for _ in range(count))

    def identifier(self) -> str:
        return uuid.uuid4().hex

    def seal(self, purpose: str, plaintext: str) -> str:
        sealed = self._box(purpose).encrypt(plaintext.encode())  # random nonce || ciphertext
        return base64.urlsafe_b64encode(bytes(sealed)).decode()

    def unseal(self, purpose: str, sealed: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
            return self._box(purpose).decrypt(raw).decode()
        except (binascii.Error, CryptoError, UnicodeDecodeError) as exc:
            raise ValueError("sealed value altered or sealed under another node secret") from exc

    def _box(self, purpose: str) -> SecretBox:
        key = hmac.new(self._key, b"seal\x00" + purpose.encode(), hashlib.sha256).digest()
        return SecretBox(key)

    def signing_key(self) -> str:
        return base64.b64encode(bytes(self._signer.verify_key)).decode()

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._signer.sign(message).signature).decode()
