"""Strict base64url without padding, as libsodium's ``sodium_base642bin`` with
``SODIUM_BASE64_VARIANT_URLSAFE_NO_PADDING`` reads it.

Python's decoders are lenient (they skip junk, accept padding and ignore the
unused low bits of the last character), so a string that a PHP peer would refuse
could pass here, or two spellings could decode to the same bytes. This codec
accepts exactly one spelling per byte string.
"""

from __future__ import annotations

import base64
import re

from openmessenger.protocol.openmsg._errors import InvalidBase64

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SEXTET = {ch: i for i, ch in enumerate(_ALPHABET)}
_ALPHABET_RE = re.compile(r"[A-Za-z0-9_-]*")
# Low bits of the last character that carry no data, by ``len % 4``.
_UNUSED_BITS_MASK = {2: 0b1111, 3: 0b11}


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode, refusing padding, foreign characters, a length of 4n+1 and
    non-zero unused trailing bits (``"AB"`` is refused, ``"AA"`` is not)."""
    if not _ALPHABET_RE.fullmatch(text):
        raise InvalidBase64("only A-Z a-z 0-9 - _ are allowed, without '=' padding")
    tail = len(text) % 4
    if tail == 1:
        raise InvalidBase64("a length of 4n+1 characters cannot be base64")
    if tail and _SEXTET[text[-1]] & _UNUSED_BITS_MASK[tail]:
        raise InvalidBase64("the unused bits of the last character must be zero")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
