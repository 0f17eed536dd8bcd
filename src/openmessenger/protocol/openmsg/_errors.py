"""Errors of the Openmsg wire layer.

    OpenmsgError
    ├── LocalProtocolError      we called the wire layer wrongly (bad key or nonce
    │                           size, a text over the limit): a bug on our side
    └── RemoteProtocolError     what a peer sent is not valid Openmsg v1; carries the
        │                       SM_ code to answer it with
        ├── MalformedBody       SM_E000: a field is missing or invalid (names it)
        ├── InvalidBase64       SM_E000: not strict base64url without padding
        └── DecryptionFailed    SM_E006: wrong key, or the package was altered

The codes are the protocol's own answer codes, not HTTP statuses: every
``/openmsg/`` answer is HTTP 200.
"""

from __future__ import annotations

from openmessenger.protocol.openmsg._codes import ResponseCode


class OpenmsgError(Exception):
    """Base of every error raised by the Openmsg wire layer."""


class LocalProtocolError(OpenmsgError):
    """The caller misused the wire layer; never the peer's fault."""


class RemoteProtocolError(OpenmsgError):
    """The peer sent something invalid; ``response_code`` is what to answer."""

    response_code: ResponseCode = ResponseCode.MESSAGE_DATA_MISSING

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedBody(RemoteProtocolError):
    """A request or answer body failed validation."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidBase64(RemoteProtocolError, ValueError):
    """Not canonical base64url without padding (what libsodium would refuse).

    Also a ``ValueError`` so that pydantic validators report it as a field error.
    """


class DecryptionFailed(RemoteProtocolError):
    """The secretbox did not open: wrong key, altered bytes, or not UTF-8 text."""

    response_code = ResponseCode.MESSAGE_DECRYPTION_ERROR
