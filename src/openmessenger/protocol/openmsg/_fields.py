"""Field types of the Openmsg v1 bodies, with the limits of the protocol's
documentation and of the reference's database columns.

Each validator raises ``ValueError`` with a short reason; the body parsers turn
that into a MalformedBody naming the field.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import parse_address, validate_display_name
from openmessenger.protocol.openmsg._base64 import b64url_decode
from openmessenger.protocol.openmsg._hashing import HASH_HEX_CHARS, is_lower_hex
from openmessenger.protocol.openmsg._package import (
    MAX_PACKAGE_BYTES,
    MIN_PACKAGE_BYTES,
    NONCE_BYTES,
)

MAX_ADDRESS_CHARS = 255
MAX_ADDRESS_ID_DIGITS = 20  # as core.ids accepts
PASS_CODE_DIGITS = 6
SALT_HEX_CHARS = 32
OPENMSG_MAJOR_VERSION = 1
MAX_PACKAGE_CHARS = -(-MAX_PACKAGE_BYTES * 4 // 3)  # unpadded base64 length
_MAX_TIMESTAMP = 2**63 - 1  # PHP's integer range

_ADDRESS_ID_RE = re.compile(rf"[0-9]{{1,{MAX_ADDRESS_ID_DIGITS}}}")
_PASS_CODE_RE = re.compile(rf"[0-9]{{{PASS_CODE_DIGITS}}}")
_VERSION_TEXT_RE = re.compile(r"([0-9]+)(\.[0-9]+)?")
_TIMESTAMP_TEXT_RE = re.compile(r"0|[1-9][0-9]*")


def _address(value: str) -> str:
    """Kept as spelled (the pass-code hash covers the spelling); only letter case
    may differ from the canonical form."""
    if len(value) > MAX_ADDRESS_CHARS:
        raise ValueError(f"must be at most {MAX_ADDRESS_CHARS} characters")
    try:
        parsed = parse_address(value)
    except InvalidInput as exc:
        raise ValueError(exc.reason) from exc
    if parsed.address != value.lower():
        raise ValueError("must be written without spaces or a trailing dot")
    return value


def _address_id(value: str) -> str:
    if not _ADDRESS_ID_RE.fullmatch(value):
        raise ValueError(f"must be 1 to {MAX_ADDRESS_ID_DIGITS} digits, as a string")
    return value


def _pass_code(value: str) -> str:
    if not _PASS_CODE_RE.fullmatch(value):
        raise ValueError(f"must be a string of {PASS_CODE_DIGITS} digits")
    return value


def _name(value: str) -> str:
    try:
        return validate_display_name(value)
    except InvalidInput as exc:
        raise ValueError(exc.reason) from exc


def _blank_to_none(value: object) -> object:
    # The reference sends null here (an undefined variable) and says to send the
    # name only when it changed.
    return None if value in (None, "") else value


def _lower_hex(length: int) -> AfterValidator:
    def check(value: str) -> str:
        if not is_lower_hex(value, length):
            raise ValueError(f"must be {length} lower-case hex characters")
        return value

    return AfterValidator(check)


def package_chars_for(text_chars: int) -> int:
    """The longest package a text of ``text_chars`` characters can make."""
    return -(-(MIN_PACKAGE_BYTES + 4 * text_chars) * 4 // 3)


def package_up_to(max_chars: int) -> AfterValidator:
    """A package of at most ``max_chars`` characters that holds a nonce and a MAC."""

    def check(value: str) -> str:
        if len(value) > max_chars:
            raise ValueError(f"must be at most {max_chars} characters")
        if len(b64url_decode(value)) < MIN_PACKAGE_BYTES:
            raise ValueError("is too short to hold a nonce and a MAC")
        return value

    return AfterValidator(check)


def _nonce(value: str) -> str:
    if len(b64url_decode(value)) != NONCE_BYTES:
        raise ValueError(f"must encode {NONCE_BYTES} bytes")
    return value


def _version(value: object) -> int:
    """A JSON number or numeric string whose major version is 1 (PHP sends 1.0 as 1)."""
    major: int | None = None
    if isinstance(value, bool):
        major = None
    elif isinstance(value, int):
        major = value
    elif isinstance(value, float) and math.isfinite(value) and value >= 0:
        major = math.floor(value)
    elif isinstance(value, str) and (match := _VERSION_TEXT_RE.fullmatch(value)):
        major = int(match.group(1))
    if major != OPENMSG_MAJOR_VERSION:
        raise ValueError(f"must be a number with major version {OPENMSG_MAJOR_VERSION}")
    return major


def _timestamp(value: object) -> int:
    """Unix seconds as a JSON integer, or as its canonical decimal string (the
    hash covers the decimal text, so ``"0170"`` or ``1.7e9`` could not match)."""
    if isinstance(value, str) and _TIMESTAMP_TEXT_RE.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TIMESTAMP:
        raise ValueError("must be a whole number of Unix seconds")
    return value


def _allow_replies(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1"):
        return value in (1, "1")
    raise ValueError("must be true or false")


def _true(value: object) -> bool:
    # ``is``: 1 == True in Python, but only JSON true is a success flag.
    if value is not True:
        raise ValueError("must be true")
    return value


AddressStr = Annotated[str, AfterValidator(_address)]
AddressIdStr = Annotated[str, AfterValidator(_address_id)]
PassCodeStr = Annotated[str, AfterValidator(_pass_code)]
NameStr = Annotated[str, AfterValidator(_name)]
OptionalNameStr = Annotated[NameStr | None, BeforeValidator(_blank_to_none)]
HashHex = Annotated[str, _lower_hex(HASH_HEX_CHARS)]
CodeHex = Annotated[str, _lower_hex(64)]
SaltHex = Annotated[str, _lower_hex(SALT_HEX_CHARS)]
PackageStr = Annotated[str, package_up_to(MAX_PACKAGE_CHARS)]
NonceStr = Annotated[str, AfterValidator(_nonce)]
Version = Annotated[int, BeforeValidator(_version)]
Timestamp = Annotated[int, BeforeValidator(_timestamp)]
AllowReplies = Annotated[bool, BeforeValidator(_allow_replies)]
SuccessFlag = Annotated[bool, BeforeValidator(_true)]
