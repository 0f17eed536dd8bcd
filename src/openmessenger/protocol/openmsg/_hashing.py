"""The hash rules of Openmsg v1 and the timestamp window: pure functions.

All hashes are SHA-256 over the UTF-8 bytes of concatenated strings, written as
64 lower-case hex characters (PHP's ``hash("sha256", ...)``).
"""

from __future__ import annotations

import hashlib
import hmac
import re

HASH_HEX_CHARS = 64
MESSAGE_WINDOW_SECONDS = 60

_LOWER_HEX_RE = re.compile(r"[0-9a-f]*")


def is_lower_hex(value: str, length: int) -> bool:
    return len(value) == length and _LOWER_HEX_RE.fullmatch(value) is not None


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def message_hash(package: str, auth_code: str, salt: str, timestamp: int) -> str:
    """``sha256(message_package + auth_code + message_salt + str(message_timestamp))``."""
    return sha256_hex(f"{package}{auth_code}{salt}{timestamp}")


def passcode_hash(pass_code: str, initiator_address: str, receiver_address: str) -> str:
    """``sha256(pass_code + initiator_address + receiver_address)``.

    Both sides hash the addresses exactly as the initiator spelled them.
    """
    return sha256_hex(f"{pass_code}{initiator_address}{receiver_address}")


def hashes_match(expected: str, received: str) -> bool:
    """Constant-time comparison of two hex hashes (never PHP's loose ``!=``)."""
    return hmac.compare_digest(expected.encode(), received.encode())


def within_window(message_timestamp: int, now: int, window: int = MESSAGE_WINDOW_SECONDS) -> bool:
    """True when the timestamp is at most ``window`` seconds from ``now``, either way.

    Both edges are inside. The reference bounds only the past; we also bound the
    future, so a hash cannot be made to stay valid for long.
    """
    if window < 0:
        raise ValueError("window must not be negative")
    return -window <= now - message_timestamp <= window
