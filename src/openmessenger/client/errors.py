"""Errors the SDK raises. Every failure a caller can expect is a ``ClientError``.

ClientError
├── ApiError                the node answered with an RFC 9457 problem
│   └── RefusedError        the generic silent refusal (code ``refused``):
│                           wrong/expired/used pass code, unknown address,
│                           not connected. It never says which.
├── InvalidArgumentError    a value was rejected before anything was sent
├── NotAContactError        no connection with that address (local lookup)
├── ServerUnreachableError  no answer: connection refused, timeout, DNS
├── ProtocolError           the node answered something the contract does not allow
├── DowngradeError          a contact once end to end is offered only transport encryption
├── LinkCheckError          a link code's check letters do not match the node's device
└── StateError              the profile's local state cannot be used
"""

from __future__ import annotations

from dataclasses import dataclass


class ClientError(Exception):
    """Base of every error the SDK raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    message: str


class ApiError(ClientError):
    """The node refused the request and said why, with a stable machine ``code``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        field: str | None = None,
        errors: tuple[FieldProblem, ...] = (),
    ) -> None:
        super().__init__(_describe(code, detail, field))
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.errors = errors


class RefusedError(ApiError):
    """One answer for every refusal; deliberately carries no reason."""


def api_error(
    status: int,
    code: str,
    detail: str | None = None,
    field: str | None = None,
    errors: tuple[FieldProblem, ...] = (),
) -> ApiError:
    """The most specific ApiError class for ``code``."""
    cls = RefusedError if code == "refused" else ApiError
    return cls(status, code, detail, field, errors)


class InvalidArgumentError(ClientError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotAContactError(ClientError):
    def __init__(self, address: str) -> None:
        super().__init__(f"not connected with {address}")
        self.address = address


class ServerUnreachableError(ClientError):
    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"cannot reach {server}: {reason}")
        self.server = server
        self.reason = reason


class ProtocolError(ClientError):
    """The node's answer broke the wire contract (bad JSON, missing fields)."""


class DowngradeError(ClientError):
    """A contact reached end to end before is now offered only transport encryption:
    the text is not sent (its node, or someone between, may be forcing a downgrade)."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"{address} was reached end to end before; refusing to send it readable by nodes"
        )
        self.address = address


class LinkCheckError(ClientError):
    """The device behind a link code is not the one that showed it: do not approve."""

    def __init__(self, code: str) -> None:
        super().__init__(
            f"link code {code}: the node's device does not match the code's check letters"
        )
        self.code = code


class StateError(ClientError):
    """The profile directory is unreadable, damaged, or belongs to another node."""


def _describe(code: str, detail: str | None, field_name: str | None) -> str:
    text = code
    if field_name:
        text += f": {field_name}"
    if detail:
        text += f": {detail}"
    return text
