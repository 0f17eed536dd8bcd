"""The message package: ``b64url_nopad(nonce24 || secretbox(text, key))``.

The secretbox is PyNaCl's (XSalsa20-Poly1305, as libsodium's
``crypto_secretbox``); nothing here is hand-written cryptography.
"""

from __future__ import annotations

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from openmessenger.protocol.openmsg._base64 import b64url_decode, b64url_encode
from openmessenger.protocol.openmsg._errors import (
    DecryptionFailed,
    LocalProtocolError,
    MalformedBody,
)
from openmessenger.protocol.openmsg._hashing import is_lower_hex

KEY_BYTES = SecretBox.KEY_SIZE  # 32
NONCE_BYTES = SecretBox.NONCE_SIZE  # 24
MAC_BYTES = SecretBox.MACBYTES  # 16
MAX_MESSAGE_TEXT_CHARS = 2000
"""The reference stores message text in a VARCHAR(2000) column."""

# The largest package a text within the limit can make (4 UTF-8 bytes a character).
MAX_PACKAGE_BYTES = NONCE_BYTES + MAC_BYTES + 4 * MAX_MESSAGE_TEXT_CHARS
MIN_PACKAGE_BYTES = NONCE_BYTES + MAC_BYTES


def package_message(
    text: str, key: bytes, nonce: bytes, *, max_chars: int = MAX_MESSAGE_TEXT_CHARS
) -> str:
    """Encrypt ``text`` under ``key`` with ``nonce``; the caller never reuses a nonce
    with another text. ``max_chars`` is v1's limit unless an extension allows more."""
    _check_sizes(key, nonce)
    if len(text) > max_chars:
        raise LocalProtocolError(f"message text over {max_chars} characters")
    sealed = SecretBox(key).encrypt(text.encode("utf-8"), nonce)  # nonce || ciphertext
    return b64url_encode(bytes(sealed))


def open_package(
    package: str, key: bytes, *, max_chars: int = MAX_MESSAGE_TEXT_CHARS
) -> tuple[str, bytes]:
    """Decrypt a package; returns ``(text, nonce)``.

    Raises InvalidBase64 for a string libsodium would not decode, DecryptionFailed
    for a wrong key or altered bytes, MalformedBody for a text over the limit.
    """
    if len(key) != KEY_BYTES:
        raise LocalProtocolError(f"a secretbox key is {KEY_BYTES} bytes, not {len(key)}")
    raw = b64url_decode(package)
    if len(raw) < MIN_PACKAGE_BYTES:
        raise DecryptionFailed("the package is shorter than a nonce and a MAC")
    nonce, ciphertext = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
    try:
        plaintext = SecretBox(key).decrypt(ciphertext, nonce)
    except CryptoError as exc:
        raise DecryptionFailed("wrong key or altered package") from exc
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecryptionFailed("the decrypted message is not UTF-8 text") from exc
    if len(text) > max_chars:
        raise MalformedBody("message_package", f"the text is over {max_chars} characters")
    return text, nonce


def parse_crypt_key(key_hex: str) -> bytes:
    """``message_crypt_key`` (64 lower-case hex) as the 32 key bytes."""
    if not is_lower_hex(key_hex, 2 * KEY_BYTES):
        raise MalformedBody("message_crypt_key", f"must be {2 * KEY_BYTES} lower-case hex")
    return bytes.fromhex(key_hex)


def _check_sizes(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise LocalProtocolError(f"a secretbox key is {KEY_BYTES} bytes, not {len(key)}")
    if len(nonce) != NONCE_BYTES:
        raise LocalProtocolError(f"a secretbox nonce is {NONCE_BYTES} bytes, not {len(nonce)}")
