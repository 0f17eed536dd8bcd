"""The domain error tree. Errors say what went wrong, never an HTTP status;
the API edge maps them in one table (``api/errors.py``).

    DomainError
    ├── InvalidInput        a field failed validation (names the field)
    ├── Unauthenticated     no valid credential
    ├── Forbidden           authenticated, but not allowed
    ├── NotFound            the named thing does not exist (for the caller)
    ├── Conflict            the request clashes with current state
    ├── Refused             the generic silent refusal: unknown address, wrong,
    │                       expired or used pass code, no connection. It never
    │                       says which, so a prober learns nothing.
    ├── LimitExceeded       a size, count or rate limit
    └── PeerUnavailable     another node could not be reached (try again later)
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"

    def __init__(self, message: str, *, code: str = "not_found") -> None:
        super().__init__(message)
        self.code = code


class Conflict(DomainError):
    code = "conflict"

    def __init__(self, message: str, *, code: str = "conflict") -> None:
        super().__init__(message)
        self.code = code


class Refused(DomainError):
    """One answer for every refusal a stranger could learn from."""

    code = "refused"

    def __init__(self) -> None:
        super().__init__("The request was refused.")


class LimitExceeded(DomainError):
    code = "limit_exceeded"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PeerUnavailable(DomainError):
    code = "peer_unavailable"

    def __init__(self, domain: str) -> None:
        super().__init__(f"The node {domain} could not be reached; try again later.")
        self.domain = domain
