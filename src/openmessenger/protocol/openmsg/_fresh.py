"""Fresh random values for the handshake and for messages.

Kept apart from the pure rules: these read the operating system's randomness
(``secrets``), nothing else.
"""

from __future__ import annotations

import secrets

from openmessenger.protocol.openmsg._package import KEY_BYTES, NONCE_BYTES

SALT_BYTES = 16  # 32 hex characters
CODE_BYTES = 32  # 64 hex characters


def new_message_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


def new_auth_code() -> str:
    return secrets.token_hex(CODE_BYTES)


def new_ident_code() -> str:
    return secrets.token_hex(CODE_BYTES)


def new_message_crypt_key() -> str:
    """A secretbox key as ``message_crypt_key`` travels: 64 lower-case hex."""
    return secrets.token_hex(KEY_BYTES)


def new_message_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)
