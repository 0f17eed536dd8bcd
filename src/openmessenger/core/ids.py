"""Identifiers and their parsers.

Every id that crosses a boundary is a ``NewType`` so that an address is never
passed where a device id is expected. Parsers raise :class:`InvalidInput`
naming the field, and accept only the canonical form.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import NewType

from openmessenger.core.errors import InvalidInput

Address = NewType("Address", str)
"""An Openmsg address, ``NUMBER*domain`` (e.g. ``4821937*chat.example.org``)."""

Domain = NewType("Domain", str)
"""A node's DNS name, lower case (``localhost`` is valid for a local node)."""

AccountId = NewType("AccountId", str)
DeviceId = NewType("DeviceId", str)
ConversationId = NewType("ConversationId", str)
MessageId = NewType("MessageId", str)
PassCodeId = NewType("PassCodeId", str)

# One DNS label: letters, digits and inner hyphens; no underscores (the Openmsg
# vectors reject ``bad_domain.io``).
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_NUMBER_RE = re.compile(r"[0-9]{1,20}")
MAX_DOMAIN_LENGTH = 253
MAX_DISPLAY_NAME_LENGTH = 40


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP: this machine (where plain http may go)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_domain(value: str, *, field: str = "domain") -> Domain:
    candidate = value.strip().lower().rstrip(".")
    if not candidate or len(candidate) > MAX_DOMAIN_LENGTH or not _DOMAIN_RE.fullmatch(candidate):
        raise InvalidInput(field, "must be a DNS name such as chat.example.org")
    return Domain(candidate)


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    number: str
    domain: Domain

    @property
    def address(self) -> Address:
        return Address(f"{self.number}*{self.domain}")


def parse_address(value: str, *, field: str = "address") -> ParsedAddress:
    """Parse ``NUMBER*domain``; the domain is folded to lower case."""
    if not isinstance(value, str) or value.count("*") != 1:
        raise InvalidInput(field, "must look like NUMBER*domain, e.g. 4821937*chat.example.org")
    number, domain = value.split("*")
    if not _NUMBER_RE.fullmatch(number):
        raise InvalidInput(field, "the part before '*' must be digits")
    return ParsedAddress(number=number, domain=parse_domain(domain, field=field))


def address_domain(address: Address) -> Domain:
    return Domain(address.split("*", 1)[1])


def validate_display_name(value: str, *, field: str = "display_name") -> str:
    """At most 40 letters, digits and spaces: the Openmsg v1 name limit."""
    name = " ".join(value.split())
    if not name:
        raise InvalidInput(field, "must not be empty")
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        raise InvalidInput(field, f"must be at most {MAX_DISPLAY_NAME_LENGTH} characters")
    # Letters include their combining marks (e.g. Devanagari vowel signs, a
    # decomposed "ë"), but a name cannot start with a mark.
    if not all(_is_letter(ch) or ch in "0123456789 " for ch in name) or _is_mark(name[0]):
        raise InvalidInput(field, "may contain only letters, digits and spaces")
    return name


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch).startswith("M")


def _is_letter(ch: str) -> bool:
    return ch.isalpha() or _is_mark(ch)
