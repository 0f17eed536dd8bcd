"""What people compare to know they talk to the right keys.

- :func:`device_fingerprint`: a device's Ed25519 key, grouped to read aloud.
- :func:`link_check`: 8 characters both devices show while one links the other,
  so the user sees that the request the old device approves is the new device's.
- :func:`safety_number`: 60 digits two people compare (in person, on a call) to
  check each other's account signing key. It is Signal's construction: each side
  hashes its address and key 5200 times with SHA-512, and both halves appear in
  the order of the addresses, so both people see the same number.

These are derivations over public keys with hashlib's SHA-256 and SHA-512, not
encryption.
"""

from __future__ import annotations

import base64
import hashlib

from openmessenger.crypto.keys import decode_base64_key

SAFETY_NUMBER_ITERATIONS = 5200
_LINK_CHECK_PREFIX = b"openmessenger/v1/link-check\n"
_SAFETY_NUMBER_PREFIX = b"openmessenger/v1/safety-number\n"


def device_fingerprint(ed25519_key: str) -> str:
    """The key in groups of 4 characters separated by spaces."""
    return _group(ed25519_key, 4)


def link_check(ed25519_key: str) -> str:
    """8 base32 characters (A-Z, 2-7) derived from the linking device's key."""
    digest = hashlib.sha256(_LINK_CHECK_PREFIX + ed25519_key.encode()).digest()
    return base64.b32encode(digest).decode()[:8]


def safety_number(address_a: str, signing_key_a: str, address_b: str, signing_key_b: str) -> str:
    """The safety number of two accounts (address and account signing key each):
    12 groups of 5 digits, the same whichever side asks. ValueError if a key is
    not a 32-byte base64 key."""
    # Sorted by address; the key breaks a tie (an account compared with itself).
    halves = sorted([(address_a, signing_key_a), (address_b, signing_key_b)])
    digits = "".join(_half(address, key) for address, key in halves)
    return _group(digits, 5)


def _half(address: str, signing_key: str) -> str:
    raw_key = decode_base64_key(signing_key, 32)
    if raw_key is None:
        raise ValueError("a signing key is 32 bytes in base64")
    digest = _SAFETY_NUMBER_PREFIX + address.encode() + b"\n" + raw_key
    for _ in range(SAFETY_NUMBER_ITERATIONS):
        digest = hashlib.sha512(digest + raw_key).digest()
    return "".join(
        f"{int.from_bytes(digest[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5)
    )


def _group(text: str, size: int) -> str:
    return " ".join(text[i : i + size] for i in range(0, len(text), size))
